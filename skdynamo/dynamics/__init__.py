"""Dynamics of recurrent networks and of the meta-model: fixed points, their stability, and
how their number changes across the embedding space.

- :func:`find_fixed_points` - fixed points of one system (a base model or the meta-model
  at one embedding) and their stability; slow points reported apart.
- :func:`simulate_settled_states` - the independent check: where long autonomous runs
  settle.
- :func:`fixed_points_along_path`, :func:`fixed_points_on_grid`,
  :func:`fixed_points_at` - the number of stable and unstable fixed points of the
  meta-model across the embedding space, batched.
"""

from ._fixed_points import FixedPoints, find_fixed_points, jacobian, simulate_settled_states
from ._topology import fixed_points_along_path, fixed_points_at, fixed_points_on_grid

__all__ = [
    "FixedPoints",
    "find_fixed_points",
    "fixed_points_along_path",
    "fixed_points_at",
    "fixed_points_on_grid",
    "jacobian",
    "simulate_settled_states",
]
