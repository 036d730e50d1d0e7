"""Fixed-point topology across the embedding space: along a path, and over a 2-D grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from ._fixed_points import (FixedPoints, RandomState, _as_constant_input, _as_inputs,
                            _check_params, _find_group, find_fixed_points)
from .._docstrings import share_parameters
from ._systems import as_system

__all__ = ["fixed_points_along_path", "fixed_points_on_grid"]

# Budget (in float64 entries) of the per-row Jacobians held at once when batching systems.
_BATCH_ENTRIES = 2e7


def _resolve(embedder):
    """``(factory z -> system, embeddings or None, default inputs or None)``."""
    if hasattr(embedder, "model_at"):
        if not hasattr(embedder, "embeddings_"):
            raise ValueError(f"This {type(embedder).__name__} instance is not fitted yet. Call "
                             "'fit' with appropriate arguments before using it.")
        probes = getattr(embedder, "probe_inputs_", None)
        if probes is None:
            probes = getattr(embedder, "probe_inputs", None)
        return embedder.model_at, np.asarray(embedder.embeddings_, dtype=np.float64), probes
    if callable(embedder):
        return embedder, None, None
    raise TypeError("embedder must be a fitted DynamoEmbedder (anything with model_at(z)) or "
                    f"a callable z -> recurrent system; got {type(embedder).__name__}.")


def _endpoint(value, embeddings, name):
    if isinstance(value, (int, np.integer)):
        if embeddings is None:
            raise ValueError(f"{name}={value} is a model index, but the embedder has no "
                             "embeddings_; pass an embedding vector.")
        if not -len(embeddings) <= value < len(embeddings):
            raise ValueError(f"{name}={value} is out of range for {len(embeddings)} models.")
        return embeddings[value]
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if embeddings is not None and arr.shape[0] != embeddings.shape[1]:
        raise ValueError(f"{name} has {arr.shape[0]} entries; embeddings have "
                         f"{embeddings.shape[1]}.")
    return arr


def fixed_points_at(embedder: Any, embeddings: np.ndarray,
                    inputs: np.ndarray | torch.Tensor | None = None, *,
                    constant_input: np.ndarray | None = None, n_initial: int = 128,
                    noise: float = 0.1, tol: float = 1e-8, max_iter: int = 200,
                    dedup_tol: float = 1e-4, slow_tol: float = 1e-2, eig_tol: float = 1e-5,
                    midpoints: bool = True, n_sequences: int | None = 32,
                    random_state: RandomState = None) -> list[FixedPoints]:
    """Find the fixed points of the meta-model at each of several embeddings, batched.

    Meta-models at different embeddings share their weights, so their searches run as one
    batch.

    Parameters
    ----------
    {embedder}
    embeddings : array-like of shape (n_points, d)
        The embeddings at which to search.
    {inputs}
    {constant_input}
    {n_initial}
    {noise}
    {tol}
    {max_iter}
    {dedup_tol}
    {slow_tol}
    {eig_tol}
    {midpoints}
    {n_sequences}
    {random_state}

    Returns
    -------
    list of FixedPoints
        One per row of ``embeddings``.
    """
    _check_params(n_initial, tol, max_iter, slow_tol, dedup_tol)
    factory, _, default_inputs = _resolve(embedder)
    Z = np.asarray(embeddings, dtype=np.float64)
    if Z.ndim != 2 or not np.all(np.isfinite(Z)):
        raise ValueError(f"embeddings must be a finite array of shape (n_points, d); got "
                         f"shape {Z.shape}.")
    rng = check_random_state(random_state)
    systems = [as_system(factory(z.astype(np.float32))) for z in Z]
    if inputs is None:
        inputs = default_inputs
    x_in = _as_inputs(inputs, systems[0])
    if x_in is not None and n_sequences is not None and len(x_in) > n_sequences:
        x_in = x_in[torch.from_numpy(rng.choice(len(x_in), n_sequences, replace=False))]
    xstar = _as_constant_input(constant_input, systems[0])
    # Group systems that share one update (same layer weights), keep order.
    groups = {}
    for i, s in enumerate(systems):
        key = s.group_key if s.group_key is not None else ("own", i)
        groups.setdefault(key, []).append(i)
    results = [None] * len(systems)
    size = systems[0].state_size
    per_chunk = max(1, int(_BATCH_ENTRIES // (n_initial * size * size)))
    for idx in groups.values():
        for lo in range(0, len(idx), per_chunk):
            part = idx[lo:lo + per_chunk]
            found = _find_group([systems[i] for i in part], x_in, xstar, None, n_initial, noise,
                                tol, max_iter, dedup_tol, slow_tol, eig_tol, rng, midpoints)
            for i, fp in zip(part, found):
                results[i] = fp
    return results


def _counts(fps):
    return dict(n_stable=np.array([f.n_stable for f in fps]),
                n_unstable=np.array([f.n_unstable for f in fps]),
                n_marginal=np.array([f.n_marginal for f in fps]),
                n_slow=np.array([f.n_slow for f in fps]))


def fixed_points_along_path(embedder: Any, start: int | Sequence[float] | None = None,
                            end: int | Sequence[float] | None = None, *,
                            path: np.ndarray | None = None, n_points: int = 50,
                            inputs: np.ndarray | torch.Tensor | None = None,
                            constant_input: np.ndarray | None = None, n_initial: int = 128,
                            noise: float = 0.1, tol: float = 1e-8, max_iter: int = 200,
                            dedup_tol: float = 1e-4, slow_tol: float = 1e-2,
                            eig_tol: float = 1e-5, midpoints: bool = True,
                            n_sequences: int | None = 32,
                            random_state: RandomState = None) -> Bunch:
    """Count the stable and unstable fixed points of the meta-model along a path.

    Parameters
    ----------
    embedder : fitted DynamoEmbedder or callable
        Anything with ``model_at(z)`` (and ``embeddings_``), or a callable ``z -> system``.
    start, end : int or array-like of shape (d,), default=None
        Ends of the straight path: model indices (rows of ``embeddings_``) or embeddings.
    path : array-like of shape (n_points, d), default=None
        An explicit path; overrides ``start``, ``end`` and ``n_points``.
    n_points : int, default=50
        Points on the straight path, ends included.
    inputs : array-like of shape (n_sequences, n_timesteps, n_inputs), default=None
        Sequences whose trajectories seed the searches; the embedder's probe inputs by
        default (``n_sequences`` of them drawn at random).
    constant_input : array-like of shape (n_inputs,), default=None
        Input held during the search (zeros).
    n_initial : int, default=128
        Initial states per point.
    {noise}
    {tol}
    {max_iter}
    {dedup_tol}
    {slow_tol}
    {eig_tol}
    {midpoints}
    n_sequences : int, default=32
        Probe sequences used to record each point's trajectories.
    {random_state}

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``t`` (position along the path in [0, 1]), ``embeddings`` (n_points, d),
        ``n_stable``, ``n_unstable``, ``n_marginal``, ``n_slow`` (int arrays of length
        n_points) and ``fixed_points`` (list of :class:`FixedPoints`).
    """
    _, embeddings, _ = _resolve(embedder)
    if path is None:
        if start is None or end is None:
            raise ValueError("Pass start and end (model indices or embeddings), or path=.")
        a, b = _endpoint(start, embeddings, "start"), _endpoint(end, embeddings, "end")
        if a.shape != b.shape:
            raise ValueError(f"start and end differ in length: {a.shape[0]} vs {b.shape[0]}.")
        if not isinstance(n_points, (int, np.integer)) or n_points < 2:
            raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}.")
        t = np.linspace(0.0, 1.0, n_points)
        Z = a[None] + t[:, None] * (b - a)[None]
    else:
        Z = np.asarray(path, dtype=np.float64)
        if Z.ndim != 2 or len(Z) < 1:
            raise ValueError(f"path must have shape (n_points, d); got {Z.shape}.")
        steps = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(Z, axis=0), axis=1))]
        t = steps / steps[-1] if steps[-1] > 0 else np.zeros(len(Z))
    fps = fixed_points_at(embedder, Z, inputs, constant_input=constant_input,
                          n_initial=n_initial, noise=noise, tol=tol, max_iter=max_iter,
                          dedup_tol=dedup_tol, slow_tol=slow_tol, eig_tol=eig_tol,
                          midpoints=midpoints, n_sequences=n_sequences,
                          random_state=random_state)
    return Bunch(t=t, embeddings=Z, fixed_points=fps, **_counts(fps))


def fixed_points_on_grid(embedder: Any, *, grid_size: int | tuple[int, int] = 10,
                         bounds: Sequence[tuple[float, float]] | None = None,
                         components: tuple[int, int] = (0, 1),
                         center: np.ndarray | None = None, margin: float = 0.1,
                         inputs: np.ndarray | torch.Tensor | None = None,
                         constant_input: np.ndarray | None = None, n_initial: int = 64,
                         noise: float = 0.1, tol: float = 1e-8, max_iter: int = 200,
                         dedup_tol: float = 1e-4, slow_tol: float = 1e-2, eig_tol: float = 1e-5,
                         midpoints: bool = True, n_sequences: int | None = 32,
                         random_state: RandomState = None) -> Bunch:
    """Count the stable fixed points over a 2-D grid of the embedding space.

    Parameters
    ----------
    {embedder}
    grid_size : int or (int, int), default=10
        Grid points along each of the two components.
    bounds : ((float, float), (float, float)), default=None
        Ranges of the two components; by default the embeddings' range widened by
        ``margin`` of its span on each side.
    components : (int, int), default=(0, 1)
        Embedding dimensions that vary; the others are held at ``center``.
    center : array-like of shape (d,), default=None
        Values of the fixed dimensions (the mean embedding by default).
    margin : float, default=0.1
        Widening of the default bounds, as a fraction of the embeddings' span.
    {inputs}
    {constant_input}
    n_initial : int, default=64
        Initial states per grid point.
    {noise}
    {tol}
    {max_iter}
    {dedup_tol}
    {slow_tol}
    {eig_tol}
    {midpoints}
    {n_sequences}
    {random_state}

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``xx``, ``yy`` (grid coordinates, shape (ny, nx)), ``embeddings`` (ny, nx, d),
        ``n_stable``, ``n_unstable``, ``n_marginal``, ``n_slow`` (arrays of shape (ny, nx)),
        ``fixed_points`` (nested list [ny][nx]) and ``components``.
    """
    _, embeddings, _ = _resolve(embedder)
    nx, ny = (grid_size, grid_size) if np.isscalar(grid_size) else grid_size
    if nx < 1 or ny < 1:
        raise ValueError(f"grid_size must be positive, got {grid_size!r}.")
    i, j = components
    if center is None:
        if embeddings is None:
            raise ValueError("center= is required when the embedder has no embeddings_.")
        center = embeddings.mean(axis=0)
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    if bounds is None:
        if embeddings is None:
            raise ValueError("bounds= is required when the embedder has no embeddings_.")
        lo, hi = embeddings[:, [i, j]].min(0), embeddings[:, [i, j]].max(0)
        pad = margin * np.maximum(hi - lo, 1e-6)
        bounds = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
    xs = np.linspace(*bounds[0], nx)
    ys = np.linspace(*bounds[1], ny)
    xx, yy = np.meshgrid(xs, ys)
    Z = np.repeat(center[None], nx * ny, axis=0)
    Z[:, i], Z[:, j] = xx.ravel(), yy.ravel()
    fps = fixed_points_at(embedder, Z, inputs, constant_input=constant_input,
                          n_initial=n_initial, noise=noise, tol=tol, max_iter=max_iter,
                          dedup_tol=dedup_tol, slow_tol=slow_tol, eig_tol=eig_tol,
                          midpoints=midpoints, n_sequences=n_sequences,
                          random_state=random_state)
    counts = {k: v.reshape(ny, nx) for k, v in _counts(fps).items()}
    return Bunch(xx=xx, yy=yy, embeddings=Z.reshape(ny, nx, -1), components=(i, j),
                 fixed_points=[fps[r * nx:(r + 1) * nx] for r in range(ny)], **counts)


# One text for the parameters the searches share (find_fixed_points documents them).
share_parameters(fixed_points_along_path, find_fixed_points)
share_parameters(fixed_points_at, fixed_points_along_path)
share_parameters(fixed_points_on_grid, fixed_points_along_path)
