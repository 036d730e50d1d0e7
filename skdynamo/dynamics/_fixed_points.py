"""Fixed points of recurrent systems (Sussillo & Barak 2013; Golub & Sussillo 2018).

For a constant input ``x*`` a fixed point is a state ``h*`` with ``F(h*, x*) = h*``. Many
initial states, sampled from the system's own trajectories plus noise, are moved to local
minima of ``q(h) = 1/2 ||F(h, x*) - h||^2`` by damped Newton steps (Levenberg-Marquardt on
the residual ``F(h) - h``, Jacobians by autograd, float64). A candidate counts as a fixed
point only if the update returns to it within ``tol`` (``||F(h*) - h*|| <= tol``); the
local minima that stay above ``tol`` are *slow points* and are reported apart. Each fixed
point is classified from the eigenvalues of the Jacobian of the discrete-time map:
stable when every ``|lambda| < 1``, unstable (with the number of modes ``|lambda| > 1``)
otherwise.

Every other sampled initial state is first run :data:`RELAX_STEPS` steps of the update
itself: where a system's attractors are weakly contracting or lie past regions where
``q`` is small but not zero (as in meta-models, whose state has directions no model's
readout constrains), Newton steps from trajectory states stall at those slow regions,
while runs of the update reach the attractors; the other half, and the midpoints
between the points found, find the saddles.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Bunch, check_random_state

from .._docstrings import share_parameters
from ._systems import as_system

__all__ = ["FixedPoints", "find_fixed_points", "simulate_settled_states"]

# Rows of the replicated batch used for one autograd Jacobian call (memory bound).
_JACOBIAN_ROWS = 1 << 16
_SLOW_DEDUP = 1e-2
# Entries (float64) of the per-row Jacobians solved at once in one Newton iteration.
_SOLVE_ENTRIES = 4e6
#: Steps of the update every other sampled initial state is run before the search.
RELAX_STEPS = 500

RandomState = int | np.random.RandomState | None


class FixedPoints:
    """Fixed points and slow points of a recurrent system at one constant input.

    Returned by :func:`find_fixed_points`. Arrays are float64 numpy arrays; states are in
    the coordinates of the system's update (``[h, c]`` for LSTMs).

    Parameters
    ----------
    points, speeds, jacobians, slow_points, slow_speeds, constant_input : array-like
        The attributes of the same names.
    tol, slow_tol, eig_tol : float
        The thresholds of the search.
    n_initial : int
        Number of initial states optimised.
    trajectories : ndarray or None, default=None
        A sample of the recorded trajectories.
    system_name : str, default=""
        Name of the system, for the summary.

    Attributes
    ----------
    points : ndarray of shape (n_fixed, state_size)
        The fixed points (``||F(h) - h|| <= tol``), de-duplicated.
    speeds : ndarray of shape (n_fixed,)
        ``||F(h) - h||`` at each fixed point.
    q : ndarray of shape (n_fixed,)
        ``1/2 ||F(h) - h||^2``.
    jacobians : ndarray of shape (n_fixed, state_size, state_size)
        Jacobian ``dF/dh`` of the update at each fixed point.
    eigenvalues : ndarray of shape (n_fixed, state_size), complex
        Eigenvalues of each Jacobian, sorted by decreasing modulus.
    n_unstable_modes : ndarray of shape (n_fixed,)
        Number of eigenvalues with ``|lambda| > 1 + eig_tol``.
    stability : ndarray of str of shape (n_fixed,)
        ``'stable'`` (all ``|lambda| < 1 - eig_tol``), ``'unstable'`` (at least one
        unstable mode; a saddle when some modes are stable too) or ``'marginal'``.
    slow_points : ndarray of shape (n_slow, state_size)
        Local minima of ``q`` that the update does not return to within ``tol`` but
        moves less than ``slow_tol`` per step. Never counted as fixed points.
    slow_speeds : ndarray of shape (n_slow,)
        ``||F(h) - h||`` at each slow point.
    constant_input : ndarray of shape (n_inputs,)
        The input ``x*`` held during the search.
    tol, slow_tol, eig_tol : float
        The thresholds used.
    n_initial : int
        Number of initial states optimised.
    trajectories : ndarray of shape (n_sequences, n_timesteps, state_size) or None
        A sample of the recorded trajectories the initial states were drawn from (for
        plots).
    system_name : str
        Name of the system (its module path), for the summary.
    """

    def __init__(self, points: np.ndarray, speeds: np.ndarray, jacobians: np.ndarray,
                 slow_points: np.ndarray, slow_speeds: np.ndarray, constant_input: np.ndarray,
                 tol: float, slow_tol: float, eig_tol: float, n_initial: int,
                 trajectories: np.ndarray | None = None, system_name: str = "") -> None:
        self.points = np.asarray(points, dtype=np.float64)
        self.speeds = np.asarray(speeds, dtype=np.float64)
        self.q = 0.5 * self.speeds ** 2
        self.jacobians = np.asarray(jacobians, dtype=np.float64)
        state_size = self.points.shape[1]
        if len(self.points):
            eig = np.linalg.eigvals(self.jacobians)
            order = np.argsort(-np.abs(eig), axis=1)
            self.eigenvalues = np.take_along_axis(eig, order, axis=1)
        else:
            self.eigenvalues = np.zeros((0, state_size), dtype=np.complex128)
        modulus = np.abs(self.eigenvalues)
        self.n_unstable_modes = (modulus > 1.0 + eig_tol).sum(axis=1)
        stable = (modulus < 1.0 - eig_tol).all(axis=1)
        self.stability = np.where(stable, "stable",
                                  np.where(self.n_unstable_modes > 0, "unstable", "marginal"))
        self.slow_points = np.asarray(slow_points, dtype=np.float64).reshape(-1, state_size)
        self.slow_speeds = np.asarray(slow_speeds, dtype=np.float64)
        self.constant_input = np.asarray(constant_input, dtype=np.float64)
        self.tol, self.slow_tol, self.eig_tol = float(tol), float(slow_tol), float(eig_tol)
        self.n_initial = int(n_initial)
        self.trajectories = trajectories
        self.system_name = system_name

    @property
    def n_fixed(self) -> int:
        """Number of fixed points (all stabilities)."""
        return len(self.points)

    @property
    def n_stable(self) -> int:
        """Number of stable fixed points."""
        return int(np.sum(self.stability == "stable"))

    @property
    def n_unstable(self) -> int:
        """Number of unstable fixed points (saddles included)."""
        return int(np.sum(self.stability == "unstable"))

    @property
    def n_marginal(self) -> int:
        """Number of marginal fixed points (an eigenvalue within ``eig_tol`` of 1)."""
        return int(np.sum(self.stability == "marginal"))

    @property
    def n_slow(self) -> int:
        """Number of slow points (not fixed points)."""
        return len(self.slow_points)

    @property
    def stable_points(self) -> np.ndarray:
        """The stable fixed points, shape (n_stable, state_size)."""
        return self.points[self.stability == "stable"]

    @property
    def converged(self) -> bool:
        """True when at least one fixed point met the tolerance."""
        return self.n_fixed > 0

    def __len__(self):
        return self.n_fixed

    def summary(self) -> str:
        """Describe the fixed points and slow points in a few lines.

        Returns
        -------
        str
            Counts by stability, then one line per fixed point (its kind, largest
            eigenvalue modulus and speed), then the slow points; ``str(fp)`` is the same.
        """
        lines = [f"FixedPoints of {self.system_name or 'system'} at input "
                 f"{np.array2string(self.constant_input, precision=3)}: "
                 f"{self.n_fixed} fixed points ({self.n_stable} stable, {self.n_unstable} "
                 f"unstable, {self.n_marginal} marginal), {self.n_slow} slow points; "
                 f"tol={self.tol:g} on ||F(h)-h||, {self.n_initial} initial states."]
        for i in np.argsort(self.n_unstable_modes, kind="stable"):
            lam = np.abs(self.eigenvalues[i, 0]) if self.eigenvalues.shape[1] else np.nan
            modes = self.n_unstable_modes[i]
            kind = self.stability[i]
            if kind == "unstable":
                kind = f"unstable ({modes} unstable mode{'s' if modes != 1 else ''})"
            lines.append(f"  #{i}: {kind:<28s} max|lambda|={lam:.4f}  "
                         f"||F(h)-h||={self.speeds[i]:.1e}")
        if self.n_slow:
            speeds = np.sort(self.slow_speeds)
            shown = ", ".join(f"{v:.1e}" for v in speeds[:8])
            more = f", ... ({self.n_slow - 8} more)" if self.n_slow > 8 else ""
            lines.append(f"  slow points (not fixed): {self.n_slow}, speeds ||F(h)-h|| "
                         f"{shown}{more}")
        if not self.converged:
            lines.append("  WARNING: no state met the tolerance; only slow points were found.")
        return "\n".join(lines)

    def __repr__(self):
        return (f"FixedPoints(n_fixed={self.n_fixed}, n_stable={self.n_stable}, "
                f"n_unstable={self.n_unstable}, n_marginal={self.n_marginal}, "
                f"n_slow={self.n_slow})")

    def __str__(self):
        return self.summary()


# ----------------------------------------------------------------------------- checks


def _as_inputs(inputs, system):
    if inputs is None:
        return None
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    arr = np.asarray(inputs, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"inputs must be an array of shape (n_sequences, n_timesteps, "
                         f"n_inputs); got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("inputs contain non-finite values (NaN or inf).")
    width = system.input_width
    if width is not None and arr.shape[-1] != width:
        raise ValueError(f"inputs have {arr.shape[-1]} features per step but {system.name} "
                         f"takes {width}.")
    return torch.from_numpy(arr)


def _as_constant_input(constant_input, system):
    n = system.n_inputs
    if constant_input is None:
        if n is None:
            raise ValueError(f"The input width of {system.name} is unknown: pass "
                             "constant_input= explicitly.")
        return torch.zeros(n, dtype=torch.float64)
    arr = np.asarray(constant_input, dtype=np.float64).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"constant_input has {arr.shape[0]} entries but {system.name} takes "
                         f"{n} inputs per step.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("constant_input contains non-finite values.")
    return torch.from_numpy(arr.copy())


def _as_initial_states(initial_states, system):
    arr = np.asarray(initial_states, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != system.state_size:
        raise ValueError(f"initial_states must have shape (n, {system.state_size}) for "
                         f"{system.name}; got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("initial_states contain non-finite values (NaN or inf).")
    return torch.from_numpy(arr.copy())


def _sample_states(system, inputs, initial_states, n_initial, noise, rng):
    """Initial states: given ones, or states of recorded trajectories plus noise."""
    if initial_states is not None:
        return _as_initial_states(initial_states, system), None
    if inputs is None:
        # Without data, a box around the origin (adequate for tanh/GRU states only).
        h0 = rng.uniform(-1.0, 1.0, size=(n_initial, system.state_size))
        return torch.from_numpy(h0), None
    traj = system.record(inputs)
    flat = traj.reshape(-1, traj.shape[-1])
    finite = torch.isfinite(flat).all(dim=1)
    if not finite.all():
        raise ValueError(f"Running {system.name} on inputs produced non-finite states.")
    idx = rng.randint(len(flat), size=n_initial)
    h0 = flat[torch.from_numpy(idx)].clone()
    if noise:
        scale = float(flat.std(dim=0).pow(2).mean().sqrt())
        if not scale > 1e-6:  # trajectories that never move: noise in absolute units
            scale = 1.0
        h0 += noise * scale * torch.from_numpy(rng.standard_normal(h0.shape))
    keep = traj[: min(32, len(traj))].to(torch.float32).numpy()
    return h0, keep


# ----------------------------------------------------------------------------- numerics


def jacobian(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
             h: torch.Tensor) -> torch.Tensor:
    """Compute the Jacobians ``dF/dh`` of a row-wise update by reverse-mode autograd.

    The batch is replicated ``S`` times so that one backward pass gives every row of every
    Jacobian (rows of the update never interact).

    Parameters
    ----------
    step : callable
        The update ``F(x, h) -> h'`` on batches of rows, ``(batch, n_inputs)`` and
        ``(batch, S)`` to ``(batch, S)``.
    x : torch.Tensor of shape (batch, n_inputs)
        Inputs of each row.
    h : torch.Tensor of shape (batch, S)
        States at which to differentiate.

    Returns
    -------
    torch.Tensor of shape (batch, S, S)
        ``J[b, i, j] = dF_i/dh_j`` at row ``b``, in ``h``'s dtype.

    Examples
    --------
    >>> import torch
    >>> from skdynamo.dynamics import jacobian
    >>> W = torch.tensor([[0.5, 0.0], [1.0, 2.0]])
    >>> jacobian(lambda x, h: h @ W.T, torch.zeros(1, 1), torch.ones(1, 2))[0]
    tensor([[0.5000, 0.0000],
            [1.0000, 2.0000]])
    """
    batch, size = h.shape
    out = torch.empty(batch, size, size, dtype=h.dtype)
    chunk = max(1, _JACOBIAN_ROWS // size)
    for lo in range(0, batch, chunk):
        hb, xb = h[lo:lo + chunk].detach(), x[lo:lo + chunk].detach()
        b = hb.shape[0]
        with torch.enable_grad():
            hr = hb[None].expand(size, b, size).reshape(size * b, size).clone()
            hr.requires_grad_(True)
            xr = xb[None].expand(size, b, xb.shape[1]).reshape(size * b, -1)
            f = step(xr, hr).reshape(size, b, size)
            picked = f.diagonal(dim1=0, dim2=2)  # picked[b, k] = F_k(h_b) of copy k
            (grad,) = torch.autograd.grad(picked.sum(), hr)
        out[lo:lo + b] = grad.reshape(size, b, size).transpose(0, 1)
    return out


def _residual(step, x, h):
    with torch.no_grad():
        r = step(x, h) - h
    speed = r.norm(dim=1)
    speed = torch.where(torch.isfinite(speed), speed, torch.full_like(speed, np.inf))
    return r, speed


def _relax(step, x, h, n_steps):
    """``h`` after ``n_steps`` steps of the update; rows that become non-finite keep ``h``."""
    out = h
    with torch.no_grad():
        for _ in range(n_steps):
            out = step(x, out)
    finite = torch.isfinite(out).all(dim=1, keepdim=True)
    return torch.where(finite, out, h)


def _refine(step, x, h, tol, max_iter):
    """Levenberg-Marquardt on ``F(h) - h`` for every row independently.

    Converges quadratically to true fixed points and settles at local minima of ``q``
    (slow points) otherwise. Returns the states and their speeds ``||F(h) - h||``.
    """
    h = h.clone()
    n, size = h.shape
    eye = torch.eye(size, dtype=h.dtype)
    r, speed = _residual(step, x, h)
    lam = torch.full((n,), 1e-3, dtype=h.dtype)
    stalls = torch.zeros(n, dtype=torch.long)
    active = (speed > tol) & torch.isfinite(speed)
    for _ in range(max_iter):
        idx = torch.nonzero(active).flatten()
        if len(idx) == 0:
            break
        # Jacobians of many rows are held a chunk at a time (memory ~ rows * size^2).
        chunk = max(1, int(_SOLVE_ENTRIES // (size * size)))
        delta = torch.empty(len(idx), size, dtype=h.dtype)
        for lo in range(0, len(idx), chunk):
            sub = idx[lo:lo + chunk]
            a = jacobian(step, x[sub], h[sub]) - eye
            at = a.transpose(1, 2)
            lhs = at @ a + lam[sub, None, None] * eye
            rhs = -(at @ r[sub, :, None])
            try:
                delta[lo:lo + chunk] = torch.linalg.solve(lhs, rhs)[..., 0]
            except RuntimeError:  # singular despite damping: take a gradient step
                delta[lo:lo + chunk] = rhs[..., 0] / (lam[sub, None] + 1.0)
        h_new = h[idx] + delta
        r_new, s_new = _residual(step, x[idx], h_new)
        better = s_new < speed[idx]
        # a row stalls when steps keep failing or no longer improve (local minimum of q)
        small = better & (s_new > speed[idx] * (1.0 - 1e-10))
        acc = idx[better]
        h[acc], r[acc], speed[acc] = h_new[better], r_new[better], s_new[better]
        lam[idx] = torch.where(better, (lam[idx] / 5.0).clamp(min=1e-12), lam[idx] * 5.0)
        stalls[idx] = torch.where(small | ~better, stalls[idx] + 1, torch.zeros_like(idx))
        active[idx] = (speed[idx] > tol) & (lam[idx] < 1e10) & (stalls[idx] < 12)
    return h, speed


def _dedup(points, speeds, radius):
    """Greedy de-duplication: keep the slowest point of every cluster of radius ``radius``."""
    keep = []
    for i in np.argsort(speeds, kind="stable"):
        if all(np.linalg.norm(points[i] - points[j]) > radius for j in keep):
            keep.append(i)
    return np.array(keep, dtype=int)


def _check_params(n_initial, tol, max_iter, slow_tol, dedup_tol):
    if not isinstance(n_initial, (int, np.integer)) or n_initial < 1:
        raise ValueError(f"n_initial must be a positive integer, got {n_initial!r}.")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}.")
    for name, v in (("tol", tol), ("slow_tol", slow_tol), ("dedup_tol", dedup_tol)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}.")


_MAX_MIDPOINT_SOURCES = 32


def _search_midpoints(step, xs, per_group, tol, max_iter, dedup_tol, rng):
    """Second pass from the midpoint of every pair of fixed points found in the first.

    Saddles separating two attractors lie between them, where states sampled from
    trajectories (which sit near attractors) rarely start.
    """
    starts, xrows, owner = [], [], []
    for g, (hg, sg, fg) in enumerate(per_group):
        ok = fg & (sg <= tol)
        pts = hg[ok][_dedup(hg[ok], sg[ok], dedup_tol)]
        if len(pts) > _MAX_MIDPOINT_SOURCES:
            pts = pts[rng.choice(len(pts), _MAX_MIDPOINT_SOURCES, replace=False)]
        i, j = np.triu_indices(len(pts), k=1)
        if len(i):
            starts.append(0.5 * (pts[i] + pts[j]))
            xrows.append(xs[g][:1].expand(len(i), -1))
            owner.append(np.full(len(i), g))
    if not starts:
        return per_group
    h, speed = _refine(step, torch.cat(xrows), torch.from_numpy(np.concatenate(starts)), tol,
                       max_iter)
    finite = (torch.isfinite(speed) & torch.isfinite(h).all(dim=1)).numpy()
    h, speed, owner = h.numpy(), speed.numpy(), np.concatenate(owner)
    out = []
    for g, (hg, sg, fg) in enumerate(per_group):
        sel = (owner == g) & finite  # non-finite second-pass rows are simply not kept
        out.append((np.concatenate([hg, h[sel]]), np.concatenate([sg, speed[sel]]),
                    np.concatenate([fg, np.ones(sel.sum(), dtype=bool)])))
    return out


def _find_group(systems, inputs, constant_input, initial_states, n_initial, noise, tol,
                max_iter, dedup_tol, slow_tol, eig_tol, rng, midpoints=True):
    """Find fixed points of several systems sharing one update (same weights) at once.

    ``systems`` differ only in their fixed extra input (meta-model embedding), so their
    rows run through one batched update. Returns one :class:`FixedPoints` per system.
    """
    step = systems[0].step
    xs, hs, trajs, sizes = [], [], [], []
    for sys in systems:
        xstar = sys.full_input(constant_input[None])
        h0, traj = _sample_states(sys, inputs, initial_states, n_initial, noise, rng)
        xs.append(xstar.expand(len(h0), -1))
        hs.append(h0)
        trajs.append(traj)
        sizes.append(len(h0))
    x, h0 = torch.cat(xs), torch.cat(hs)
    if initial_states is None:  # sampled starts: every other one relaxed by the update
        h0[1::2] = _relax(step, x[1::2], h0[1::2], RELAX_STEPS)
    h, speed = _refine(step, x, h0, tol, max_iter)
    finite = torch.isfinite(speed) & torch.isfinite(h).all(dim=1)
    bounds = np.cumsum([0] + sizes)
    per_group = [(h[lo:hi].numpy(), speed[lo:hi].numpy(), finite[lo:hi].numpy())
                 for lo, hi in zip(bounds[:-1], bounds[1:])]
    for g, (_hg, _sg, fg) in enumerate(per_group):
        if not fg.all():
            warnings.warn(f"{int((~fg).sum())} of {len(fg)} initial states of {systems[g].name} "
                          "led to non-finite updates and were dropped.", RuntimeWarning,
                          stacklevel=3)
    if midpoints:
        per_group = _search_midpoints(step, xs, per_group, tol, max_iter, dedup_tol, rng)
    results = []
    for g, sys in enumerate(systems):
        hg, sg, fg = per_group[g]
        fixed = fg & (sg <= tol)
        slow = fg & ~fixed & (sg <= slow_tol)
        pts, spd = hg[fixed], sg[fixed]
        keep = _dedup(pts, spd, dedup_tol)
        pts, spd = pts[keep], spd[keep]
        if len(pts):
            jac = jacobian(step, xs[g][:1].expand(len(pts), -1), torch.from_numpy(pts)).numpy()
        else:
            jac = np.zeros((0, sys.state_size, sys.state_size))
        s_pts, s_spd = hg[slow], sg[slow]
        s_keep = _dedup(s_pts, s_spd, max(_SLOW_DEDUP, dedup_tol))
        result = FixedPoints(pts, spd, jac, s_pts[s_keep], s_spd[s_keep],
                             constant_input.numpy(), tol, slow_tol, eig_tol, sizes[g],
                             trajectories=trajs[g], system_name=sys.name)
        if not result.converged:
            best = float(np.min(sg[fg])) if fg.any() else np.inf
            warnings.warn(f"No fixed point of {sys.name} met tol={tol:g} after max_iter="
                          f"{max_iter} Newton steps from {sizes[g]} initial states (slowest "
                          f"speed reached {best:.2e}); returning {result.n_slow} slow points, "
                          "which are not fixed points. Try more initial states or max_iter.",
                          ConvergenceWarning, stacklevel=3)
        results.append(result)
    return results


def find_fixed_points(system: nn.Module, inputs: np.ndarray | torch.Tensor | None = None, *,
                      constant_input: np.ndarray | None = None,
                      initial_states: np.ndarray | None = None, n_initial: int = 256,
                      noise: float = 0.1, tol: float = 1e-8, max_iter: int = 200,
                      dedup_tol: float = 1e-4, slow_tol: float = 1e-2, eig_tol: float = 1e-5,
                      midpoints: bool = True, random_state: RandomState = None) -> FixedPoints:
    """Find the fixed points of a recurrent system at a constant input, and their stability.

    Parameters
    ----------
    system : torch.nn.Module
        An ``nn.RNN``/``nn.GRU``/``nn.LSTM`` layer (one layer, unidirectional) or
        ``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell``, a module holding exactly one such
        layer (its update is written out from the layer's weights;
        LSTMs on the joint state ``[h, c]``), the meta-model at an embedding
        (``embedder.model_at(z)``), or any module with a ``recurrent_step(x_t, h)`` method
        (and a ``hidden_size`` attribute or ``initial_state(batch)`` method).
    inputs : array-like of shape (n_sequences, n_timesteps, n_features), default=None
        Sequences the system is run on; the initial states of the search are drawn from the
        states it visits. For a module holding a layer these are the module's inputs.
        ``None`` draws initial states uniformly in ``[-1, 1]`` (adequate for tanh and GRU
        states only: pass inputs whenever you can).
    constant_input : array-like of shape (n_inputs,), default=None
        The input ``x*`` held at every step (the input of the recurrent layer); zeros by
        default.
    initial_states : array-like of shape (n, state_size), default=None
        Start the search from these states instead of sampling (as given: they are not
        run through the update first).
    n_initial : int, default=256
        Number of initial states sampled from the trajectories. Every other one is
        first run :data:`RELAX_STEPS` (500) steps of the update at ``x*``, so that
        attractors behind slow regions are reached (see the module notes); the others
        are searched from where they were sampled.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to sampled states, relative to the
        trajectories' root-mean-square spread (absolute when the trajectories do not move).
    tol : float, default=1e-8
        A state is a fixed point when ``||F(h, x*) - h|| <= tol`` (float64).
    max_iter : int, default=200
        Damped Newton (Levenberg-Marquardt) iterations.
    dedup_tol : float, default=1e-4
        Fixed points closer than this (Euclidean) are one point.
    slow_tol : float, default=1e-2
        Local minima of ``q`` with ``tol < ||F(h) - h|| <= slow_tol`` are reported as slow
        points (de-duplicated at radius ``max(1e-2, dedup_tol)``); faster ones are dropped.
    eig_tol : float, default=1e-5
        Eigenvalues with ``| |lambda| - 1 | <= eig_tol`` make a point marginal.
    midpoints : bool, default=True
        Run a second search from the midpoint of every pair of fixed points found (of at
        most 32 of them): the saddles separating attractors lie between them, where states
        sampled from trajectories rarely start.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampling of initial states.

    Returns
    -------
    FixedPoints
        The fixed points found, their stability, and the slow points.

    Warns
    -----
    ConvergenceWarning
        When no initial state reaches the tolerance: the result then holds only slow
        points and ``converged`` is False.

    Examples
    --------
    >>> import torch
    >>> from skdynamo.dynamics import find_fixed_points
    >>> layer = torch.nn.RNN(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = layer.weight_hh_l0.fill_(2.0)   # h -> tanh(2h): fixed points 0, +-0.957
    >>> fp = find_fixed_points(layer, n_initial=64, random_state=0)
    >>> fp.n_stable, fp.n_unstable
    (2, 1)
    """
    _check_params(n_initial, tol, max_iter, slow_tol, dedup_tol)
    sys = as_system(system)
    rng = check_random_state(random_state)
    x_in = _as_inputs(inputs, sys)
    xstar = _as_constant_input(constant_input, sys)
    return _find_group([sys], x_in, xstar, initial_states, n_initial, noise, tol, max_iter,
                       dedup_tol, slow_tol, eig_tol, rng, midpoints)[0]


def simulate_settled_states(system: nn.Module, inputs: np.ndarray | torch.Tensor | None = None,
                            *, constant_input: np.ndarray | None = None,
                            initial_states: np.ndarray | None = None, n_initial: int = 256,
                            noise: float = 0.1, n_steps: int = 3000, tol: float = 1e-6,
                            dedup_tol: float = 1e-3, random_state: RandomState = None) -> Bunch:
    """Run the system autonomously from many initial states and collect where it settles.

    This is the independent check of :func:`find_fixed_points`: the distinct states that
    long runs at a constant input settle into are the system's attractors, so their
    number should equal ``FixedPoints.n_stable`` (for point attractors).

    Parameters
    ----------
    {system}
    {inputs}
    {constant_input}
    initial_states : array-like of shape (n, state_size), default=None
        Start the runs from these states instead of sampling.
    n_initial : int, default=256
        Number of initial states sampled from the trajectories.
    {noise}
    n_steps : int, default=3000
        Steps of the update ``h <- F(h, x*)``.
    tol : float, default=1e-6
        A run has settled when its final step moves less than this: ``||F(h) - h|| <= tol``.
        Runs still drifting (slow points, limit cycles, divergence) are counted apart.
    dedup_tol : float, default=1e-3
        Settled states closer than this are one attractor.
    {random_state}

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``states`` (n_attractors, state_size), ``counts`` (runs settling in each),
        ``n_attractors``, ``n_settled``, ``n_unsettled`` (runs not settled after
        ``n_steps``), ``final_speeds`` (every run's last ``||F(h) - h||``).
    """
    sys = as_system(system)
    rng = check_random_state(random_state)
    x_in = _as_inputs(inputs, sys)
    xstar = _as_constant_input(constant_input, sys)
    h0, _ = _sample_states(sys, x_in, initial_states, n_initial, noise, rng)
    return _simulate_group([sys], [h0], xstar, n_steps, tol, dedup_tol)[0]


def _simulate_group(systems, h0s, constant_input, n_steps, tol, dedup_tol):
    step = systems[0].step
    x = torch.cat([s.full_input(constant_input[None]).expand(len(h0), -1)
                   for s, h0 in zip(systems, h0s)])
    h = torch.cat(h0s)
    with torch.no_grad():
        for _ in range(n_steps):
            h = step(x, h)
    _, speed = _residual(step, x, h)
    out = []
    lo = 0
    for h0 in h0s:
        hg, sg = h[lo:lo + len(h0)].numpy(), speed[lo:lo + len(h0)].numpy()
        lo += len(h0)
        settled = np.isfinite(sg) & (sg <= tol)
        pts, spd = hg[settled], sg[settled]
        keep = _dedup(pts, spd, dedup_tol)
        counts = np.zeros(len(keep), dtype=int)
        if len(keep):
            d = np.linalg.norm(pts[:, None, :] - pts[keep][None], axis=2)
            np.add.at(counts, d.argmin(axis=1), 1)
        out.append(Bunch(states=pts[keep], counts=counts, n_attractors=len(keep),
                         n_settled=int(settled.sum()), n_unsettled=int((~settled).sum()),
                         final_speeds=sg))
    return out


# Initial states are sampled as in find_fixed_points: one text for the shared parameters.
share_parameters(simulate_settled_states, find_fixed_points)
