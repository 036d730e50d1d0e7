"""Input validation shared by every skdynamo estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._recording import Trajectories

__all__ = ["as_probe_array", "check_models", "check_probe_inputs"]


def check_models(X: Any, *, name: str = "X") -> list:
    """Validate a population: a non-empty sequence of ``nn.Module``/``Trajectories``.

    A lone module is rejected explicitly (an ``nn.Sequential`` has a length, and would
    otherwise be read as a population of its layers).

    Parameters
    ----------
    X : sequence of torch.nn.Module or Trajectories
        The population.
    name : str, default='X'
        The argument's name in error messages.

    Returns
    -------
    list
        The models, in order.

    Raises
    ------
    TypeError
        If ``X`` is a single model, not a sequence, a numeric array, or holds anything
        but modules and trajectories.
    ValueError
        If ``X`` is empty or a model's parameters are on the ``'meta'`` device.

    Examples
    --------
    >>> import torch
    >>> from skdynamo.utils.validation import check_models
    >>> len(check_models((torch.nn.GRU(3, 8), torch.nn.GRU(3, 4))))
    2
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


def as_probe_array(probe_inputs: Any) -> np.ndarray:
    """Return a float32 *copy* of the probes.

    The estimator keeps it, so later edits of the caller's array cannot change a fit.
    Tensors (also ones that require grad or live on a GPU) are detached and moved to the
    CPU; ragged lists get a clear error.

    Parameters
    ----------
    probe_inputs : array-like or torch.Tensor
        Sequences or images.

    Returns
    -------
    ndarray
        The copy, float32.

    Raises
    ------
    ValueError
        If ``probe_inputs`` is a list of arrays of different shapes.
    TypeError
        If it is not numeric.
    """
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


def check_probe_inputs(probe_inputs: Any, models: list, *, kind: str | None = None
                       ) -> np.ndarray:
    """Validate probe inputs against the models.

    The family checks (:meth:`skdynamo.families.ModelFamily.check_probes`).

    Parameters
    ----------
    probe_inputs : array-like
        Sequences ``(n_probes, n_timesteps, n_features)`` or images ``(n_probes, channels,
        height, width)``.
    models : list of torch.nn.Module or Trajectories
        The models the probes are for.
    kind : str, default=None
        The model family: ``'rnn'`` (sequences whose width matches each model's),
        ``'cnn'`` (images whose channels match each model's first ``nn.Conv2d``); None
        picks the family of the probes' rank (the Transformer family for sequences
        when a model is a Transformer).

    Returns
    -------
    ndarray
        The probes, float32.
    """
    from ..families import FAMILIES, family_for_probes
    family = family_for_probes(probe_inputs, models) if kind is None else FAMILIES[kind]
    return family().check_probes(probe_inputs, models)
