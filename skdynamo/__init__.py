"""skdynamo: DYNAMO (dynamical model embedding) with a scikit-learn API."""

from ._averager import DynamoAverager
from ._cluster import DynamoCluster
from .families._convolutional import LayerTrajectories, align_depths, cnn_layers, record_cnn
from ._embedder import DynamoEmbedder
from ._net import DivergenceError
from ._persistence import load_estimator, load_weights, save_estimator, save_weights
from ._recording import Trajectories
from ._semi_supervised import DynamoSemiSupervised
from ._stability import embedding_disagreement, model_disagreement
from ._standalone import StandaloneCNN, StandaloneRNN

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "DynamoAverager",
    "DynamoCluster",
    "DynamoEmbedder",
    "DynamoSemiSupervised",
    "LayerTrajectories",
    "StandaloneCNN",
    "StandaloneRNN",
    "Trajectories",
    "__version__",
    "align_depths",
    "cnn_layers",
    "embedding_disagreement",
    "load_estimator",
    "load_weights",
    "model_disagreement",
    "record_cnn",
    "save_estimator",
    "save_weights",
]
