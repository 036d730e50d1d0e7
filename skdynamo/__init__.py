"""skdynamo: DYNAMO (dynamical model embedding) with a scikit-learn API."""

from ._embedder import DynamoEmbedder
from ._net import DivergenceError
from ._recording import Trajectories

__version__ = "0.1.0"

__all__ = ["DivergenceError", "DynamoEmbedder", "Trajectories", "__version__"]
