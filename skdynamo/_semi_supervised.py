"""DynamoSemiSupervised: learn a task from a few labels, with a population as the prior."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.special import softmax
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags, check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._applications import (check_inputs, embed_population, final_outputs, is_frozen,
                            resolve_embedder, run_network, unwrap)
from ._codes import multi_start_search, search_candidates
from .utils.validation import check_models

__all__ = ["DynamoSemiSupervised"]

_MAX_SEED = np.iinfo(np.int32).max


def _bandwidth(Z):
    """Kernel width of the prior: Scott's rule on the population's embeddings.

    Broad enough to let ``theta`` move between members (a nearest-neighbour width would
    pin it to the closest member when seeds of one task sit on top of each other).
    """
    n, d = Z.shape
    spread = float(np.mean(Z.std(0))) if n > 1 else 0.0
    if not np.isfinite(spread) or spread <= 1e-6:
        spread = max(float(np.abs(Z).mean()), 1.0)
    return spread * n ** (-1.0 / (d + 4))


def _may_predict_proba(self):
    task = getattr(self, "_task", self.task)
    if task == "regression":
        raise AttributeError("predict_proba is only available for classification.")
    return True


class DynamoSemiSupervised(BaseEstimator):
    """Fit a task from a few labelled sequences by searching a population's embedding space.

    A fitted :class:`DynamoEmbedder` maps a population of networks to embeddings
    ``theta``; the meta-model at any ``theta`` is a network. Given data ``X`` and labels
    ``y`` (some missing), this estimator finds the ``theta`` whose network best fits the
    labelled sequences, starting from the best ``n_starts`` population members. A prior
    (a Gaussian kernel density on the population's embeddings) keeps ``theta`` on the
    population's manifold (bandwidth by Scott's rule), so a handful of labels is enough
    to pick a solution the population "knows". Unlabelled sequences are used too:
    entropy minimisation of the predicted classes (classification) or consistency under
    small input noise (regression).

    The data are sequences for a population of recurrent networks, or images
    ``(n_samples, channels, height, width)`` for a population of CNNs (then ``model_`` is
    a :class:`~skdynamo.StandaloneCNN` and the classes are the argmax of its logits).

    Classification follows scikit-learn's semi-supervised convention (``y == -1`` marks
    unlabelled samples); the class is the argmax of the network's last-step outputs, so
    labels must lie in ``[0, n_outputs)``. Regression marks unlabelled samples with NaN
    (all of a sample's targets); targets are whole output sequences
    ``(n_samples, n_timesteps, n_outputs)`` or the last step ``(n_samples, n_outputs)``.

    Parameters
    ----------
    embedder : DynamoEmbedder or FrozenEstimator, default=None
        With ``population=None`` it must be fitted: a fitted ``DynamoEmbedder`` is used as
        it is (read only), and wrapping it in :class:`sklearn.frozen.FrozenEstimator` keeps
        it fitted through ``clone`` (as ``GridSearchCV`` does). With ``population``
        given, it is cloned and fitted on the population (``None`` then means
        ``DynamoEmbedder(random_state=random_state)``).
    population : sequence of torch.nn.Module or Trajectories, default=None
        Models to fit the embedder on. The population's probe inputs should be the task's
        inputs (set ``probe_inputs`` on the embedder).
    task : {'auto', 'classification', 'regression'}, default='auto'
        ``'auto'``: classification when ``y`` is one-dimensional with an integer dtype,
        regression otherwise.
    n_starts : int, default=5
        Population members (the best fitting ones) from which ``theta`` is refined.
    max_iter : int, default=200
        Adam steps per start.
    lr : float, default=0.05
        Adam learning rate on ``theta``.
    prior_weight : float, default=1.0
        Strength of the population prior. It is divided by the number of labelled samples,
        so more labels let the data speak more.
    unlabeled_weight : float, default=0.1
        Weight of the unlabelled-data term (0 ignores unlabelled samples).
    max_unlabeled : int, default=64
        Unlabelled samples used (a fixed random subset when there are more).
    random_state : int, RandomState instance or None, default=None
        Seeds the unlabelled subset, the consistency noise and a default embedder.

    Attributes
    ----------
    embedding_ : ndarray of shape (n_components,)
        The embedding found.
    model_ : skdynamo.StandaloneRNN or skdynamo.StandaloneCNN
        The meta-model at ``embedding_`` as a plain ``torch.nn.Module``.
    embedder_ : DynamoEmbedder or FrozenEstimator
        The embedder whose space was searched.
    classes_ : ndarray of shape (n_outputs,)
        Class labels (classification only): ``0 .. n_outputs - 1``.
    start_embeddings_ : ndarray of shape (n_starts, n_components)
        Starting points used.
    start_losses_ : ndarray of shape (n_starts,)
        Final objective from each start (the smallest wins).
    n_labeled_ : int
        Number of labelled samples used.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skdynamo import DynamoEmbedder, DynamoSemiSupervised
    >>> from skdynamo.datasets import RecurrentNetwork, make_leaky_integration
    >>> _ = torch.manual_seed(0)
    >>> X, Y = make_leaky_integration(16, 10, random_state=0)
    >>> models = [RecurrentNetwork(3, 3, hidden_size=8) for _ in range(3)]
    >>> emb = DynamoEmbedder(probe_inputs=X, hidden_size=8, max_epochs=2, random_state=0)
    >>> Y_semi = Y.copy(); Y_semi[4:] = np.nan          # 4 labelled sequences
    >>> est = DynamoSemiSupervised(emb, population=models, max_iter=5).fit(X, Y_semi)
    >>> est.predict(X).shape
    (16, 10, 3)
    """

    _parameter_constraints = {
        "embedder": [HasMethods(["fit", "transform"]), None],
        "population": ["array-like", list, tuple, None],
        "task": [StrOptions({"auto", "classification", "regression"})],
        "n_starts": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "prior_weight": [Interval(Real, 0, None, closed="left")],
        "unlabeled_weight": [Interval(Real, 0, None, closed="left")],
        "max_unlabeled": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, embedder=None, *, population=None, task="auto", n_starts=5, max_iter=200,
                 lr=0.05, prior_weight=1.0, unlabeled_weight=0.1, max_unlabeled=64,
                 random_state=None):
        self.embedder = embedder
        self.population = population
        self.task = task
        self.n_starts = n_starts
        self.max_iter = max_iter
        self.lr = lr
        self.prior_weight = prior_weight
        self.unlabeled_weight = unlabeled_weight
        self.max_unlabeled = max_unlabeled
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _get_embedder(self, seed):
        if self.population is not None:
            if is_frozen(self.embedder):
                raise ValueError("population is given but the embedder is a FrozenEstimator, "
                                 "which cannot be fitted on it: pass one or the other.")
            embedder = resolve_embedder(self.embedder, seed)
            population = check_models(self.population, name="population")
            Z = embed_population(embedder, population)
            return embedder, Z
        if self.embedder is None:
            raise ValueError("DynamoSemiSupervised needs a fitted embedder (embedder=...) or a "
                             "population to fit one on (population=[models...]).")
        try:
            check_is_fitted(unwrap(self.embedder))
        except NotFittedError as exc:
            raise NotFittedError(
                "embedder is not fitted and no population is given. Fit the embedder first "
                "(wrap it in sklearn.frozen.FrozenEstimator so clone/GridSearchCV keep it "
                "fitted), or pass population=[models...].") from exc
        return self.embedder, np.asarray(unwrap(self.embedder).embeddings_, dtype=np.float64)

    def _resolve_task(self, y):
        if self.task != "auto":
            return self.task
        if y.dtype.kind in "USO":
            raise ValueError(
                f"y holds non-numeric labels (dtype {y.dtype}, e.g. "
                f"{y.ravel()[:3].tolist()}), which task='auto' cannot map to the meta-model's "
                "outputs: classes are the argmax of its outputs, so labels must be output "
                "indices 0, 1, ... (-1 for unlabelled). Encode them in the models' output "
                "order, or pass numeric targets with task='regression'.")
        return ("classification" if y.ndim == 1 and y.dtype.kind in "iub" else "regression")

    def _check_targets(self, y, n_samples, n_timesteps, n_outputs, task):
        if y.shape[0] != n_samples:
            raise ValueError(f"X has {n_samples} samples but y has {y.shape[0]}.")
        if task == "classification":
            if y.ndim != 1:
                raise ValueError(f"Classification labels must have shape (n_samples,); got "
                                 f"{y.shape}.")
            if y.dtype.kind == "f":
                if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                    raise ValueError("Classification labels must be integers (-1 for "
                                     "unlabelled); got non-integer or NaN values. For "
                                     "regression pass task='regression'.")
            elif y.dtype.kind not in "iub":
                raise ValueError(f"Classification labels must be integers, got dtype {y.dtype}.")
            y = y.astype(np.int64)
            labeled = y != -1
            bad = np.unique(y[labeled & ((y < 0) | (y >= n_outputs))])
            if bad.size:
                raise ValueError(f"Labels {bad.tolist()} are outside the meta-model's output "
                                 f"range: classes are the argmax of its {n_outputs} outputs, so "
                                 f"labels must be in [0, {n_outputs}) (or -1 for unlabelled).")
            return y, labeled, "label"
        try:
            y = np.asarray(y, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError("Regression targets must be numeric.") from exc
        if y.ndim == 1 and n_outputs == 1:
            y, form = y[:, None], "scalar"
        elif y.ndim == 2 and y.shape[1] == n_outputs:
            form = "last"
        elif (n_timesteps is not None and y.ndim == 3
              and y.shape[1:] == (n_timesteps, n_outputs)):
            form = "sequence"
        elif n_timesteps is None:
            raise ValueError(f"Regression targets of a convolutional network must have shape "
                             f"(n_samples, n_outputs={n_outputs}); got {y.shape}.")
        else:
            raise ValueError(f"Regression targets must have shape (n_samples, n_timesteps="
                             f"{n_timesteps}, n_outputs={n_outputs}) or (n_samples, "
                             f"n_outputs={n_outputs}); got {y.shape}.")
        missing = np.isnan(y.reshape(n_samples, -1))
        partial = missing.any(1) & ~missing.all(1)
        if partial.any():
            raise ValueError(f"Samples {np.flatnonzero(partial)[:5].tolist()} have some but not "
                             "all targets NaN; mark an unlabelled sample with NaN everywhere.")
        if np.isinf(y).any():
            raise ValueError("Regression targets contain infinite values.")
        return y, ~missing.all(1), form

    # ------------------------------------------------------------------ objective
    def _objective(self, meta, theta, xl, yl, xu, noise, task, form, y_scale, zp, bw):
        """Loss per start: theta (S, d) -> (S,)."""
        s = theta.shape[0]
        n_l = xl.shape[0]
        x = xl[None].expand(s, *xl.shape).reshape(-1, *xl.shape[1:])
        th = theta.repeat_interleave(n_l, 0)
        y_hat, _ = meta(x, th)
        y_hat = y_hat.view(s, n_l, *y_hat.shape[1:])
        if task == "classification":
            logits = y_hat[:, :, -1] if y_hat.ndim == 4 else y_hat
            data = torch.nn.functional.cross_entropy(
                logits.reshape(s * n_l, -1), yl.repeat(s), reduction="none").view(s, n_l).mean(1)
        else:
            pred = y_hat if (form == "sequence" or y_hat.ndim == 3) else y_hat[:, :, -1]
            data = ((pred - yl[None]) ** 2).reshape(s, -1).mean(1) / y_scale
        d2 = ((theta[:, None] - zp[None]) ** 2).sum(-1) / (2 * bw ** 2)       # (S, N)
        prior = -torch.logsumexp(-d2, dim=1) + np.log(zp.shape[0])
        loss = data + self.prior_weight * prior / n_l
        if xu is not None and self.unlabeled_weight > 0:
            n_u = xu.shape[0]
            xx = xu[None].expand(s, *xu.shape).reshape(-1, *xu.shape[1:])
            thu = theta.repeat_interleave(n_u, 0)
            yu, _ = meta(xx, thu)
            if task == "classification":
                logp = torch.log_softmax(yu[:, -1] if yu.ndim == 3 else yu, -1)
                unl = -(logp.exp() * logp).sum(-1).view(s, n_u).mean(1)
            else:
                yn, _ = meta(xx + noise, thu)
                unl = ((yu - yn) ** 2).reshape(s, -1).mean(1) / y_scale
            loss = loss + self.unlabeled_weight * unl
        return loss

    # ------------------------------------------------------------------ API
    def fit(self, X: np.ndarray, y: np.ndarray) -> DynamoSemiSupervised:
        """Find the embedding whose network fits the labelled samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_inputs)
            Input sequences (labelled and unlabelled); images ``(n_samples, channels,
            height, width)`` when the population is convolutional.
        y : array-like
            Classification: integer labels of shape (n_samples,), -1 for unlabelled.
            Regression: targets of shape (n_samples, n_timesteps, n_outputs) or
            (n_samples, n_outputs), NaN for unlabelled samples.

        Returns
        -------
        self : DynamoSemiSupervised
            The fitted estimator.
        """
        self._validate_params()
        if y is None:
            raise ValueError("DynamoSemiSupervised.fit needs targets y (-1 or NaN for "
                             "unlabelled samples).")
        self._resolve_task(np.asarray(y))  # string labels: before any embedder is fitted
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(_MAX_SEED))
        embedder, Z = self._get_embedder(seed)
        inner = unwrap(embedder)
        meta = inner.meta_model_
        x = check_inputs(X, meta)
        n_steps = inner.family_.n_timesteps(x)
        y = np.asarray(y)
        task = self._resolve_task(y)
        y, labeled, form = self._check_targets(y, x.shape[0], n_steps, meta.n_outputs, task)
        if not labeled.any():
            raise ValueError("y has no labelled sample (every entry is -1/NaN): at least one "
                             "labelled sequence is needed.")
        ref = next(meta.parameters())
        t = lambda a: torch.as_tensor(a, device=ref.device)  # noqa: E731
        xl = t(x[labeled])
        if task == "classification":
            yl = t(y[labeled]).long()
            y_scale = 1.0
        else:
            yl = t(y[labeled])
            var = float(np.var(y[labeled].reshape(-1, y.shape[-1]), 0).mean())
            y_scale = var if var > 1e-6 else 1.0  # one labelled scalar has no variance
        unl = np.flatnonzero(~labeled)
        if len(unl) > self.max_unlabeled:
            unl = np.sort(rng.choice(unl, self.max_unlabeled, replace=False))
        xu = t(x[unl]) if len(unl) and self.unlabeled_weight > 0 else None
        gen = torch.Generator(device=ref.device).manual_seed(seed)
        noise = None
        if xu is not None and task == "regression":
            std = float(x.std()) or 1.0
            noise = 0.05 * std * torch.randn(xu.shape, generator=gen, device=ref.device)
        zp = t(Z.astype(np.float32))
        bw = _bandwidth(Z)
        cand = t(search_candidates(Z).astype(np.float32))

        def objective(theta):                       # (1, S, d) -> (1, S)
            theta = theta[0]
            nz = (None if noise is None
                  else noise.repeat(theta.shape[0], *([1] * (noise.ndim - 1))))
            return self._objective(meta, theta, xl, yl, xu, nz, task, form, y_scale, zp,
                                   bw)[None]

        found = multi_start_search(objective, cand, n_starts=self.n_starts,
                                   max_iter=self.max_iter, lr=self.lr, score_chunk=16)
        z = found.theta[0].cpu().numpy().astype(np.float64)
        starts, final = found.starts[0], found.losses[0]

        self.embedder_ = embedder
        self.embedding_ = z
        self.model_ = inner.family_.bake(meta, z)
        self.start_embeddings_ = starts.cpu().numpy().astype(np.float64)
        self.start_losses_ = final.detach().cpu().numpy().astype(np.float64)
        self.n_labeled_ = int(labeled.sum())
        self._task, self._form = task, form
        if task == "classification":
            self.classes_ = np.arange(meta.n_outputs)
        elif hasattr(self, "classes_"):
            del self.classes_
        return self

    def _outputs(self, X):
        check_is_fitted(self)
        return run_network(self.model_, X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict classes or targets for input sequences.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_inputs)
            Sequences, or images ``(n_samples, channels, height, width)`` for CNNs.

        Returns
        -------
        y : ndarray
            Classification: labels (n_samples,). Regression: the form of the fitted
            targets, (n_samples, n_timesteps, n_outputs), (n_samples, n_outputs) or
            (n_samples,).
        """
        out = self._outputs(X)
        if self._task == "classification":
            return self.classes_[final_outputs(out).argmax(1)]
        if self._form == "sequence":
            return out
        last = final_outputs(out)
        return last[:, 0] if self._form == "scalar" else last

    @available_if(_may_predict_proba)
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities: softmax of the last step's outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_inputs)
            Sequences, or images ``(n_samples, channels, height, width)`` for CNNs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities of ``classes_``; each row sums to 1.
        """
        return softmax(final_outputs(self._outputs(X)).astype(np.float64), axis=1)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy (classification) or R^2 (regression) on the labelled samples of ``y``.

        Samples marked unlabelled (-1 / NaN) are left out.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_inputs)
            Sequences, or images ``(n_samples, channels, height, width)`` for CNNs.
        y : array-like
            Labels or targets in the form ``fit`` took.

        Returns
        -------
        score : float
            Accuracy, or R^2 of the predicted targets (at most 1).
        """
        check_is_fitted(self)
        inner = unwrap(self.embedder_)
        meta = inner.meta_model_
        x = check_inputs(X, meta)
        n_steps = inner.family_.n_timesteps(x)
        y, labeled, _ = self._check_targets(np.asarray(y), x.shape[0], n_steps,
                                            meta.n_outputs, self._task)
        if not labeled.any():
            raise ValueError("y has no labelled sample to score against.")
        pred = self.predict(x[labeled])
        if self._task == "classification":
            return float(accuracy_score(y[labeled], pred))
        yt = y[labeled]
        return float(r2_score(yt.reshape(-1, yt.shape[-1]),
                              np.asarray(pred).reshape(-1, yt.shape[-1])))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        # sklearn's checks expect the type-specific tags with the type (as the mixins do).
        if self.task == "classification":
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        elif self.task == "regression":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        tags.target_tags.required = True
        return tags
