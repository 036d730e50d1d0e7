"""Torch modules used by skdynamo (no scikit-learn logic here)."""

from ._meta import CELLS, ConditionedRNN, DynamoModule, EmulatedNetwork

__all__ = ["CELLS", "ConditionedRNN", "DynamoModule", "EmulatedNetwork"]
