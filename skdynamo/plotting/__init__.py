"""Plots for skdynamo (needs matplotlib: ``pip install 'skdynamo[plot]'``)."""

from ._dynamics import plot_bifurcation, plot_fixed_points, plot_stability_map
from ._embedding import plot_embedding, plot_training_curves

__all__ = [
    "plot_bifurcation",
    "plot_embedding",
    "plot_fixed_points",
    "plot_stability_map",
    "plot_training_curves",
]
