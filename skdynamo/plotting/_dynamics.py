"""Pictures of dynamics: fixed points over trajectories, bifurcation diagrams, and maps of
the embedding space coloured by the number of stable fixed points (matplotlib)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.decomposition import PCA
from sklearn.utils import Bunch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..dynamics import FixedPoints

__all__ = ["plot_bifurcation", "plot_fixed_points", "plot_stability_map"]

_STYLE = {
    "stable": dict(color="tab:blue", marker="o", s=60, zorder=4),
    "unstable": dict(color="tab:red", marker="X", s=60, zorder=4),
    "marginal": dict(color="tab:orange", marker="D", s=50, zorder=4),
    "slow": dict(facecolors="none", edgecolors="0.35", marker="o", s=25, zorder=3),
}


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("skdynamo.plotting needs matplotlib: pip install matplotlib") from exc
    return plt


def plot_fixed_points(fixed_points: FixedPoints, trajectories: np.ndarray | None = None, *,
                      n_components: int = 2, n_trajectories: int = 20, show_slow: bool = True,
                      ax: Axes | None = None, title: str | None = None) -> Axes:
    """Draw fixed points over trajectories, in the trajectories' top principal components.

    Parameters
    ----------
    fixed_points : FixedPoints
        Result of :func:`skdynamo.dynamics.find_fixed_points`.
    trajectories : array-like of shape (n_sequences, n_timesteps, state_size), default=None
        States to draw (and to fit the PCA on); the sample kept in
        ``fixed_points.trajectories`` by default. Without any, the PCA is fitted on the
        points themselves.
    n_components : {2, 3}, default=2
        Principal components drawn (a 2-D or a 3-D plot).
    n_trajectories : int, default=20
        Sequences drawn as grey lines.
    show_slow : bool, default=True
        Draw slow points (open grey circles).
    ax : matplotlib Axes, default=None
        Axes to draw on (3-D axes for ``n_components=3``).
    title : str, default=None
        Title of the axes; a summary of the counts by default.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.
    """
    plt = _plt()
    if n_components not in (2, 3):
        raise ValueError(f"n_components must be 2 or 3, got {n_components!r}.")
    fp = fixed_points
    traj = fp.trajectories if trajectories is None else trajectories
    traj = None if traj is None else np.asarray(traj, dtype=np.float64)
    if traj is not None and traj.ndim == 2:
        traj = traj[None]
    parts = [fp.points, fp.slow_points] + ([] if traj is None else [traj.reshape(-1,
                                                                                traj.shape[-1])])
    fit_on = parts[2] if traj is not None else np.concatenate(parts[:2])
    if len(fit_on) == 0:
        raise ValueError("Nothing to plot: no trajectories, fixed points or slow points.")
    k = min(n_components, fit_on.shape[1], max(len(fit_on), 1))
    pca = PCA(n_components=k).fit(fit_on)

    def proj(a):
        out = np.zeros((len(a), n_components))
        if len(a):
            out[:, :k] = pca.transform(a)
        return out

    if ax is None:
        fig = plt.figure(figsize=(5.5, 5))
        ax = fig.add_subplot(111, projection="3d" if n_components == 3 else None)
    if traj is not None:
        for seq in traj[:n_trajectories]:
            p = proj(seq)
            ax.plot(*p.T, color="0.6", lw=0.6, alpha=0.6, zorder=1)
    for label in ("stable", "unstable", "marginal"):
        pts = fp.points[fp.stability == label]
        if len(pts):
            ax.scatter(*proj(pts).T, label=f"{label} ({len(pts)})", **_STYLE[label])
    if show_slow and fp.n_slow:
        ax.scatter(*proj(fp.slow_points).T, label=f"slow points ({fp.n_slow})",
                   **_STYLE["slow"])
    evr = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({evr[0]:.0%})")
    if k > 1:
        ax.set_ylabel(f"PC2 ({evr[1]:.0%})")
    if n_components == 3 and k > 2:
        ax.set_zlabel(f"PC3 ({evr[2]:.0%})")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title if title is not None else
                 f"{fp.n_stable} stable, {fp.n_unstable} unstable fixed points")
    return ax


def plot_bifurcation(path_result: Bunch, *, axes: Axes | np.ndarray | None = None,
                     show_points: bool = True, title: str | None = None) -> np.ndarray:
    """Draw the bifurcation diagram along a path of the embedding space.

    Top panel: every fixed point found at each position ``t`` of the path, as its
    coordinate on the first principal component of all of them, coloured by stability.
    Bottom panel: the number of stable and unstable fixed points against ``t``.

    Parameters
    ----------
    path_result : Bunch
        Result of :func:`skdynamo.dynamics.fixed_points_along_path`.
    axes : matplotlib Axes or pair of Axes, default=None
        One Axes draws the counts only; two draw both panels.
    show_points : bool, default=True
        Draw the top panel (ignored when a single Axes is given).
    title : str, default=None
        Title of the figure's first panel.

    Returns
    -------
    axes : ndarray of matplotlib Axes
        The panels drawn on.
    """
    plt = _plt()
    res = path_result
    t = np.asarray(res.t)
    if axes is None:
        if show_points:
            _, axes = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True,
                                   gridspec_kw=dict(height_ratios=[3, 2]))
        else:
            _, ax = plt.subplots(figsize=(6, 2.8))
            axes = [ax]
    axes = np.atleast_1d(axes)
    ax_counts = axes[-1]
    if len(axes) > 1:
        ax_pts = axes[0]
        allpts = [fp.points for fp in res.fixed_points if fp.n_fixed]
        if allpts:
            pca = PCA(n_components=1).fit(np.concatenate(allpts))
            for label in ("stable", "unstable", "marginal"):
                xs, ys = [], []
                for ti, fp in zip(t, res.fixed_points):
                    pts = fp.points[fp.stability == label]
                    if len(pts):
                        xs.append(np.full(len(pts), ti))
                        ys.append(pca.transform(pts)[:, 0])
                if xs:
                    style = dict(_STYLE[label], s=14)
                    ax_pts.scatter(np.concatenate(xs), np.concatenate(ys), label=label, **style)
            ax_pts.legend(loc="best", fontsize="small")
        ax_pts.set_ylabel("fixed point (PC1)")
        if title is not None:
            ax_pts.set_title(title)
    elif title is not None:
        ax_counts.set_title(title)
    ax_counts.step(t, res.n_stable, where="mid", color="tab:blue", label="stable")
    ax_counts.step(t, res.n_unstable, where="mid", color="tab:red", ls="--", label="unstable")
    if np.any(res.n_slow):
        ax_counts.step(t, res.n_slow, where="mid", color="0.5", ls=":", label="slow points")
    ax_counts.set_xlabel("position along the path")
    ax_counts.set_ylabel("number of points")
    ax_counts.legend(loc="best", fontsize="small")
    return axes


def plot_stability_map(grid_result: Bunch, embeddings: np.ndarray | None = None,
                       labels: np.ndarray | None = None, *, ax: Axes | None = None,
                       cmap: str = "viridis", title: str | None = None) -> Axes:
    """Draw the embedding space coloured by the number of stable fixed points.

    Parameters
    ----------
    grid_result : Bunch
        Result of :func:`skdynamo.dynamics.fixed_points_on_grid`.
    embeddings : array-like of shape (n_models, d), default=None
        Model embeddings to overlay (the grid's two components are used).
    labels : array-like of shape (n_models,), default=None
        A label per model (e.g. its number of bits): one marker group per label.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure by default.
    cmap : str, default='viridis'
        Colour map of the counts.
    title : str, default=None
        Title of the axes.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.
    """
    plt = _plt()
    res = grid_result
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    counts = np.asarray(res.n_stable)
    levels = np.arange(counts.min(), counts.max() + 2) - 0.5
    mesh = ax.pcolormesh(res.xx, res.yy, counts, cmap=plt.get_cmap(cmap, len(levels) - 1),
                         vmin=levels[0], vmax=levels[-1], shading="nearest")
    bar = plt.colorbar(mesh, ax=ax, ticks=np.arange(counts.min(), counts.max() + 1))
    bar.set_label("stable fixed points")
    i, j = res.components
    if embeddings is not None:
        emb = np.asarray(embeddings)
        markers = "osD^v<>PX*"
        if labels is None:
            ax.scatter(emb[:, i], emb[:, j], c="white", edgecolors="k", s=40)
        else:
            labels = np.asarray(labels)
            for m, lab in zip(markers * 10, np.unique(labels)):
                sel = labels == lab
                ax.scatter(emb[sel, i], emb[sel, j], marker=m, c="white", edgecolors="k",
                           s=45, label=str(lab))
            ax.legend(loc="best", fontsize="small", title="models")
    ax.set_xlabel(f"embedding dim {i}")
    ax.set_ylabel(f"embedding dim {j}")
    if title is not None:
        ax.set_title(title)
    return ax
