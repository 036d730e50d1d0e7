"""Pictures of the embedding space and of training (matplotlib, optional dependency).

The label and colour rules shared with the interactive map
(:func:`~skdynamo.plotting.plot_embedding_html`) live here: which entries of a DataFrame,
Bunch or dict are per-model columns, how a column name or array is resolved, which
columns are coloured by category and which on a continuous scale, and the palette.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_embedding", "plot_training_curves"]

_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
# matplotlib's tab10, written out so that the HTML map (which needs no matplotlib) and the
# PNG give a category the same colour.
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]
# Numeric columns with more distinct values than this get a continuous colour scale.
_MAX_NUMERIC_CATEGORIES = 10
# Category columns with more values than this get no legend (colours cycle).
_MAX_LEGEND_CATEGORIES = 20


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("skdynamo.plotting needs matplotlib: pip install "
                          "'skdynamo[plot]'.") from exc
    return plt


def _as_embeddings(embeddings, dims, name="embeddings"):
    if hasattr(embeddings, "get_params"):  # an estimator, not its points
        raise TypeError(f"{name} must be the points to draw, (n_models, n_components), not "
                        f"a {type(embeddings).__name__}: pass emb.embeddings_ (or "
                        "emb.transform(models)).")
    z = np.asarray(embeddings, dtype=float)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n_models, n_components); got {z.shape}.")
    if z.shape[1] == 1:
        return np.column_stack([z[:, 0], np.zeros(len(z))]), (0, 1)
    dims = tuple(dims)
    if len(dims) != 2 or not all(isinstance(d, numbers.Integral) and 0 <= d < z.shape[1]
                                 for d in dims):
        raise ValueError(f"dims must be two embedding dimensions in [0, {z.shape[1] - 1}]; "
                         f"got {dims!r}.")
    return z, dims


def _is_scalar(v):
    return isinstance(v, (str, bytes, numbers.Number, np.generic)) or v is None


def _as_column(value):
    """``value`` as a 1-D array of scalars, or None when it is not a per-model column
    (a string, a number, an N-D array, a list of models...)."""
    if hasattr(value, "to_numpy") and getattr(value, "ndim", 1) == 1:   # pandas Series
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            return None
        if value.dtype.kind == "O" and not all(_is_scalar(v) for v in value):
            return None
        return value
    if isinstance(value, (list, tuple)) and all(_is_scalar(v) for v in value):
        return np.asarray(value)
    return None


def _label_columns(data, n, name="data"):
    """The per-model columns of ``data`` as ``{column: array of shape (n,)}``.

    ``data`` is a pandas DataFrame, a Mapping (a dict of columns, or a Bunch such as the
    populations of :mod:`skdynamo.datasets`, whose ``models``, ``probe_inputs`` and
    ``DESCR`` are not columns and are skipped) or one array of labels (column ``'label'``).
    """
    if data is None:
        return {}
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):     # DataFrame
        items = [(str(c), data[c]) for c in data.columns]
        strict = True
    elif isinstance(data, Mapping):
        items = [(str(k), v) for k, v in data.items()]
        strict = False
    else:
        col = _as_column(data)
        if col is None:
            raise TypeError(f"{name} must be a pandas DataFrame, a Bunch or dict of columns, or "
                            f"one array of labels; got {type(data).__name__}.")
        if len(col) != n:
            raise ValueError(f"{name} has {len(col)} entries for {n} models (one label per "
                             f"model, in the order of the embeddings).")
        return {"label": col}
    columns = {}
    for key, value in items:
        col = _as_column(value)
        if col is None:
            if strict:
                raise TypeError(f"{name}[{key!r}] is not a column of numbers, strings or "
                                f"booleans.")
            continue
        if len(col) != n:
            raise ValueError(f"{name}[{key!r}] has {len(col)} entries for {n} models (one row per "
                             f"model, in the order of the embeddings).")
        columns[key] = col
    return columns


def _resolve(spec, columns, n, name):
    """A column given by name (looked up in ``columns``) or as an array of length ``n``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in columns:
            known = ", ".join(repr(c) for c in columns) or "none (pass data=)"
            raise ValueError(f"{name}={spec!r} is not a column; the columns are {known}.")
        return columns[spec]
    col = _as_column(spec)
    if col is None:
        raise TypeError(f"{name} must be a column name or an array of shape (n_models,); got "
                        f"{type(spec).__name__}.")
    if len(col) != n:
        raise ValueError(f"{name} has {len(col)} entries for {n} models.")
    return col


