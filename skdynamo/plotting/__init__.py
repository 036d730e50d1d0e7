"""Plots for skdynamo (needs matplotlib: ``pip install 'skdynamo[plot]'``)."""

from ._embedding import plot_embedding, plot_training_curves

__all__ = ["plot_embedding", "plot_training_curves"]
