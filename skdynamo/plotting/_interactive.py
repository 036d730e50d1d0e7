"""An embedding map to explore in a browser: one self-contained HTML file (plotly, optional
dependency: ``pip install 'skdynamo[interactive]'``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._embedding import (
    _MAX_LEGEND_CATEGORIES,
    _PALETTE,
    _as_embeddings,
    _category_colors,
    _format,
    _is_continuous,
    _label_columns,
    _resolve,
)

__all__ = ["plot_embedding_html"]

# emulation_scores_ entry -> column name in the map
_SCORE_COLUMNS = {"output_r2": "output R²", "hidden_r2": "hidden R²", "agreement": "agreement"}


def _plotly():
    try:
        import plotly.graph_objects as go
    except ImportError as exc:
        raise ImportError("plot_embedding_html needs plotly: pip install "
                          "'skdynamo[interactive]' (or pip install plotly).") from exc
    return go


def _score_columns(embedder, n):
    scores = getattr(embedder, "emulation_scores_", None)
    if scores is None:
        raise ValueError(f"embedder={type(embedder).__name__} has no emulation_scores_: pass a "
                         f"fitted DynamoEmbedder (or leave embedder out).")
    columns = {}
    for key, name in _SCORE_COLUMNS.items():
        if key in scores:
            values = np.asarray(scores[key], dtype=float)
            if len(values) != n:
                raise ValueError(
                    f"embedder: emulation_scores_ has {len(values)} models but the embeddings "
                    f"have {n} rows. The scores describe the training models: pass their "
                    f"embeddings (embedder.embeddings_, the default), or leave embedder out.")
            columns[name] = values
    return columns


def _escape(text):
    """A column name safe inside a hover template (no HTML, no %{...} placeholders)."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("%{", "%\u200b{"))


def plot_embedding_html(embeddings: np.ndarray | None = None,
                        path: str | os.PathLike | None = None, *, data: Any = None,
                        embedder: Any = None, color_by: str | Sequence | None = None,
                        color_options: Sequence[str] | None = None,
                        dims: tuple[int, int] = (0, 1), title: str | None = None,
                        marker_size: float = 7, height: int = 650) -> Any:
    """The embedding map as one self-contained HTML page to explore in a browser.

    Every model is a point (WebGL, so thousands of points stay fluid); hovering shows its
    index, its labels and its emulation R^2; a dropdown recolours the map by any column,
    and clicking a legend entry hides or shows a category. The page carries plotly.js
    (about 5 MB), so it opens offline and can be sent as one file.

    Parameters
    ----------
    embeddings : array-like of shape (n_models, n_components), default=None
        One row per model; ``embedder.embeddings_`` when None.
    path : str or path-like, default=None
        HTML file to write; None writes nothing (show or save the returned figure).
    data : DataFrame, Bunch or dict of columns, default=None
        Labels per model, shown on hover and offered as colours: a pandas DataFrame (every
        column), a dict of columns, or a Bunch such as the populations of
        :mod:`skdynamo.datasets` (its per-model arrays ``task``, ``cell``, ``seed``...
        become columns; ``models``, ``probe_inputs`` and ``DESCR`` are skipped).
    embedder : fitted DynamoEmbedder, default=None
        Adds each model's emulation scores on held-out probes (``emulation_scores_``:
        ``output R²``, ``hidden R²``, and ``agreement`` for classifiers) as columns. The
        scores describe the training models, so ``embeddings`` must be theirs.
    color_by : str or array-like of shape (n_models,), default=None
        Colour shown first: a column name, or an array (column ``'color_by'``). Defaults to
        the first column offered. Numbers with more than 10 distinct values get a
        continuous scale and a colour bar, anything else one colour per category (the
        palette of :func:`plot_embedding`).
    color_options : list of str, default=None
        Columns offered in the dropdown; None offers every column that is not constant.
    dims : tuple of two ints, default=(0, 1)
        Embedding dimensions to show.
    title : str, default=None
        Defaults to 'DYNAMO model embedding (N models)'.
    marker_size : float, default=7
        Diameter of the points, in pixels.
    height : int, default=650
        Height in pixels; the width follows the browser window.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        The figure (also written to ``path`` when given).

    See Also
    --------
    plot_embedding : The same map as a static matplotlib figure.

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo.plotting import plot_embedding_html
    >>> z = np.random.default_rng(0).normal(size=(6, 2))
    >>> labels = {"task": ["flipflop", "delay"] * 3, "seed": [0, 0, 1, 1, 2, 2]}
    >>> fig = plot_embedding_html(z, data=labels, color_by="task")
    >>> fig.data[0].hovertemplate
    'model %{customdata[0]}<br>task: %{customdata[1]}<br>seed: %{customdata[2]}<extra></extra>'
    >>> fig.data[0].customdata[0].tolist()
    ['0', 'flipflop', '0']
    >>> [b.label for b in fig.layout.updatemenus[0].buttons]
    ['task', 'seed']
    """
    go = _plotly()
    if embeddings is None:
        if embedder is None:
            raise ValueError("Pass embeddings, or a fitted embedder whose embeddings_ to draw.")
        embeddings = getattr(embedder, "embeddings_", None)
        if embeddings is None:
            raise ValueError(f"embedder={type(embedder).__name__} has no embeddings_: fit it "
                             f"first, or pass embeddings.")
    z, dims = _as_embeddings(embeddings, dims)
    n = len(z)
    columns = _label_columns(data, n)
    if embedder is not None:
        for name, values in _score_columns(embedder, n).items():
            columns.setdefault(name, values)
    if color_by is not None and not isinstance(color_by, str):
        columns["color_by"] = _resolve(color_by, columns, n, "color_by")
        color_by = "color_by"
    _resolve(color_by, columns, n, "color_by")      # a clear error for an unknown name

    if color_options is None:
        options = [c for c in columns if len(np.unique(columns[c].astype(str))) > 1]
    else:
        if isinstance(color_options, str):
            color_options = [color_options]
        options = list(color_options)
        for c in options:
            _resolve(c, columns, n, "color_options")
    if color_by is not None and color_by not in options:
        options.insert(0, color_by)
    if color_by is None and options:
        color_by = options[0]

    # Hover: one row of preformatted strings per model (customdata) and one template, so the
    # column names are written once per trace, not once per point.
    names = list(columns)
    table = np.empty((n, 1 + len(names)), dtype=object)
    table[:, 0] = [str(i) for i in range(n)]
    for j, c in enumerate(names, start=1):
        table[:, j] = [_escape(_format(v)) for v in columns[c]]
    template = "model %{customdata[0]}" + "".join(
        f"<br>{_escape(c)}: %{{customdata[{j}]}}" for j, c in enumerate(names, start=1)) \
        + "<extra></extra>"
    x, y = z[:, dims[0]], z[:, dims[1]]
    marker = dict(size=marker_size, line=dict(width=0.5, color="#333333"), opacity=0.85)
    common = dict(mode="markers", hovertemplate=template)

    fig = go.Figure()
    groups = []                      # (column, first trace, number of traces)
    for col in options or [None]:
        start = len(fig.data)
        visible = col == color_by
        if col is None:              # nothing to colour by
            fig.add_trace(go.Scattergl(x=x, y=y, customdata=table, name="models", **common,
                                       marker=dict(marker, color=_PALETTE[0])))
        elif _is_continuous(columns[col]):
            values = columns[col].astype(float)
            fig.add_trace(go.Scattergl(
                x=x, y=y, customdata=table, name=col, **common,
                visible=visible, showlegend=False,
                marker=dict(marker, color=values, colorscale="Viridis", showscale=True,
                            cmin=float(np.nanmin(values)), cmax=float(np.nanmax(values)),
                            colorbar=dict(title=dict(text=col)))))
        else:
            values = np.asarray([_format(v) for v in columns[col]])   # NaN == NaN here
            colors = _category_colors(values)
            if len(colors) > _MAX_LEGEND_CATEGORIES:   # too many for a legend: one trace
                fig.add_trace(go.Scattergl(
                    x=x, y=y, customdata=table, name=col, **common,
                    visible=visible, showlegend=False,
                    marker=dict(marker, color=[colors[v] for v in values])))
            else:
                for category, color in colors.items():
                    sel = values == category
                    fig.add_trace(go.Scattergl(
                        x=x[sel], y=y[sel], customdata=table[sel], name=category,
                        legendgroup=col, **common,
                        visible=visible, marker=dict(marker, color=color)))
        groups.append((col, start, len(fig.data) - start))

    n_traces = len(fig.data)
    buttons = []
    for col, start, count in groups:
        if col is None:
            continue
        mask = [start <= t < start + count for t in range(n_traces)]
        buttons.append(dict(label=col, method="update",
                            args=[{"visible": mask}, {"legend.title.text": col}]))
    if title is None:
        title = f"DYNAMO model embedding ({n} models)"
    layout = dict(
        title=dict(text=title), template="plotly_white", height=height,
        hovermode="closest", xaxis=dict(title=dict(text=f"embedding dim {dims[0] + 1}")),
        yaxis=dict(title=dict(text=f"embedding dim {dims[1] + 1}")),
        legend=dict(title=dict(text=color_by or ""), itemsizing="constant"),
        margin=dict(t=100))
    if buttons:
        active = [b["label"] for b in buttons].index(color_by)
        # Above the legend (or the colour bar), which the column also titles.
        layout["updatemenus"] = [dict(buttons=buttons, active=active, direction="down",
                                      x=1.02, xanchor="left", y=1.0, yanchor="bottom",
                                      pad=dict(b=4), showactive=True)]
        layout["annotations"] = [dict(text="colour by", x=1.02, xref="paper", xanchor="left",
                                      y=1.0, yref="paper", yanchor="bottom", yshift=34,
                                      showarrow=False)]
    fig.update_layout(**layout)
    if path is not None:
        fig.write_html(os.fspath(path), include_plotlyjs=True, full_html=True,
                       config={"scrollZoom": True, "displaylogo": False})
    return fig
