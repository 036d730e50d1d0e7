"""Weight-space baselines: flattened parameters (+ PCA) and plain weight averaging."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..utils.validation import check_models

__all__ = ["WeightSpaceEmbedding", "average_weights", "architecture_signature"]


def architecture_signature(model):
    """``[(name, shape), ...]`` of a module's floating-point parameters and buffers."""
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items()
            if torch.is_floating_point(t)]


def _check_same_architecture(models, reference=None, *, what="weight-space baselines"):
    """Raise a clear error unless every model has the reference's parameter layout."""
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise TypeError(f"X[{i}] is a {type(m).__name__}; {what} need torch.nn.Module "
                            "models (recorded Trajectories carry no weights).")
    ref = architecture_signature(models[0]) if reference is None else reference
    for i, m in enumerate(models):
        sig = architecture_signature(m)
        if sig != ref:
            diff = next((f"{a} vs {b}" for a, b in zip(sig, ref) if a != b),
                        f"{len(sig)} vs {len(ref)} tensors")
            raise ValueError(
                f"{what} need models of one architecture (same parameter names and shapes); "
                f"X[{i}] ({type(m).__name__}) differs from the reference: {diff}. Use "
                "DynamoEmbedder or OutputSpaceEmbedding for mixed-architecture populations.")
    return ref


def _flatten(model):
    return np.concatenate([t.detach().cpu().double().reshape(-1).numpy()
                           for t in model.state_dict().values() if torch.is_floating_point(t)])


class WeightSpaceEmbedding(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Baseline: embed models by PCA of their flattened parameters.

    Defined only for populations of one architecture (a clear ``ValueError`` otherwise).
    Functionally identical networks whose hidden units are permuted get different
    embeddings: this is the reparameterisation sensitivity DYNAMO removes.

    Parameters
    ----------
    n_components : int, default=2
        Dimensions kept by the PCA.
    random_state : int, RandomState instance or None, default=None
        Passed to the PCA (randomised solvers only).

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_models, n_components)
    pca_ : sklearn.decomposition.PCA
    n_models_ : int

    Examples
    --------
    >>> from skdynamo.baselines import WeightSpaceEmbedding
    >>> from skdynamo.datasets import RecurrentNetwork
    >>> models = [RecurrentNetwork(3, 3, hidden_size=4) for _ in range(3)]
    >>> WeightSpaceEmbedding(n_components=2).fit_transform(models).shape
    (3, 2)
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components: int = 2, *,
                 random_state: int | np.random.RandomState | None = None) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X: Sequence[nn.Module], y: None = None) -> WeightSpaceEmbedding:
        """Fit the PCA on the flattened parameters of the models in ``X``.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population; each model is one sample.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : WeightSpaceEmbedding
            The fitted estimator.
        """
        self._validate_params()
        models = check_models(X)
        signature = _check_same_architecture(models)
        if self.n_components > len(models):
            raise ValueError(f"n_components={self.n_components} exceeds the number of models "
                             f"({len(models)}).")
        flat = np.stack([_flatten(m) for m in models])
        pca = PCA(self.n_components, random_state=self.random_state)
        self.embeddings_ = pca.fit_transform(flat)
        self.pca_ = pca
        self._signature = signature
        self.n_models_ = len(models)
        self._n_features_out = self.n_components
        return self

    def fit_transform(self, X: Sequence[nn.Module], y: None = None) -> np.ndarray:
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

    def transform(self, X: Sequence[nn.Module]) -> np.ndarray:
        """Embed models of the fitted architecture.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to embed.

        Returns
        -------
        embeddings : ndarray of shape (n_models, n_components)
            One embedding per model.
        """
        check_is_fitted(self)
        models = check_models(X)
        _check_same_architecture(models, self._signature)
        return self.pca_.transform(np.stack([_flatten(m) for m in models]))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def average_weights(models: Sequence[nn.Module], weights: np.ndarray | None = None
                    ) -> nn.Module:
    """Baseline: average the parameters of same-architecture models.

    Parameters
    ----------
    models : sequence of torch.nn.Module
        Models of one architecture (same parameter names and shapes).
    weights : array-like of shape (n_models,), default=None
        Non-negative weights (normalised to sum to 1); uniform by default.

    Returns
    -------
    averaged : torch.nn.Module
        A copy of ``models[0]`` (in eval mode) whose floating-point parameters and buffers
        are the weighted means; integer buffers are copied from ``models[0]``.
    """
    models = check_models(models, name="models")
    _check_same_architecture(models, what="average_weights")
    if weights is None:
        w = np.full(len(models), 1.0 / len(models))
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(models),) or not np.all(np.isfinite(w)) or np.any(w < 0) \
                or w.sum() <= 0:
            raise ValueError(f"weights must be {len(models)} finite non-negative numbers with a "
                             f"positive sum; got {weights!r}.")
        w = w / w.sum()
    states = [m.state_dict() for m in models]
    out = copy.deepcopy(models[0])
    avg = {}
    for name, ref in states[0].items():
        if torch.is_floating_point(ref):
            avg[name] = sum(float(wi) * s[name].detach().double() for wi, s in zip(w, states)) \
                .to(ref.dtype)
        else:
            avg[name] = ref.clone()
    out.load_state_dict(avg)
    return out.eval()
