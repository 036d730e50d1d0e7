"""Plots for skdynamo: static maps and dynamics (matplotlib: ``pip install 'skdynamo[plot]'``),
and an embedding map to explore in a browser (plotly: ``pip install 'skdynamo[interactive]'``)."""

from ._dynamics import plot_bifurcation, plot_fixed_points, plot_stability_map
from ._embedding import plot_embedding, plot_training_curves
from ._interactive import plot_embedding_html

__all__ = [
    "plot_bifurcation",
    "plot_embedding",
    "plot_embedding_html",
    "plot_fixed_points",
    "plot_stability_map",
    "plot_training_curves",
]
