"""skdynamo: DYNAMO (dynamical model embedding) with a scikit-learn API."""

__version__ = "0.1.0"
