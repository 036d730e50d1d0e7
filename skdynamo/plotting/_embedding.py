"""Pictures of the embedding space and of training (matplotlib, optional dependency)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_embedding", "plot_training_curves"]

_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("skdynamo.plotting needs matplotlib: pip install "
                          "'skdynamo[plot]'.") from exc
    return plt


def plot_embedding(embeddings: np.ndarray, *, color_by: Sequence | None = None,
                   marker_by: Sequence | None = None, labels: Sequence | None = None,
                   ax: Axes | None = None, title: str | None = "DYNAMO model embedding",
                   dims: tuple[int, int] = (0, 1)) -> Axes:
    """Scatter the model embeddings, coloured by one label and marked by another.

    Parameters
    ----------
    embeddings : array-like of shape (n_models, n_components)
        The embeddings (``embeddings_`` or the output of ``transform``).
    color_by : array-like of shape (n_models,), default=None
        Category per model for the colour (e.g. task).
    marker_by : array-like of shape (n_models,), default=None
        Category per model for the marker (e.g. cell type).
    labels : array-like of shape (n_models,), default=None
        Text written beside each point.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure by default.
    title : str or None, default='DYNAMO model embedding'
        Title of the axes.
    dims : tuple of two ints, default=(0, 1)
        Embedding dimensions to show.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.
    """
    plt = _pyplot()
    z = np.asarray(embeddings, dtype=float)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"embeddings must have shape (n_models, n_components); got {z.shape}.")
    if z.shape[1] == 1:
        z = np.column_stack([z[:, 0], np.zeros(len(z))])
        dims = (0, 1)
    n = len(z)
    color_by = np.asarray(color_by if color_by is not None else ["model"] * n)
    marker_by = np.asarray(marker_by if marker_by is not None else [""] * n)
    for name, arr in (("color_by", color_by), ("marker_by", marker_by)):
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries for {n} models.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    colors = {c: plt.cm.tab10(i % 10) for i, c in enumerate(dict.fromkeys(color_by))}
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(dict.fromkeys(marker_by))}
    for c in colors:
        for m in markers:
            sel = (color_by == c) & (marker_by == m)
            if sel.any():
                label = f"{c} / {m}" if m != "" else str(c)
                ax.scatter(z[sel, dims[0]], z[sel, dims[1]], color=colors[c], marker=markers[m],
                           s=60, edgecolor="k", linewidth=0.5, label=label, alpha=0.85)
    if labels is not None:
        for (x, y), text in zip(z[:, list(dims)], labels):
            ax.annotate(str(text), (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel(f"embedding dim {dims[0] + 1}")
    ax.set_ylabel(f"embedding dim {dims[1] + 1}")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best", ncol=1 + (len(colors) * len(markers) > 9))
    return ax


def plot_training_curves(history: Any, *, ax: Axes | None = None) -> Axes:
    """Plot the training and held-out loss per epoch of a fit.

    Parameters
    ----------
    history : skorch History
        ``DynamoEmbedder.history_``.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure by default.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.
    """
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history[:, "train_loss"], label="train")
    try:
        ax.plot(history[:, "valid_loss"], label="held-out probes")
    except KeyError:
        pass
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return ax
