"""Model families: one module per kind of network, behind one protocol (:class:`ModelFamily`).

``FAMILIES`` lists them by the name ``DynamoEmbedder(meta_model=...)`` takes, the default
(recurrent) family last. To add a family, write one module with a :class:`ModelFamily`
subclass and add it here; no estimator changes.
"""

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


def resolve_family(meta_model, probe_inputs, models):
    """The family class of a population: ``meta_model`` if given, else the probes' rank.

    With ``probe_inputs=None`` the first family that claims a member wins. Given probes
    choose the family of their rank; a member of another family is an error.
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


def family_for_probes(probe_inputs):
    """The family class whose probes have the rank of ``probe_inputs`` (else the default)."""
    rank = len(as_probe_array(probe_inputs).shape)
    return next((f for f in FAMILIES.values() if f.probe_rank == rank), DEFAULT_FAMILY)


def family_of(meta):
    """A family object for a trained meta-model (by its class)."""
    for family in FAMILIES.values():
        if isinstance(meta, family.meta_class):
            return family()
    raise TypeError(f"{type(meta).__name__} is not the meta-model of a known family "
                    f"({', '.join(FAMILIES)}).")

