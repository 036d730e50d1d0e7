"""Helpers shared by DynamoCluster, DynamoAverager and DynamoSemiSupervised."""

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from ._embedder import DynamoEmbedder

__all__ = ["resolve_embedder", "embed_population", "unwrap", "check_sequences", "check_images",
           "check_inputs", "final_outputs", "run_network"]


def resolve_embedder(embedder, random_state):
    """Clone ``embedder`` (``None`` gives ``DynamoEmbedder(random_state=random_state)``).

    A :class:`sklearn.frozen.FrozenEstimator` survives cloning: that is how a fitted
    embedder is reused (and shared between grid-search candidates).
    """
    if embedder is None:
        return DynamoEmbedder(random_state=random_state)
    if not hasattr(embedder, "transform") or not hasattr(embedder, "fit"):
        raise TypeError(f"embedder must be a DynamoEmbedder (or a FrozenEstimator wrapping a "
                        f"fitted one), got {type(embedder).__name__}.")
    return clone(embedder)


def is_frozen(embedder):
    return isinstance(embedder, FrozenEstimator)


def unwrap(embedder):
    """The inner estimator of a FrozenEstimator, else ``embedder`` itself."""
    return embedder.estimator if is_frozen(embedder) else embedder


def embed_population(embedder, models):
    """Training embeddings of ``models``: ``fit_transform``, or ``transform`` when frozen."""
    if is_frozen(embedder):
        try:
            check_is_fitted(embedder.estimator)
        except NotFittedError as exc:
            raise NotFittedError("The FrozenEstimator given as embedder wraps an unfitted "
                                 "embedder; fit it before freezing.") from exc
        return np.asarray(embedder.transform(models), dtype=np.float64)
    return np.asarray(embedder.fit_transform(models), dtype=np.float64)


def check_sequences(X, n_inputs, *, name="X"):
    """Validate data for a recurrent network: float32 array (n_samples, n_timesteps, n_inputs).

    Raises a clear error for models passed where data is expected, wrong rank, wrong
    width or non-finite values. Nothing is reshaped.
    """
    if isinstance(X, (list, tuple)) and X and not np.isscalar(X[0]) \
            and hasattr(X[0], "parameters"):
        raise TypeError(f"{name} must be data (an array of shape (n_samples, n_timesteps, "
                        f"{n_inputs})), not a list of models.")
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array of shape (n_samples, n_timesteps, "
                        f"{n_inputs}); got {type(X).__name__}.") from exc
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (n_samples, n_timesteps, n_features={n_inputs});"
                         f" got an array of shape {arr.shape}.")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one sequence of at least one step; got shape "
                         f"{arr.shape}.")
    if arr.shape[2] != n_inputs:
        raise ValueError(f"{name} has {arr.shape[2]} features per step, but the model takes "
                         f"{n_inputs} inputs.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def check_images(X, input_shape, *, name="X"):
    """Validate images for a convolutional network: float32 (n_samples, C, H, W).

    ``input_shape`` is ``(C, H, W)``, the shape of the probe images the network was
    built on.
    """
    if isinstance(X, (list, tuple)) and X and hasattr(X[0], "parameters"):
        raise TypeError(f"{name} must be images (an array of shape (n_samples, "
                        f"{', '.join(map(str, input_shape))})), not a list of models.")
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array of images; got "
                        f"{type(X).__name__}.") from exc
    expected = (None, *input_shape)
    if arr.ndim != 4:
        hint = (" For single-channel images add the channel axis: X[:, None]."
                if arr.ndim == 3 and input_shape[0] == 1 else "")
        raise ValueError(f"{name} must be images of shape (n_samples, "
                         f"{', '.join(map(str, input_shape))}); got an array of shape "
                         f"{arr.shape}.{hint}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} holds no image.")
    if arr.shape[1:] != tuple(input_shape):
        raise ValueError(f"{name} has images of shape {arr.shape[1:]} (channels, height, "
                         f"width), but the network was built on {tuple(input_shape)}: "
                         f"expected {expected}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def check_inputs(X, net, *, name="X"):
    """Data for ``net``: images when it is convolutional (it has an ``input_shape``),
    sequences otherwise."""
    shape = getattr(net, "input_shape", None)
    if shape is not None:
        return check_images(X, shape, name=name)
    return check_sequences(X, net.n_inputs, name=name)


def final_outputs(outputs):
    """The class scores of each sample: the last step of a sequence model's outputs
    (``(n, T, O)`` -> ``(n, O)``); a CNN's logits ``(n, O)`` are returned as they are."""
    return outputs[:, -1] if outputs.ndim == 3 else outputs


def run_network(net, X):
    """Validate data for ``net`` and return its outputs as a numpy array."""
    x = check_inputs(X, net)
    ref = next(net.parameters())
    with torch.no_grad():
        return net(torch.as_tensor(x, device=ref.device)).cpu().numpy()
