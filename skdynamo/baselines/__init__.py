"""Baselines the DYNAMO applications are measured against (used by the benchmarks).

- :class:`WeightSpaceEmbedding`: flattened parameters + PCA. Only for populations that
  share one architecture; sensitive to reparameterisation (permuted units land far apart).
- :class:`OutputSpaceEmbedding`: each model's outputs on the probe inputs + PCA. Blind to
  how the outputs are computed.
- :class:`LinearCKAEmbedding`: classical MDS of pairwise ``1 - linear CKA`` between
  hidden states on the probes (:func:`cka_distances`). Representation geometry: tends to
  group by architecture rather than task.
- :func:`average_weights`: plain (weighted) averaging of same-architecture parameters.
  Independently initialised networks are not aligned, so the average usually collapses.
"""

from ._cka import LinearCKAEmbedding, cka_distances, linear_cka
from ._output_space import OutputSpaceEmbedding
from ._weight_space import WeightSpaceEmbedding, average_weights

__all__ = ["LinearCKAEmbedding", "OutputSpaceEmbedding", "WeightSpaceEmbedding", "average_weights",
           "cka_distances", "linear_cka"]
