"""Output-space baseline: outputs on the probe inputs, flattened, + PCA."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._recording import Trajectories
from ..utils.validation import check_models, check_probe_inputs

__all__ = ["OutputSpaceEmbedding", "model_outputs"]


@torch.no_grad()
def model_outputs(model, probes):
    """Outputs of a module (or the recorded outputs of a ``Trajectories``) as numpy.

    The module's training flag is restored afterwards.
    """
    if isinstance(model, Trajectories):
        return model.outputs
    was_training = model.training
    try:
        model.eval()
        ref = next(iter(model.parameters()), None)
        x = torch.as_tensor(probes, dtype=torch.float32,
                            device=ref.device if ref is not None else "cpu")
        out = model(x)
        if isinstance(out, tuple):
            out = out[0]
        return out.detach().cpu().numpy().astype(np.float32)
    finally:
        model.train(was_training)


class OutputSpaceEmbedding(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Baseline: embed models by PCA of their outputs on shared probe inputs.

    Works for any architecture, but sees only *what* a model outputs, not how it computes
    it: models that agree on the probes land together whatever their internal dynamics.

    Parameters
    ----------
    probe_inputs : array-like of shape (n_probes, n_timesteps, n_features)
        Inputs every model is run on (required); images ``(n_probes, channels, height,
        width)`` for convolutional models.
    n_components : int, default=2
        Dimensions kept by the PCA.
    random_state : int, RandomState instance or None, default=None
        Passed to the PCA.

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_models, n_components)
    pca_ : sklearn.decomposition.PCA
    """

    _parameter_constraints = {
        "probe_inputs": ["array-like", None],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, probe_inputs: np.ndarray | None = None, n_components: int = 2, *,
                 random_state: int | np.random.RandomState | None = None) -> None:
        self.probe_inputs = probe_inputs
        self.n_components = n_components
        self.random_state = random_state

    def _features(self, models, probes):
        outs = [model_outputs(m, probes) for m in models]
        shapes = {o.shape for o in outs}
        if len(shapes) != 1:
            raise ValueError(f"Models produce outputs of different shapes on the probes: "
                             f"{sorted(shapes)}.")
        return np.stack([o.reshape(-1) for o in outs]).astype(np.float64)

    def fit(self, X: Sequence, y: None = None) -> OutputSpaceEmbedding:
        """Record the models' outputs on the probes and fit the PCA.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population; each model is one sample.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : OutputSpaceEmbedding
            The fitted estimator.
        """
        self._validate_params()
        if self.probe_inputs is None:
            raise ValueError("OutputSpaceEmbedding needs probe_inputs=, an array of shape "
                             "(n_probes, n_timesteps, n_features).")
        models = check_models(X)
        probes = check_probe_inputs(self.probe_inputs, models)
        if self.n_components > len(models):
            raise ValueError(f"n_components={self.n_components} exceeds the number of models "
                             f"({len(models)}).")
        feats = self._features(models, probes)
        pca = PCA(self.n_components, random_state=self.random_state)
        self.embeddings_ = pca.fit_transform(feats)
        self.pca_ = pca
        self.probe_inputs_ = probes
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

    def transform(self, X: Sequence) -> np.ndarray:
        """Embed models with the fitted PCA.

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
        probes = check_probe_inputs(self.probe_inputs_, models)
        feats = self._features(models, probes)
        if feats.shape[1] != self.pca_.n_features_in_:
            raise ValueError(f"Models produce {feats.shape[1]} output values on the probes; the "
                             f"embedding was fitted on {self.pca_.n_features_in_}.")
        return self.pca_.transform(feats)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
