"""Input validation shared by every skdynamo estimator."""

import numpy as np
import torch
from torch import nn

from .._recording import Trajectories

__all__ = ["as_probe_array", "check_models", "check_probe_inputs"]


def check_models(X, *, name="X"):
    """Validate a population: a non-empty sequence of ``nn.Module``/``Trajectories``.

    Returns a list. A lone module is rejected explicitly (an ``nn.Sequential`` has a
    length, and would otherwise be read as a population of its layers).
    """
    if isinstance(X, (nn.Module, Trajectories)):
        raise TypeError(f"{name} must be a sequence of models (one sample per model), got a "
                        f"single {type(X).__name__}; wrap it in a list: [{name}].")
    if isinstance(X, (str, bytes, dict)) or not hasattr(X, "__len__"):
        raise TypeError(f"{name} must be a list or tuple of torch.nn.Module or "
                        f"skdynamo.Trajectories objects, got {type(X).__name__}.")
    if isinstance(X, np.ndarray) and X.dtype != object:
        raise TypeError(f"{name} must be a sequence of models, got a numeric array of shape "
                        f"{X.shape}: skdynamo embeds networks, not feature vectors.")
    models = list(X)
    if not models:
        raise ValueError(f"{name} is empty: pass at least one model.")
    for i, m in enumerate(models):
        if not isinstance(m, (nn.Module, Trajectories)):
            raise TypeError(f"{name}[{i}] is a {type(m).__name__}; every element must be a "
                            "torch.nn.Module or a skdynamo.Trajectories.")
        if isinstance(m, nn.Module) and any(
                t.is_meta for t in (*m.parameters(), *m.buffers())):
            raise ValueError(f"{name}[{i}] ({type(m).__name__}) has parameters on the 'meta' "
                             "device, which hold no values; materialise it first, e.g. "
                             "model.to_empty(device='cpu') then load_state_dict(...).")
    return models


def as_probe_array(probe_inputs):
    """A float32 *copy* of the probes: the estimator keeps it, so later edits of the
    caller's array cannot change a fit. Tensors (also ones that require grad or live on
    a GPU) are detached and moved to the CPU; ragged lists get a clear error."""
    if isinstance(probe_inputs, torch.Tensor):
        probe_inputs = probe_inputs.detach().cpu().numpy()
    elif isinstance(probe_inputs, (list, tuple)):
        probe_inputs = [p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else p
                        for p in probe_inputs]
        shapes = {np.shape(p) for p in probe_inputs}
        if len(shapes) > 1:
            raise ValueError(
                f"probe_inputs is a ragged list: its {len(probe_inputs)} elements have "
                f"different shapes {sorted(shapes)[:4]}. Pass one array of shape (n_probes, "
                "n_timesteps, n_features) (images: (n, channels, height, width)); pad or crop "
                "sequences to a common length.")
    try:
        return np.array(probe_inputs, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"probe_inputs must be a numeric array, got "
                        f"{type(probe_inputs).__name__}.") from exc


def check_probe_inputs(probe_inputs, models, *, kind=None):
    """Validate probe inputs against the models; returns a float32 array.

    ``kind`` names the model family (``'rnn'``: sequences ``(n_probes, n_timesteps,
    n_features)`` whose width matches each model's; ``'cnn'``: images ``(n_probes,
    channels, height, width)`` whose channels match each model's first ``nn.Conv2d``);
    ``None`` picks the family of the probes' rank (the Transformer family for sequences
    when a model is a Transformer). The family checks
    (:meth:`skdynamo.families.ModelFamily.check_probes`).
    """
    from ..families import FAMILIES, family_for_probes
    family = family_for_probes(probe_inputs, models) if kind is None else FAMILIES[kind]
    return family().check_probes(probe_inputs, models)
