"""A seeded, cached population whose outputs agree but whose hidden computation differs.

Every member is a :class:`~skdynamo.datasets.RecurrentNetwork` that outputs one pulse task
(by default the 3-bit flip-flop). Some of them were trained jointly with a second linear
readout that computed another task on the same inputs (by default the running integral of
the pulses); that head is removed afterwards. Output-space methods cannot tell
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
from ._tasks import PULSE_TASKS, make_task
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


def _heads(common):
    """``{group: (task, params)}`` of the removed heads, in order.

    With one hidden task (a str) the groups are ``"plain"`` and ``"hidden_head"``; with
    several, ``"plain"`` and the tasks' names, and ``task_params`` is keyed by task name.
    """
    hidden_task, task_params = common["hidden_task"], common["task_params"]
    if isinstance(hidden_task, str):
        return {"hidden_head": (hidden_task, task_params)}
    return {name: (name, task_params.get(name, {})) for name in hidden_task}


def _train_joint(spec, common):
    """Train one member (task readout, plus its hidden head if any); drop the head."""
    task = common.get("task", "flipflop")
    heads = _heads(common)
    head_spec = heads.get(spec["group"])          # (task, params) of the removed head
    # What the ridge read-out looks for: the member's own head, or the first head.
    decoded = head_spec or next(iter(heads.values()))
    n_timesteps, n_channels = common["n_timesteps"], common["n_channels"]
    batch_size, with_head = common["batch_size"], head_spec is not None

    def build():
        model = RecurrentNetwork(n_channels, n_channels, spec["hidden_size"], spec["cell"])
        head = nn.Linear(spec["hidden_size"], n_channels)
        return (model, head) if with_head else (model,)

    def batch_loss(network, rng):
        batch_seed = int(rng.randint(np.iinfo(np.int32).max))
        x, y = make_task(task, batch_size, n_timesteps, n_channels, random_state=batch_seed)
        h = network[0].rnn(torch.from_numpy(x))[0]
        loss = nn.functional.mse_loss(network[0].readout(h), torch.from_numpy(y))
        if with_head:
            # Same inputs (same seed), the hidden task's targets.
            _, z = make_task(head_spec[0], batch_size, n_timesteps, n_channels,
                             random_state=batch_seed, **head_spec[1])
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
        x, y = make_task(task, 512, n_timesteps, n_channels, random_state=test_seed)
        _, z = make_task(decoded[0], 512, n_timesteps, n_channels, random_state=test_seed,
                         **decoded[1])
        with torch.no_grad():
            h = model.rnn(torch.from_numpy(x))[0]
            score = _r2(model.readout(h).numpy(), y)
            head_score = _r2(head[0](h).numpy(), z) if with_head else float("nan")
        ok = score >= common["min_score"] and (not with_head or head_score >= common["min_score"])
        # Only the task network is kept: the hidden head is removed here.
        record = {"state_dict": model.state_dict(), "score": float(score),
                  "head_score": float(head_score)}
        return model, record, ok

    model, record = train_with_retries(attempt, common["max_retries"])
    test_seed = held_out_seed(member_seed(spec["seed"], record["attempts"], 23))
    decoding = _linear_decoding_r2(model, decoded[0], decoded[1], n_timesteps, n_channels,
                                   test_seed + 1)
    return {**record, "decoding_score": float(decoding)}


@with_cache_parameters
def make_hidden_head_population(cells: Sequence[str] = ("rnn", "gru", "lstm"), n_seeds: int = 3, *,
                                task: str = "flipflop",
                                hidden_task: str | Sequence[str] = "integration",
                                task_params: dict | None = None,
                                head_weight: float = 1.0, hidden_size: int = 32,
                                seed_offset: int = 0, n_steps: int = 1500, n_timesteps: int = 50,
                                n_channels: int = 3, lr: float = 1e-2, batch_size: int = 64,
                                n_probes: int = 256, min_score: float = 0.85, max_retries: int = 2,
                                data_home: str | PathLike | None = None,
                                download_if_missing: bool = True, n_jobs: int | None = None,
                                verbose: bool = False,
                                random_state: int | np.random.RandomState | None = 0) -> Bunch:
    """Train (or load from the cache) networks on one task, some with a removed hidden head.

    Every member outputs ``task`` (by default the ``n_channels``-bit flip-flop) on the
    shared pulse interface, so all members agree on their outputs. Members of a head group
    were trained jointly with a second linear readout of the same hidden state doing a
    hidden task on the same inputs (by default integration of the pulses); that head is
    removed after training, so it survives only in what the hidden states carry. A plain
    member and the head members of the same cell and seed start from the same weights and
    see the same training batches.

    With several hidden tasks, for example ``task="leaky_integration",
    hidden_task=("delay", "running_max"), task_params={"delay": {"delay": 5}}`` (27
    members: a leaky integrator, a third also echoing the input 5 steps late, a third also
    tracking the running maximum of the sum), there is one group per hidden task. This is
    the population where the output-space baseline fails by construction and DYNAMO, which
    also emulates hidden trajectories, can succeed.

    A member whose held-out task R^2 (or, with a head, the head's R^2) stays below
    ``min_score`` is retrained from a new seed up to ``max_retries`` times; if it still fails
    it is kept but reported by a warning and by ``learned=False``, never silently.

    Parameters
    ----------
    cells : sequence of {'rnn', 'gru', 'lstm'}, default=('rnn', 'gru', 'lstm')
        Recurrent cells.
    n_seeds : int, default=3
        Seeds per (group, cell).
    task : str, default='flipflop'
        Pulse task every member outputs (see :func:`skdynamo.datasets.make_task`), with
        its generator's default parameters.
    hidden_task : str or sequence of str, default='integration'
        Pulse task of the removed head; each must differ from ``task``. A str gives two
        groups, ``"plain"`` and ``"hidden_head"``; a sequence gives ``"plain"`` and one
        group per task, named after it.
    task_params : dict, default=None
        Extra generator parameters of the hidden task (e.g. ``{"leak": 0.1}``); with a
        sequence of hidden tasks, a dict from task name to its parameters.
    head_weight : float, default=1.0
        Weight of the head's loss next to the task loss during joint training.
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
        ``task`` readout only), ``group`` (``"plain"`` or the head group: the label to
        recover), ``hidden_head`` (bool array, ``group != "plain"``), ``head_task`` (the
        removed head's task, ``""`` for plain members), ``cell``, ``hidden_size``,
        ``seed``, ``score`` (held-out R^2 on ``task``), ``head_score`` (held-out R^2 of the
        removed head before removal; NaN for plain members), ``decoding_score`` (held-out
        R^2 of a ridge read-out of the member's head task, or for plain members the first
        hidden task, from the hidden states), ``learned`` (bool array), ``probe_inputs``
        (ndarray of shape ``(n_probes, n_timesteps, n_channels)``) and ``DESCR``.
    """
    cells = list(cells)
    check_grid(n_seeds, cells=cells)
    check_names(cells=(cells, CELLS))
    if task not in PULSE_TASKS:
        raise ValueError(f"task must be a pulse task (one of {sorted(PULSE_TASKS)}), "
                         f"got {task!r}.")
    single = isinstance(hidden_task, str)
    hidden_tasks = [hidden_task] if single else list(hidden_task)
    others = sorted(set(PULSE_TASKS) - {task})
    if not hidden_tasks or len(set(hidden_tasks)) < len(hidden_tasks) or any(
            not isinstance(t, str) or t not in others for t in hidden_tasks):
        raise ValueError(f"hidden_task must be a pulse task other than {task!r}, or a "
                         f"sequence of distinct ones (from {others}), got {hidden_task!r}.")
    if not head_weight > 0:
        raise ValueError(f"head_weight must be positive, got {head_weight!r}.")
    task_params = dict(task_params or {})
    if not single and (set(task_params) - set(hidden_tasks) or not all(
            isinstance(v, dict) for v in task_params.values())):
        raise ValueError(f"with several hidden tasks, task_params maps some of "
                         f"{hidden_tasks} to dicts of parameters, got {task_params!r}.")
    groups = GROUPS if single else ("plain", *hidden_tasks)
    specs = grid(n_seeds, seed_offset, group=groups, cell=cells, hidden_size=[int(hidden_size)])
    common = dict(hidden_task=hidden_task if single else hidden_tasks, task_params=task_params,
                  head_weight=float(head_weight), n_steps=n_steps, n_timesteps=n_timesteps,
                  n_channels=n_channels, lr=lr, batch_size=batch_size, min_score=min_score,
                  max_retries=max_retries)
    if task != "flipflop":
        # Only a non-default task enters the settings, so that the cached members of the
        # default population keep their file names.
        common["task"] = task
    heads = _heads(common)
    pop = build_population(
        "hidden_head_population", specs, common, partial(_train_joint, common=common),
        recurrent_member(n_channels, n_channels),
        columns=("group", "hidden_head", "head_task", "cell", "hidden_size", "seed", "score",
                 "head_score", "decoding_score", "learned"),
        derived=dict(hidden_head=lambda s, r: s["group"] != "plain",
                     head_task=lambda s, r: heads[s["group"]][0] if s["group"] in heads else ""),
        learned=lambda s, r: r["score"] >= min_score and (
            s["group"] == "plain" or r["head_score"] >= min_score),
        label=lambda s, r: (f"{s['group']}/{s['cell']}/seed {s['seed']}: "
                            f"R2={r['score']:.3f}, head R2={r['head_score']:.3f}"),
        failure=f"reach min_score={min_score}", max_retries=max_retries, data_home=data_home,
        download_if_missing=download_if_missing, n_jobs=n_jobs, verbose=verbose,
        desc=f"Training {task} networks (with and without hidden heads)")
    probes, _ = make_task(task, n_probes, n_timesteps, n_channels,
                          random_state=check_random_state(random_state))
    what = (f"{n_channels}-bit flip-flop" if task == "flipflop"
            else f"{task!r} ({n_channels} channels)")
    pop.update(probe_inputs=probes.astype(np.float32), DESCR=(
        f"{len(specs)} {what} networks: cells={cells}, "
        f"hidden_size={hidden_size}, seeds={seed_offset}..{seed_offset + n_seeds - 1}; "
        f"one group trained alone and {len(hidden_tasks)} trained jointly with a head "
        f"({', '.join(map(repr, hidden_tasks))}, weight {head_weight}) that was then "
        f"removed. Every member outputs only {task!r}; group tells which computed what "
        f"internally."))
    return pop
