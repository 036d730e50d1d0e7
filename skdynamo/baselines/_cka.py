"""Representation-geometry baseline: linear CKA between hidden states, + classical MDS."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval

from .._recording import Trajectories
from ..families import family_for_probes
from ..utils.validation import check_models

__all__ = ["LinearCKAEmbedding", "linear_cka", "cka_distances"]


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear centred kernel alignment of two representations of the same samples.

    ``CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred
    ``Xc, Yc`` (Kornblith et al. 2019). It is invariant to orthogonal transforms and
    uniform scaling of either representation, not to general invertible linear maps.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        One representation (a row per sample).
    Y : array-like of shape (n_samples, n_features_y)
        The other, of the same samples in the same order.

    Returns
    -------
    cka : float
        In [0, 1]; 1 for representations equal up to rotation and scale. 0 when either is
        constant.

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo.baselines import linear_cka
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    >>> round(linear_cka(X, 2 * X @ Q), 6)
    1.0
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must be 2-d with the same number of rows, got shapes "
                         f"{X.shape} and {Y.shape}.")
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    denom = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    if denom == 0:
        return 0.0
    return float(np.linalg.norm(Y.T @ X) ** 2 / denom)


def _representation(index, model, probes, family):
    """A model's hidden states on the probes as one (n_samples, n_units) matrix
    (:meth:`~skdynamo.families.ModelFamily.representation`): every time step of every
    probe for recurrent models, the last recorded layer (penultimate features) of a CNN."""
    t = model if isinstance(model, Trajectories) else family.record_member(index, model, probes)
    return family.representation(t)


def cka_distances(models: Sequence, probe_inputs: np.ndarray) -> np.ndarray:
    """Pairwise ``1 - linear CKA`` between the models' hidden states on shared probes.

    Parameters
    ----------
    models : sequence of torch.nn.Module or Trajectories
        The models to compare.
    probe_inputs : array-like
        Sequences ``(n_probes, n_timesteps, n_features)`` or images ``(n_probes, channels,
        height, width)``.

    Returns
    -------
    distances : ndarray of shape (n_models, n_models)
        Symmetric, zero diagonal, values in [0, 1].
    """
    models = check_models(models, name="models")
    family = family_for_probes(probe_inputs, models)()
    probes = family.check_probes(probe_inputs, models)
    reps = [_representation(i, m, probes, family) for i, m in enumerate(models)]
    n = len(reps)
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            D[i, j] = D[j, i] = 1.0 - linear_cka(reps[i], reps[j])
    return np.clip(D, 0.0, 1.0)


def _classical_mds(D, n_components):
    n = len(D)
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ (D ** 2) @ J
    vals, vecs = np.linalg.eigh(B)
    order = np.argsort(vals)[::-1][:n_components]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    signs = np.sign(vecs[np.abs(vecs).argmax(0), np.arange(vecs.shape[1])])  # deterministic
    return vecs * signs * np.sqrt(vals)


class LinearCKAEmbedding(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Baseline: embed models by classical MDS of their pairwise linear-CKA distances.

    Each model is run on the shared probes; its hidden states (every time step of every
    probe of a recurrent network; the penultimate features of a CNN) form one
    representation matrix. The distance between two models is ``1 - CKA`` of their
    representations (:func:`linear_cka`, Kornblith et al. 2019) and the embedding is the
    classical (Torgerson) MDS of that distance matrix. CKA compares representation
    *geometry*: it tends to group models by architecture rather than by the task they
    compute, which is what the benchmarks set it beside DYNAMO to show.

    Only the fitted models are embedded: CKA gives distances, not a map new models can be
    projected into, so there is no ``transform``.

    Parameters
    ----------
    probe_inputs : array-like
        Inputs every model is run on (required): sequences ``(n_probes, n_timesteps,
        n_features)`` or images ``(n_probes, channels, height, width)``.
    n_components : int, default=2
        Dimensions kept by the MDS.

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_models, n_components)
    distances_ : ndarray of shape (n_models, n_models)
        ``1 - linear CKA`` between every pair of models.

    References
    ----------
    Kornblith, Norouzi, Lee, Hinton. "Similarity of Neural Network Representations
    Revisited." ICML 2019.
    """

    _parameter_constraints = {
        "probe_inputs": ["array-like", None],
        "n_components": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, probe_inputs: np.ndarray | None = None, n_components: int = 2) -> None:
        self.probe_inputs = probe_inputs
        self.n_components = n_components

    def fit(self, X: Sequence, y: None = None) -> LinearCKAEmbedding:
        """Record the models' hidden states, compute CKA distances and their MDS.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population; each model is one sample.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : LinearCKAEmbedding
            The fitted estimator.
        """
        self._validate_params()
        if self.probe_inputs is None:
            raise ValueError("LinearCKAEmbedding needs probe_inputs=, an array of shape "
                             "(n_probes, n_timesteps, n_features) or images.")
        models = check_models(X)
        if self.n_components > len(models):
            raise ValueError(f"n_components={self.n_components} exceeds the number of models "
                             f"({len(models)}).")
        D = cka_distances(models, self.probe_inputs)
        self.distances_ = D
        self.embeddings_ = _classical_mds(D, self.n_components)
        self._n_features_out = self.n_components
        return self

    def fit_transform(self, X: Sequence, y: None = None) -> np.ndarray:
        """Fit and return the embeddings of ``X``.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population; each model is one sample.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        embeddings : ndarray of shape (n_models, n_components)
            One embedding per model.
        """
        return self.fit(X).embeddings_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
