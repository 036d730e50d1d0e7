"""Seeded, cached populations of small recurrent networks trained on the CPU."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from functools import partial

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state
from torch import nn

from ..nn import CELLS
from ._builder import (at_least, build_population, check_grid, check_names, grid, held_out_seed,
                       member_seed, train_loop, train_with_retries, with_cache_parameters)
from ._cache import get_data_home
from ._tasks import PULSE_TASKS, make_task

__all__ = ["RecurrentNetwork", "get_data_home", "train_recurrent_network", "make_rnn_population",
           "permute_hidden_units"]


class RecurrentNetwork(nn.Module):
    """A one-layer recurrent network with a linear readout at every time step.

    Parameters
    ----------
    n_inputs, n_outputs : int
        Input and output widths.
    hidden_size : int, default=32
        Number of recurrent units.
    cell : {'rnn', 'gru', 'lstm'}, default='gru'
        Recurrent cell (``'rnn'`` is a tanh RNN).
    """

    def __init__(self, n_inputs: int, n_outputs: int, hidden_size: int = 32,
                 cell: str = "gru") -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}.")
        self.cell = cell
        self.rnn = CELLS[cell](n_inputs, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map input sequences to output sequences.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, time, n_inputs)
            Input sequences.

        Returns
        -------
        torch.Tensor of shape (batch, time, n_outputs)
            The readout at every step.
        """
        return self.readout(self.rnn(x)[0])


def _r2(pred, target):
    target = np.asarray(target, dtype=np.float64)
    ss_res = np.sum((np.asarray(pred, dtype=np.float64) - target) ** 2)
    ss_tot = np.sum((target - target.reshape(-1, target.shape[-1]).mean(0)) ** 2)
    return float(1.0 - ss_res / max(ss_tot, 1e-12))


def train_recurrent_network(task: str, cell: str = "gru", hidden_size: int = 32, *,
                            n_steps: int = 1000, batch_size: int = 64, n_timesteps: int = 50,
                            n_channels: int = 3, lr: float = 1e-2,
                            task_params: dict | None = None,
                            random_state: int | np.random.RandomState | None = 0
                            ) -> tuple[RecurrentNetwork, float]:
    """Train one :class:`RecurrentNetwork` on a pulse task with fresh data every step.

    Parameters
    ----------
    task : {'flipflop', 'integration', 'delay', 'leaky_integration'}
        The pulse task (:func:`make_task`).
    cell : {'rnn', 'gru', 'lstm'}, default='gru'
        Recurrent cell.
    hidden_size : int, default=32
        Number of recurrent units.
    n_steps : int, default=1000
        Adam steps, each on a fresh batch.
    batch_size : int, default=64
        Sequences per step.
    n_timesteps : int, default=50
        Sequence length.
    n_channels : int, default=3
        Input and output channels.
    lr : float, default=1e-2
        Peak learning rate (cosine schedule).
    task_params : dict, default=None
        Passed to the task's generator (for example ``{"n_bits": 2}``).
    random_state : int, RandomState instance or None, default=0
        Seed of the initialisation and the batches.

    Returns
    -------
    model : RecurrentNetwork
        The trained network, in eval mode.
    score : float
        R^2 of its outputs on 512 held-out sequences.
    """
    return train_on_pulse_task(
        lambda: RecurrentNetwork(n_channels, n_channels, hidden_size, cell), task,
        n_steps=n_steps, batch_size=batch_size, n_timesteps=n_timesteps, n_channels=n_channels,
        lr=lr, task_params=task_params, random_state=random_state)


def train_on_pulse_task(build, task, *, n_steps, batch_size, n_timesteps, n_channels, lr,
                        task_params, random_state):
    """Train ``build()`` (a sequence-to-sequence module) on a pulse task by MSE with fresh
    data every step (:func:`train_loop`); returns the model and its held-out R^2 on 512
    sequences."""
    task_params = dict(task_params or {})

    def batch_loss(model, rng):
        x, y = make_task(task, batch_size, n_timesteps, n_channels, random_state=rng,
                         **task_params)
        return nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y))

    model, seed = train_loop(build, batch_loss, check_random_state(random_state),
                             n_steps=n_steps, lr=lr)
    x, y = make_task(task, 512, n_timesteps, n_channels, random_state=held_out_seed(seed),
                     **task_params)
    with torch.no_grad():
        score = _r2(model(torch.from_numpy(x)).numpy(), y)
    return model, score


def recurrent_member(n_inputs, n_outputs):
    """``member(spec)`` of :func:`build_population` for :class:`RecurrentNetwork` specs."""
    return lambda spec: RecurrentNetwork(n_inputs, n_outputs, spec["hidden_size"], spec["cell"])