def _is_continuous(values):
    """Colour ``values`` on a continuous scale (numbers with many distinct values)?"""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        return False
    return len(np.unique(values[~np.isnan(values)] if values.dtype.kind == "f" else values)) \
        > _MAX_NUMERIC_CATEGORIES


def _category_colors(values):
    """``{category: hex colour}`` in order of first appearance, cycling through tab10."""
    return {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(dict.fromkeys(values))}


def _format(value):
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (numbers.Integral, np.integer)):
        return str(int(value))
    if isinstance(value, (numbers.Real, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def plot_embedding(embeddings: np.ndarray, *, color_by: str | Sequence | None = None,
                   marker_by: str | Sequence | None = None,
                   labels: str | Sequence | None = None, data: Any = None,
                   ax: Axes | None = None, title: str = "DYNAMO model embedding",
                   dims: tuple[int, int] = (0, 1)) -> Axes:
    """Scatter the model embeddings, coloured by one label and marked by another.

    For a map to explore in a browser (hover, zoom, colour switch), see
    :func:`plot_embedding_html`; both colour a category alike.

    Parameters
    ----------
    embeddings : array-like of shape (n_models, n_components)
        One point per model (``DynamoEmbedder.embeddings_`` or ``transform``'s output).
    color_by : str or array-like of shape (n_models,), default=None
        Label per model for the colour (e.g. task), or the name of a column of ``data``.
        Numbers with more than 10 distinct values (a score) get a continuous colour scale
        and a colour bar; anything else is a category.
    marker_by : str or array-like of shape (n_models,), default=None
        Category per model for the marker (e.g. cell type), or a column name.
    labels : str or array-like of shape (n_models,), default=None
        Text written beside each point, or a column name.
    data : DataFrame, Bunch or dict of columns, default=None
        Per-model columns that ``color_by``, ``marker_by`` and ``labels`` can name, e.g. a
        population from :mod:`skdynamo.datasets` (``color_by="task"``).
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure by default.
    title : str, default='DYNAMO model embedding'
        Title of the axes.
    dims : tuple of two ints, default=(0, 1)
        Embedding dimensions to show.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo.plotting import plot_embedding
    >>> z = np.random.default_rng(0).normal(size=(6, 2))
    >>> ax = plot_embedding(z, color_by="task", data={"task": ["a", "b"] * 3})
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['a', 'b']
    """
    plt = _pyplot()
    z, dims = _as_embeddings(embeddings, dims)
    n = len(z)
    columns = _label_columns(data, n)
    color_by = _resolve(color_by, columns, n, "color_by")
    marker_by = _resolve(marker_by, columns, n, "marker_by")
    labels = _resolve(labels, columns, n, "labels")
    continuous = color_by is not None and _is_continuous(color_by)
    if color_by is None:
        color_by = np.asarray(["model"] * n)
    marker_by = np.asarray(marker_by if marker_by is not None else [""] * n)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(dict.fromkeys(marker_by))}
    style = dict(s=60, edgecolor="k", linewidth=0.5, alpha=0.85)
    if continuous:
        values = color_by.astype(float)
        norm = plt.Normalize(np.nanmin(values), np.nanmax(values))
        for m in markers:
            sel = marker_by == m
            mappable = ax.scatter(z[sel, dims[0]], z[sel, dims[1]], c=values[sel], norm=norm,
                                  cmap="viridis", marker=markers[m], label=str(m) or None,
                                  **style)
        plt.colorbar(mappable, ax=ax)
        n_entries = len(markers) if len(markers) > 1 else 0
    else:
        colors = _category_colors(color_by)
        for c in colors:
            for m in markers:
                sel = (color_by == c) & (marker_by == m)
                if sel.any():
                    label = f"{c} / {m}" if m != "" else str(c)
                    ax.scatter(z[sel, dims[0]], z[sel, dims[1]], color=colors[c],
                               marker=markers[m], label=label, **style)
        n_entries = len(colors) * len(markers)
    if labels is not None:
        for (x, y), text in zip(z[:, list(dims)], labels):
            ax.annotate(_format(text), (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel(f"embedding dim {dims[0] + 1}")
    ax.set_ylabel(f"embedding dim {dims[1] + 1}")
    ax.set_title(title)
    if 0 < n_entries <= _MAX_LEGEND_CATEGORIES * 2:
        legend = ax.legend(fontsize=7, loc="best", ncol=1 + (n_entries > 9))
        if continuous:  # the legend names markers only: the colour bar gives the values
            for handle in legend.legend_handles:
                handle.set_array(None)  # else drawing maps the values through the cmap
                handle.set_facecolor("0.7")
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
