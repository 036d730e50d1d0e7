"""A seeded, cached population whose outputs agree but whose hidden computation differs.

Every member is a :class:`~skdynamo.datasets.RecurrentNetwork` that outputs the 3-bit
flip-flop. Half of them (``group == "hidden_head"``) were trained jointly with a second
linear readout that computed another task on the same inputs (by default the running
integral of the pulses); that head is removed afterwards. Output-space methods cannot tell
the two groups apart, since they output the same thing; what differs is what the hidden
states carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from functools import partial

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state
from torch import nn

from ..nn import CELLS
from ._builder import (build_population, check_grid, check_names, grid, held_out_seed, member_seed,
                       train_loop, train_with_retries, with_cache_parameters)
from ._tasks import PULSE_TASKS, make_flipflop, make_task
from ._zoo import RecurrentNetwork, _r2, recurrent_member

__all__ = ["make_hidden_head_population"]

GROUPS = ("plain", "hidden_head")


def _hidden_states(model, x):
    with torch.no_grad():
        return model.rnn(torch.from_numpy(x))[0].numpy()


def _linear_decoding_r2(model, hidden_task, task_params, n_timesteps, n_channels, seed):
    """Held-out R^2 of a ridge read-out of the hidden task's targets from the hidden states.

    High for members trained with the hidden head, lower for plain members: it shows that
    the removed computation is still present in the hidden states.
    """
    x, y = make_task(hidden_task, 384, n_timesteps, n_channels, random_state=seed,
                     **task_params)
    h = _hidden_states(model, x).reshape(-1, model.rnn.hidden_size).astype(np.float64)
    h = np.hstack([h, np.ones((len(h), 1))])
    y = y.reshape(-1, n_channels).astype(np.float64)
    n_fit = 256 * n_timesteps
    gram = h[:n_fit].T @ h[:n_fit] + 1e-3 * np.eye(h.shape[1])
    coef = np.linalg.solve(gram, h[:n_fit].T @ y[:n_fit])
    return _r2(h[n_fit:] @ coef, y[n_fit:])


def _train_joint(spec, common):
    """Train one member (flip-flop readout, plus the hidden head if asked); drop the head."""
    hidden_task, task_params = common["hidden_task"], common["task_params"]
    n_timesteps, n_channels = common["n_timesteps"], common["n_channels"]
    batch_size, with_head = common["batch_size"], spec["group"] == "hidden_head"

    def build():
        model = RecurrentNetwork(n_channels, n_channels, spec["hidden_size"], spec["cell"])
        head = nn.Linear(spec["hidden_size"], n_channels)
        return (model, head) if with_head else (model,)

    def batch_loss(network, rng):
        batch_seed = int(rng.randint(np.iinfo(np.int32).max))
        x, y = make_flipflop(batch_size, n_timesteps, n_channels, random_state=batch_seed)
        h = network[0].rnn(torch.from_numpy(x))[0]
        loss = nn.functional.mse_loss(network[0].readout(h), torch.from_numpy(y))
        if with_head:
            # Same inputs (same seed), the hidden task's targets.
            _, z = make_task(hidden_task, batch_size, n_timesteps, n_channels,
                             random_state=batch_seed, **task_params)
            loss = loss + common["head_weight"] * nn.functional.mse_loss(
                network[1](h), torch.from_numpy(z))
        return loss

    def attempt(i):
        # The seed does not depend on the group: a plain member and its hidden-head partner
        # start from the same weights and see the same batches; only the extra head differs.
        seed = member_seed(spec["seed"], i, 23)
        (model, *head), _ = train_loop(build, batch_loss, check_random_state(seed),
                                       n_steps=common["n_steps"], lr=common["lr"])
        test_seed = held_out_seed(seed)
        x, y = make_flipflop(512, n_timesteps, n_channels, random_state=test_seed)
        _, z = make_task(hidden_task, 512, n_timesteps, n_channels, random_state=test_seed,
                         **task_params)
        with torch.no_grad():
            h = model.rnn(torch.from_numpy(x))[0]
            score = _r2(model.readout(h).numpy(), y)
            head_score = _r2(head[0](h).numpy(), z) if with_head else float("nan")
        ok = score >= common["min_score"] and (not with_head or head_score >= common["min_score"])
        # Only the flip-flop network is kept: the hidden head is removed here.
        record = {"state_dict": model.state_dict(), "score": float(score),
                  "head_score": float(head_score)}
        return model, record, ok

    model, record = train_with_retries(attempt, common["max_retries"])
    test_seed = held_out_seed(member_seed(spec["seed"], record["attempts"], 23))
    decoding = _linear_decoding_r2(model, hidden_task, task_params, n_timesteps, n_channels,
                                   test_seed + 1)
    return {**record, "decoding_score": float(decoding)}


@with_cache_parameters
def make_hidden_head_population(cells: Sequence[str] = ("rnn", "gru", "lstm"), n_seeds: int = 3, *,
                                hidden_task: str = "integration", task_params: dict | None = None,
                                head_weight: float = 1.0, hidden_size: int = 32,
                                seed_offset: int = 0, n_steps: int = 1500, n_timesteps: int = 50,
                                n_channels: int = 3, lr: float = 1e-2, batch_size: int = 64,
                                n_probes: int = 256, min_score: float = 0.85, max_retries: int = 2,
                                data_home: str | PathLike | None = None,
                                download_if_missing: bool = True, n_jobs: int | None = None,
                                verbose: bool = False,
                                random_state: int | np.random.RandomState | None = 0) -> Bunch:
    """Train (or load from the cache) flip-flops, half of them with a removed hidden head.

    Every member outputs the ``n_channels``-bit flip-flop on the shared pulse interface, so
    all members agree on their outputs. Members of the ``"hidden_head"`` group were trained
    jointly with a second linear readout of the same hidden state doing ``hidden_task`` on
    the same inputs (by default integration of the pulses); that head is removed after
    training, so it survives only in what the hidden states carry. A plain member and the
    hidden-head member of the same cell and seed start from the same weights and see the
    same training batches. This is the population where the output-space baseline fails
    by construction and DYNAMO, which also emulates hidden trajectories, can succeed.

    A member whose held-out flip-flop R^2 (or, with a head, the head's R^2) stays below
    ``min_score`` is retrained from a new seed up to ``max_retries`` times; if it still fails
    it is kept but reported by a warning and by ``learned=False``, never silently.

    Parameters
    ----------
    cells : sequence of {'rnn', 'gru', 'lstm'}, default=('rnn', 'gru', 'lstm')
        Recurrent cells.
    n_seeds : int, default=3
        Seeds per (group, cell).
    hidden_task : str, default='integration'
        Pulse task of the removed head (see :func:`skdynamo.datasets.make_task`); it must
        differ from ``'flipflop'``.
    task_params : dict, default=None
        Extra generator parameters of ``hidden_task`` (e.g. ``{"leak": 0.1}``).
    head_weight : float, default=1.0
        Weight of the head's loss next to the flip-flop loss during joint training.
    hidden_size : int, default=32
        Hidden width of every member.
    seed_offset : int, default=0
        First seed (``seed_offset=100`` draws held-out members).
    n_steps : int, default=1500
        Adam steps per training attempt (batches of ``batch_size`` fresh sequences).
    n_timesteps : int, default=50
        Sequence length for training and probes.
    n_channels : int, default=3
        Width of the shared interface (the flip-flop has ``n_channels`` bits).
    lr : float, default=1e-2
        Adam learning rate (cosine schedule).
    batch_size : int, default=64
        Sequences per Adam step.
    n_probes : int, default=256
        Number of probe sequences returned (task inputs: noisy sparse pulses, which both
        tasks read).
    min_score : float, default=0.85
        Held-out R^2 a member (and its head, before removal) must reach to count as learned.
    max_retries : int, default=2
        Retraining attempts for a member below ``min_score``.
    {cache_parameters}
    random_state : int, default=0
        Seed of the probe inputs.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (list of :class:`~skdynamo.datasets.RecurrentNetwork`, each with the
        flip-flop readout only), ``group`` (``"plain"`` or ``"hidden_head"``),
        ``hidden_head`` (bool array, the label to recover), ``cell``, ``hidden_size``,
        ``seed``, ``score`` (held-out flip-flop R^2), ``head_score`` (held-out R^2 of the
        removed head before removal; NaN for plain members), ``decoding_score`` (held-out
        R^2 of a ridge read-out of the hidden task from the hidden states, for every
        member), ``learned`` (bool array), ``probe_inputs`` (ndarray of shape
        ``(n_probes, n_timesteps, n_channels)``) and ``DESCR``.
    """
    cells = list(cells)
    check_grid(n_seeds, cells=cells)
    check_names(cells=(cells, CELLS))
    if hidden_task not in PULSE_TASKS or hidden_task == "flipflop":
        raise ValueError(f"hidden_task must be a pulse task other than 'flipflop' (one of "
                         f"{sorted(set(PULSE_TASKS) - {'flipflop'})}), got {hidden_task!r}.")
    if not head_weight > 0:
        raise ValueError(f"head_weight must be positive, got {head_weight!r}.")
    task_params = dict(task_params or {})
    specs = grid(n_seeds, seed_offset, group=GROUPS, cell=cells, hidden_size=[int(hidden_size)])
    common = dict(hidden_task=hidden_task, task_params=task_params,
                  head_weight=float(head_weight), n_steps=n_steps, n_timesteps=n_timesteps,
                  n_channels=n_channels, lr=lr, batch_size=batch_size, min_score=min_score,
                  max_retries=max_retries)
    pop = build_population(
        "hidden_head_population", specs, common, partial(_train_joint, common=common),
        recurrent_member(n_channels, n_channels),
        columns=("group", "hidden_head", "cell", "hidden_size", "seed", "score", "head_score",
                 "decoding_score", "learned"),
        derived=dict(hidden_head=lambda s, r: s["group"] == "hidden_head"),
        learned=lambda s, r: r["score"] >= min_score and (
            s["group"] != "hidden_head" or r["head_score"] >= min_score),
        label=lambda s, r: (f"{s['group']}/{s['cell']}/seed {s['seed']}: "
                            f"R2={r['score']:.3f}, head R2={r['head_score']:.3f}"),
        failure=f"reach min_score={min_score}", max_retries=max_retries, data_home=data_home,
        download_if_missing=download_if_missing, n_jobs=n_jobs, verbose=verbose,
        desc="Training flip-flops (with and without hidden heads)")
    probes, _ = make_flipflop(n_probes, n_timesteps, n_channels,
                              random_state=check_random_state(random_state))
    pop.update(probe_inputs=probes.astype(np.float32), DESCR=(
        f"{len(specs)} {n_channels}-bit flip-flop networks: cells={cells}, "
        f"hidden_size={hidden_size}, seeds={seed_offset}..{seed_offset + n_seeds - 1}; "
        f"half trained jointly with a {hidden_task!r} head (weight {head_weight}) that "
        f"was then removed. Every member outputs only the flip-flop; group / "
        f"hidden_head tell which computed {hidden_task!r} internally."))
    return pop