def _train_member(spec, n_steps, n_timesteps, n_channels, min_score, max_retries):
    def attempt(i):
        model, score = train_recurrent_network(
            spec["task"], spec["cell"], spec["hidden_size"], n_steps=n_steps,
            n_timesteps=n_timesteps, n_channels=n_channels, task_params=spec["task_params"],
            random_state=member_seed(spec["seed"], i, 17))
        return model, {"state_dict": model.state_dict(), "score": float(score)}, \
            score >= min_score
    return train_with_retries(attempt, max_retries)[1]


@with_cache_parameters
def make_rnn_population(tasks: Sequence[str] = ("flipflop", "integration", "delay"),
                        cells: Sequence[str] = ("rnn", "gru", "lstm"),
                        hidden_sizes: Sequence[int] = (32,), n_seeds: int = 3, *,
                        seed_offset: int = 0, task_params: dict | None = None, n_steps: int = 1000,
                        n_timesteps: int = 50, n_channels: int = 3, n_probes: int = 256,
                        min_score: float = 0.9, max_retries: int = 2,
                        data_home: str | PathLike | None = None, download_if_missing: bool = True,
                        n_jobs: int | None = None, verbose: bool = False,
                        random_state: int | np.random.RandomState | None = 0) -> Bunch:
    """Train (or load from the cache) a seeded population of recurrent networks.

    Every member reads the same pulse interface (``n_channels`` noisy +-1 pulse channels)
    and writes ``n_channels`` outputs, so one set of probe inputs drives them all. The
    population is the full grid ``tasks x cells x hidden_sizes x seeds``.

    A member whose held-out R^2 stays below ``min_score`` is retrained from a new seed up to
    ``max_retries`` times; if it still fails it is kept but reported by a warning and by
    ``learned=False`` in the result, never silently.

    Parameters
    ----------
    tasks : sequence of str, default=('flipflop', 'integration', 'delay')
        Names of pulse tasks (see :func:`make_task`).
    cells : sequence of {'rnn', 'gru', 'lstm'}, default=('rnn', 'gru', 'lstm')
        Cell types.
    hidden_sizes : sequence of int, default=(32,)
        Hidden widths.
    n_seeds : int, default=3
        Seeds per (task, cell, width).
    seed_offset : int, default=0
        First seed; use it to draw held-out members (``seed_offset=100``).
    task_params : dict of {str: dict}, default=None
        Extra generator parameters per task, e.g. ``{"delay": {"delay": 6}}``.
    n_steps : int, default=1000
        Adam steps per member (batch of 64 fresh sequences each).
    n_timesteps : int, default=50
        Sequence length for training and probes.
    n_channels : int, default=3
        Width of the shared interface.
    n_probes : int, default=256
        Number of probe sequences returned (a mix of every task's inputs).
    min_score : float, default=0.9
        Held-out R^2 a member must reach to count as learned.
    max_retries : int, default=2
        Retraining attempts for a member below ``min_score``.
    {cache_parameters}
    random_state : int, default=0
        Seed of the probe inputs.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (list of :class:`RecurrentNetwork`), ``task``, ``cell``, ``hidden_size``,
        ``seed`` (arrays, one entry per model), ``score`` (held-out R^2 of each model on
        its task), ``learned`` (bool array), ``probe_inputs`` (ndarray of shape
        ``(n_probes, n_timesteps, n_channels)``) and ``DESCR``.
    """
    tasks, cells, hidden_sizes = list(tasks), list(cells), list(hidden_sizes)
    check_grid(n_seeds, tasks=tasks, cells=cells, hidden_sizes=hidden_sizes)
    check_names(tasks=(tasks, PULSE_TASKS), cells=(cells, CELLS))
    task_params = dict(task_params or {})
    specs = [{**s, "task_params": task_params.get(s["task"], {})}
             for s in grid(n_seeds, seed_offset, task=tasks, cell=cells,
                           hidden_size=[int(h) for h in hidden_sizes])]
    common = dict(n_steps=n_steps, n_timesteps=n_timesteps, n_channels=n_channels,
                  min_score=min_score, max_retries=max_retries)
    pop = build_population(
        "rnn_population", specs, common, partial(_train_member, **common),
        recurrent_member(n_channels, n_channels),
        columns=("task", "cell", "hidden_size", "seed", "score", "learned"),
        **at_least("score", min_score=min_score),
        label=lambda s, r: f"{s['task']}/{s['cell']}/seed {s['seed']}: R2={r['score']:.3f}",
        max_retries=max_retries, data_home=data_home, download_if_missing=download_if_missing,
        n_jobs=n_jobs, verbose=verbose)
    probes = pulse_probes(tasks, task_params, n_probes, n_timesteps, n_channels, random_state)
    pop.update(probe_inputs=probes, DESCR=(
        f"{len(specs)} recurrent networks: tasks={tasks}, cells={cells}, "
        f"hidden_sizes={hidden_sizes}, seeds={seed_offset}..{seed_offset + n_seeds - 1}, "
        f"{n_channels}-channel pulse interface, {n_timesteps} steps."))
    return pop


