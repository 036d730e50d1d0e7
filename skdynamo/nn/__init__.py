"""Torch modules used by skdynamo (no scikit-learn logic here)."""

from ._meta import (CELLS, ConditionedCNN, ConditionedRNN, DynamoModule, EmulatedNetwork, FiLM,
                    build_meta_model)

__all__ = ["CELLS", "ConditionedCNN", "ConditionedRNN", "DynamoModule", "EmulatedNetwork",
           "FiLM", "build_meta_model"]
