"""Model families: one module per kind of network, behind one protocol (:class:`ModelFamily`).

``FAMILIES`` lists them by the name ``DynamoEmbedder(meta_model=...)`` takes, the default
(recurrent) family last. To add a family, write one module with a :class:`ModelFamily`
subclass and add it here; no estimator changes.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..utils.validation import as_probe_array
from ._base import ModelFamily
from ._convolutional import ConvolutionalFamily
from ._recurrent import RecurrentFamily

__all__ = ["ModelFamily", "RecurrentFamily", "ConvolutionalFamily", "FAMILIES",
           "DEFAULT_FAMILY", "resolve_family", "family_for_probes", "family_of"]

#: Families by name, in the order membership is tried; the default family last.
FAMILIES = {cls.name: cls for cls in (ConvolutionalFamily, RecurrentFamily)}
#: The family of populations no other family claims (and of plain Trajectories).
DEFAULT_FAMILY = RecurrentFamily


def resolve_family(meta_model: str, probe_inputs: Any, models: list) -> type[ModelFamily]:
    """Return the family class of a population: ``meta_model``, else the probes' rank.

    With ``probe_inputs=None`` the first family that claims a member wins. Given probes
    choose the family of their rank; a member of another family is an error.

    Parameters
    ----------
    meta_model : str
        ``DynamoEmbedder``'s ``meta_model``: ``'auto'`` or a key of ``FAMILIES``.
    probe_inputs : array-like or None
        The probes, or None.
    models : list of torch.nn.Module or Trajectories
        The population.

    Returns
    -------
    type
        A subclass of :class:`ModelFamily`.

    Raises
    ------
    ValueError
        If a member belongs to another family than the probes'.
    """
    if meta_model != "auto":
        return FAMILIES[meta_model]
    if probe_inputs is None:
        return next((f for f in FAMILIES.values()
                     if f is not DEFAULT_FAMILY and any(f.is_member(m) for m in models)),
                    DEFAULT_FAMILY)
    shape = as_probe_array(probe_inputs).shape
    family = family_for_probes(probe_inputs)
    for i, m in enumerate(models):
        for other in FAMILIES.values():
            if other is not family and isinstance(m, nn.Module) and other.is_member(m):
                raise ValueError(other.probe_mismatch(i, m, shape))
    return family


def family_for_probes(probe_inputs: Any) -> type[ModelFamily]:
    """Return the family class whose probes have the rank of ``probe_inputs``.

    Parameters
    ----------
    probe_inputs : array-like
        The probes.

    Returns
    -------
    type
        The family of that rank, else ``DEFAULT_FAMILY``.
    """
    rank = len(as_probe_array(probe_inputs).shape)
    return next((f for f in FAMILIES.values() if f.probe_rank == rank), DEFAULT_FAMILY)


def family_of(meta: nn.Module) -> ModelFamily:
    """Return a family object for a trained meta-model (chosen by its class).

    Parameters
    ----------
    meta : torch.nn.Module
        A conditioned meta-model (``meta_model_`` of a fitted embedder).

    Returns
    -------
    ModelFamily
        An instance of the family whose ``meta_class`` it is.

    Raises
    ------
    TypeError
        If no family's ``meta_class`` matches.
    """
    for family in FAMILIES.values():
        if isinstance(meta, family.meta_class):
            return family()
    raise TypeError(f"{type(meta).__name__} is not the meta-model of a known family "
                    f"({', '.join(FAMILIES)}).")