def pulse_probes(tasks: Sequence[str], task_params: dict, n_probes: int, n_timesteps: int,
                 n_channels: int, random_state: int | np.random.RandomState | None
                 ) -> np.ndarray:
    """Return a seeded mix of every task's inputs: the probes of the pulse-task zoos.

    Parameters
    ----------
    tasks : sequence of str
        Task names (:func:`make_task`).
    task_params : dict
        Extra keyword arguments per task name.
    n_probes, n_timesteps, n_channels : int
        Number, length and width of the probe sequences.
    random_state : int, RandomState instance or None
        Seed of the probes.

    Returns
    -------
    ndarray of shape (n_probes, n_timesteps, n_channels)
        float32 probes.
    """
    rng = check_random_state(random_state)
    per_task = [make_task(t, n_probes // len(tasks) + 1, n_timesteps, n_channels,
                          random_state=rng, **task_params.get(t, {}))[0] for t in tasks]
    probes = np.concatenate(per_task)[rng.permutation(sum(len(p) for p in per_task))[:n_probes]]
    return probes.astype(np.float32)


def permute_hidden_units(model: RecurrentNetwork, *, flip_signs: bool | None = None,
                         random_state: int | np.random.RandomState | None = None
                         ) -> RecurrentNetwork:
    """Copy a :class:`RecurrentNetwork` with its hidden units permuted: a functional twin.

    The hidden units are shuffled (for every gate of GRU/LSTM cells alike) and the readout
    is permuted to match, so the copy computes exactly the same outputs while its weights
    differ. For tanh RNNs (``cell='rnn'``) unit signs are flipped too (``h -> -h`` is a
    symmetry of tanh but not of the sigmoid gates of GRU/LSTM).

    Parameters
    ----------
    model : RecurrentNetwork
        The network to copy (not modified).
    flip_signs : bool, default=None
        Flip signs; ``None`` means "only for tanh RNNs". True for GRU/LSTM raises.
    random_state : int, RandomState instance or None, default=None
        Seed of the permutation and the signs.

    Returns
    -------
    RecurrentNetwork
        The twin, in eval mode: same outputs on every input, other weights.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`RecurrentNetwork`.
    ValueError
        If ``flip_signs=True`` for a GRU or LSTM.

    Examples
    --------
    >>> import torch
    >>> from skdynamo.datasets import RecurrentNetwork, permute_hidden_units
    >>> net = RecurrentNetwork(3, 3, hidden_size=8, cell="gru")
    >>> twin = permute_hidden_units(net, random_state=0)
    >>> x = torch.randn(2, 10, 3)
    >>> torch.allclose(net(x), twin(x), atol=1e-6)
    True
    """
    if not isinstance(model, RecurrentNetwork):
        raise TypeError(f"permute_hidden_units expects a RecurrentNetwork, got "
                        f"{type(model).__name__}.")
    if flip_signs is None:
        flip_signs = model.cell == "rnn"
    if flip_signs and model.cell != "rnn":
        raise ValueError("Sign flips are a symmetry of tanh RNNs only, not of "
                         f"{model.cell!r} cells.")
    rng = check_random_state(random_state)
    h = model.rnn.hidden_size
    perm = torch.as_tensor(rng.permutation(h))
    sign = torch.as_tensor(rng.choice([-1.0, 1.0], size=h) if flip_signs else np.ones(h),
                           dtype=torch.float32)
    n_gates = {"rnn": 1, "gru": 3, "lstm": 4}[model.cell]
    twin = RecurrentNetwork(model.rnn.input_size, model.readout.out_features, h, model.cell)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    gate_perm = torch.cat([perm + g * h for g in range(n_gates)])
    gate_sign = sign.repeat(n_gates)
    state["rnn.weight_ih_l0"] = state["rnn.weight_ih_l0"][gate_perm] * gate_sign[:, None]
    state["rnn.weight_hh_l0"] = (state["rnn.weight_hh_l0"][gate_perm][:, perm]
                                 * gate_sign[:, None] * sign[None, :])
    for name in ("rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        state[name] = state[name][gate_perm] * gate_sign
    state["readout.weight"] = state["readout.weight"][:, perm] * sign[None, :]
    twin.load_state_dict(state)
    return twin.eval()
