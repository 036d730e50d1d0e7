"""Model families: one module per kind of network, behind one protocol (:class:`ModelFamily`).

``FAMILIES`` lists them by the name ``DynamoEmbedder(meta_model=...)`` takes, the default
(recurrent) family last. To add a family, write one module with a :class:`ModelFamily`
subclass and add it here; no estimator changes. A family may extend another (the
Transformer family extends the recurrent one, whose members it also records): a
population resolves to the most specific family that claims one of its members.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..utils.validation import as_probe_array
from ._base import ModelFamily
from ._convolutional import ConvolutionalFamily
from ._recurrent import RecurrentFamily
from ._transformer import TransformerFamily

__all__ = ["ModelFamily", "RecurrentFamily", "ConvolutionalFamily", "TransformerFamily",
           "FAMILIES", "DEFAULT_FAMILY", "resolve_family", "refine_family", "family_for_probes",
           "family_of"]

#: Families by name, in the order membership is tried; the default family last.
FAMILIES = {cls.name: cls for cls in (ConvolutionalFamily, TransformerFamily, RecurrentFamily)}
#: The family of populations no other family claims (and of plain Trajectories).
DEFAULT_FAMILY = RecurrentFamily


def resolve_family(meta_model: str, probe_inputs: Any, models: list) -> type[ModelFamily]:
    """Return the family class of a population: ``meta_model``, else the probes' rank.

    With ``probe_inputs=None`` the first family that claims a member wins. Given probes
    choose the family of their rank; a member of another family is an error. The family
    found is then narrowed to the most specific family extending it that claims a member
    (:func:`refine_family`): RNNs beside Transformers resolve to the Transformer family.

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
        return refine_family(FAMILIES[meta_model], models)
    if probe_inputs is None:
        return refine_family(next((f for f in FAMILIES.values() if f is not DEFAULT_FAMILY
                                   and _claims(f, models)), DEFAULT_FAMILY), models)
    shape = as_probe_array(probe_inputs).shape
    family = family_for_probes(probe_inputs, models)
    for i, m in enumerate(models):
        for other in FAMILIES.values():
            if not issubclass(family, other) and isinstance(m, nn.Module) and other.is_member(m):
                raise ValueError(other.probe_mismatch(i, m, shape))
    return family


def _claims(family: type[ModelFamily], models: list) -> bool:
    return any(family.is_member(m) for m in models)


def refine_family(family: type[ModelFamily], models: list) -> type[ModelFamily]:
    """Return the first family of ``FAMILIES`` extending ``family`` that claims a member.

    Parameters
    ----------
    family : type
        A subclass of :class:`ModelFamily`.
    models : list of torch.nn.Module or Trajectories
        The population.

    Returns
    -------
    type
        The most specific registered subclass of ``family`` that claims one of
        ``models``, else ``family`` itself.
    """
    return next((f for f in FAMILIES.values() if f is not family and issubclass(f, family)
                 and _claims(f, models)), family)


def family_for_probes(probe_inputs: Any, models: list | tuple = ()) -> type[ModelFamily]:
    """Return the family class whose probes have the rank of ``probe_inputs``.

    Parameters
    ----------
    probe_inputs : array-like
        The probes.
    models : list of torch.nn.Module or Trajectories, default=()
        The population; the family found is narrowed by it (:func:`refine_family`).

    Returns
    -------
    type
        The family of that rank (else ``DEFAULT_FAMILY``), narrowed by ``models``.
    """
    rank = len(as_probe_array(probe_inputs).shape)
    base = next((f for f in FAMILIES.values() if f.probe_rank == rank
                 and f.__base__ is ModelFamily), DEFAULT_FAMILY)
    return refine_family(base, models)


def family_of(meta: nn.Module) -> ModelFamily:
    """Return a family object for a trained meta-model (chosen by its class).

    The most general family whose meta-model it is (recurrent rather than Transformer for
    a ``ConditionedRNN``: baking is shared).

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
        if isinstance(meta, family.meta_class) and family.__base__ is ModelFamily:
            return family()
    raise TypeError(f"{type(meta).__name__} is not the meta-model of a known family "
                    f"({', '.join(FAMILIES)}).")
