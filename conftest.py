"""Collection of the package's doctests (``pytest --doctest-modules skdynamo``): a module
that needs an optional dependency which is not installed is left out, not an error."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("distributed") else ["skdynamo/utils/dask.py"]
