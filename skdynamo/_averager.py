"""DynamoAverager: average models in embedding space (sklearn logic only)."""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._applications import embed_population, final_outputs, resolve_embedder, run_network, unwrap
from ._loss import as_numpy_r2
from .utils.validation import check_models

__all__ = ["DynamoAverager"]

_MAX_SEED = np.iinfo(np.int32).max


def _check_weights(weights, n_models):
    if weights is None:
        return np.full(n_models, 1.0 / n_models)
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"weights must be an array of {n_models} numbers, got "
                        f"{type(weights).__name__}.") from exc
    if w.ndim != 1 or w.shape[0] != n_models:
        raise ValueError(f"weights must have one entry per model: expected shape ({n_models},), "
                         f"got {w.shape}.")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contains NaN or infinite values.")
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative; got negative weights at indices "
                         f"{np.flatnonzero(w < 0).tolist()}.")
    if w.sum() <= 0:
        raise ValueError("weights sum to zero: at least one model needs a positive weight.")
    return w / w.sum()


class DynamoAverager(BaseEstimator):
    """Average a group of networks in DYNAMO's embedding space.

    The members are embedded; their centre (weighted mean or medoid) is a point of the
    embedding space, and the meta-model there is a new, operable network. Unlike plain
    weight averaging (:func:`skdynamo.baselines.average_weights`), this works for
    independently initialised networks and for mixed architectures.

    ``fit`` and ``score`` take *models*, while ``predict`` takes *data*: grid search over
    the averager's parameters works (``score`` measures agreement with held-out members),
    but ``cross_val_predict`` on models does not apply.

    Parameters
    ----------
    embedder : DynamoEmbedder or FrozenEstimator, default=None
        Embeds the members. ``None`` uses ``DynamoEmbedder(random_state=random_state)``.
        Cloned in :meth:`fit`; to reuse a fitted embedder, wrap it in
        :class:`sklearn.frozen.FrozenEstimator` (members are then embedded by its
        ``transform``).
    weights : array-like of shape (n_models,), default=None
        Non-negative weight of each member (normalised); uniform by default.
    center : {'mean', 'medoid'}, default='mean'
        ``'mean'``: the weighted mean of the members' embeddings. ``'medoid'``: the member
        embedding minimising the weighted sum of distances to the others.
    random_state : int, RandomState instance or None, default=None
        Seeds the default embedder.

    Attributes
    ----------
    embedding_ : ndarray of shape (n_components,)
        The centre.
    member_embeddings_ : ndarray of shape (n_models, n_components)
    medoid_index_ : int or None
        Index of the medoid member (``center='medoid'``), else None.
    averaged_model_ : skdynamo.StandaloneRNN or skdynamo.StandaloneCNN
        The meta-model at the centre, as a plain ``torch.nn.Module``: a standard
        ``nn.GRU``/``nn.LSTM``/``nn.RNN`` with a learned initial state and a readout, or
        (for a population of CNNs) a plain CNN with the FiLM modulation folded into its
        convolutions. Save it with ``torch.save(m.state_dict(), path)``; reload it with
        ``StandaloneRNN(**config)`` (or ``StandaloneCNN``) and
        ``load_state_dict(torch.load(path, weights_only=True))`` (``config`` is
        ``averaged_model_.config``).
    embedder_ : DynamoEmbedder or FrozenEstimator
        The fitted embedder.

    Examples
    --------
    >>> import torch
    >>> from skdynamo import DynamoAverager, DynamoEmbedder
    >>> from skdynamo.datasets import RecurrentNetwork, make_flipflop
    >>> _ = torch.manual_seed(0)
    >>> models = [RecurrentNetwork(3, 3, hidden_size=8) for _ in range(3)]
    >>> emb = DynamoEmbedder(hidden_size=8, max_epochs=2, random_state=0)
    >>> avg = DynamoAverager(emb).fit(models)
    >>> X, _ = make_flipflop(4, 10, random_state=0)
    >>> avg.predict(X).shape
    (4, 10, 3)
    """

    _parameter_constraints = {
        "embedder": [HasMethods(["fit", "transform"]), None],
        "weights": ["array-like", None],
        "center": [StrOptions({"mean", "medoid"})],
        "random_state": ["random_state"],
    }

    def __init__(self, embedder=None, weights=None, *, center="mean", random_state=None):
        self.embedder = embedder
        self.weights = weights
        self.center = center
        self.random_state = random_state

    def fit(self, X: Sequence, y: None = None) -> DynamoAverager:
        """Embed the members and build the network at their centre.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The members (one architecture or several; same input and output widths).
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : DynamoAverager
            The fitted estimator.
        """
        self._validate_params()
        models = check_models(X)
        w = _check_weights(self.weights, len(models))
        seed = int(check_random_state(self.random_state).randint(_MAX_SEED))
        embedder = resolve_embedder(self.embedder, seed)
        Z = embed_population(embedder, models)
        medoid = None
        if self.center == "mean":
            center = w @ Z
        else:
            dist = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
            cost = dist @ w
            cost[w == 0] = np.inf  # a zero-weight member cannot be the centre
            medoid = int(np.argmin(cost))
            center = Z[medoid].copy()
        self.embedder_ = embedder
        self.member_embeddings_ = Z
        self.embedding_ = center
        self.medoid_index_ = medoid
        inner = unwrap(embedder)
        self.averaged_model_ = inner.family_.bake(inner.meta_model_, center)
        self._weights = w
        return self

    def _run(self, X):
        check_is_fitted(self)
        return run_network(self.averaged_model_, X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Run the averaged network on data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_inputs)
            Sequences, or images ``(n_samples, channels, height, width)`` for a
            population of CNNs.

        Returns
        -------
        outputs : ndarray of shape (n_samples, n_timesteps, n_outputs)
            Output sequences, or a CNN's logits ``(n_samples, n_outputs)``.
        """
        return self._run(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of the averaged network, for members that are classifiers.

        The softmax of the class scores: a CNN's logits, a sequence model's last step.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_inputs)
            Sequences, or images ``(n_samples, channels, height, width)`` for a
            population of CNNs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_outputs)
            Probabilities; each row sums to 1.
        """
        return softmax(final_outputs(self._run(X)).astype(np.float64), axis=1)

    def score(self, X: Sequence, y: None = None) -> float:
        """Agreement of the averaged network with (held-out) members, higher is better.

        Each model is run on the embedder's probe inputs. For classifiers (an embedder
        fitted with ``output_loss='kl'``, the default for CNNs) the score is the mean over
        models of the fraction of probes on which the averaged network's class (argmax)
        matches the model's; otherwise the mean R^2 of its outputs against the model's.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to compare with, usually members not used in ``fit``.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        score : float
            Mean argmax agreement (classifiers) or mean output R^2, at most 1.
        """
        check_is_fitted(self)
        models = check_models(X)
        inner = unwrap(self.embedder_)
        trajectories = inner.record(models)
        classifier = inner.loss_.classifies
        pred = self._run(inner.probe_inputs_)
        scores = []
        for i, t in enumerate(trajectories):
            target = t.outputs
            p = pred[:, -1] if (pred.ndim == 3 and target.ndim == 2) else pred
            if target.shape != p.shape:
                raise ValueError(f"X[{i}] produces outputs of shape {target.shape} on the probes;"
                                 f" the averaged network produces {p.shape}.")
            if classifier:
                scores.append(float(np.mean(p.argmax(-1) == target.argmax(-1))))
            else:
                scores.append(as_numpy_r2(p, target))
        return float(np.mean(scores))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
