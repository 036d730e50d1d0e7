"""Cognitive tasks in the style of neurogym, and a seeded, cached population of agents.

Every task shares one interface, so one population can mix them and one set of probe
inputs drives every member: 3 input channels (channel 0 is a fixation cue, on until the
response period; channels 1 and 2 carry the stimuli, with Gaussian noise on every
channel) and logits over 3 actions at every time step (0 = fixate, 1 and 2 = the two
choices). The target is 0 (fixate) outside the response period and the correct choice
inside it. Members are :class:`~skdynamo.datasets.RecurrentNetwork` classifiers trained
with cross-entropy at every step; their logits are the outputs DYNAMO emulates.
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
from ._builder import (at_least, build_population, check_grid, check_names, grid, held_out_seed,
                       member_seed, train_loop, train_with_retries, with_cache_parameters)
from ._tasks import _check_sizes
from ._zoo import RecurrentNetwork, recurrent_member

__all__ = ["COGNITIVE_TASKS", "POPULATION_TASKS", "make_cognitive_task",
           "make_cognitive_population", "response_period"]

N_INPUTS = N_ACTIONS = 3
MIN_TIMESTEPS = 20


def _epochs(task, n_timesteps):
    """Boundaries (in steps) of the task's periods; everything scales with the length."""
    T = n_timesteps
    f = lambda frac: int(round(frac * T))  # noqa: E731
    if task == "perceptual_decision":
        return dict(stim=(f(0.1), f(0.6)), response=f(0.6))
    if task == "delayed_decision":
        return dict(stim=(f(0.1), f(0.4)), response=f(0.7))
    if task == "match_to_sample":
        return dict(sample=(f(0.1), f(0.25)), test=(f(0.55), f(0.7)), response=f(0.7))
    if task == "delayed_comparison":
        return dict(first=(f(0.1), f(0.25)), second=(f(0.55), f(0.7)), response=f(0.7))
    if task == "interval_discrimination":
        return dict(first=f(0.05), second=f(0.35), max_duration=max(3, f(0.25)),
                    response=f(0.7))
    raise AssertionError(task)


COGNITIVE_TASKS = ("perceptual_decision", "delayed_decision", "match_to_sample",
                   "delayed_comparison", "interval_discrimination")
# match_to_sample (an XOR of sample and test across a delay) needs many more training
# steps than the others for tanh RNNs, so the default population leaves it out.
POPULATION_TASKS = ("perceptual_decision", "delayed_decision", "delayed_comparison",
                    "interval_discrimination")


def response_period(task: str, n_timesteps: int) -> np.ndarray:
    """Mark the steps of a cognitive task's trial where the agent must choose.

    Parameters
    ----------
    task : str
        One of :data:`COGNITIVE_TASKS`.
    n_timesteps : int
        Trial length.

    Returns
    -------
    mask : ndarray of shape (n_timesteps,)
        True at the steps of the response period.

    Raises
    ------
    ValueError
        If ``task`` is unknown.

    Examples
    --------
    >>> from skdynamo.datasets import response_period
    >>> int(response_period("perceptual_decision", 40).sum())
    16
    """
    if task not in COGNITIVE_TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {list(COGNITIVE_TASKS)}.")
    _check_sizes(1, n_timesteps, 1)
    mask = np.zeros(n_timesteps, dtype=bool)
    mask[_epochs(task, n_timesteps)["response"]:] = True
    return mask


def make_cognitive_task(task: str, n_samples: int = 256, n_timesteps: int = 40, *,
                        noise: float = 0.1, stim_noise: float = 0.5,
                        random_state: int | np.random.RandomState | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Generate trials of a cognitive task on the shared 3-input / 3-action interface.

    Tasks (period boundaries are fractions of ``n_timesteps``):

    ``'perceptual_decision'``
        A noisy stimulus on channels 1 and 2 (``0.5 +- c/2`` with coherence ``c`` drawn
        from +-{0.05, 0.1, 0.2, 0.4} and per-step noise ``stim_noise``) from 10% to 60% of
        the trial; the answer, right after it, is 1 if the stimulus's mean of channel 1
        minus channel 2 was positive, else 2.
    ``'delayed_decision'``
        The same stimulus (10% to 40%), then a delay (40% to 70%) before the response.
    ``'match_to_sample'``
        A sample (channel 1 or 2 at 1, 10% to 25%), a delay, a test (55% to 70%); the
        answer is 1 if the test matched the sample, else 2.
    ``'delayed_comparison'``
        Parametric working memory (Romo et al.): a level ``f1`` in [0.2, 1] on channel 1
        (10% to 25%), a delay, a second level ``f2`` (``|f1 - f2|`` in [0.1, 0.4]) on
        channel 1 (55% to 70%); the answer is 1 if ``f1 > f2``, else 2.
    ``'interval_discrimination'``
        Two pulses on channel 1 of different durations (2 to 25% of the trial steps, the
        first at 5%, the second at 35%); the answer is 1 if the first was longer, else 2.

    In every task the fixation cue (channel 0) is 1 until the response period (the last
    30% of the trial, 40% for ``'perceptual_decision'``) and 0 during it; the target is 0
    (fixate) before it.

    Parameters
    ----------
    task : {'perceptual_decision', 'delayed_decision', 'match_to_sample', \
'delayed_comparison', 'interval_discrimination'}
    n_samples : int, default=256
        Number of trials.
    n_timesteps : int, default=40
        Length of each trial (at least 20).
    noise : float, default=0.1
        Standard deviation of the Gaussian noise on every input channel.
    stim_noise : float, default=0.5
        Per-step noise of the decision stimuli (the two decision tasks only).
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, 3)
        Fixation, stimulus and cue channels with noise, float32.
    targets : ndarray of shape (n_samples, n_timesteps)
        The action to take at every step, in {0, 1, 2} (0: fixate), int64.

    Raises
    ------
    ValueError
        If ``task`` is unknown, ``n_timesteps`` is below 20 or a noise level is negative.

    Examples
    --------
    >>> from skdynamo.datasets import make_cognitive_task
    >>> X, y = make_cognitive_task("perceptual_decision", 8, random_state=0)
    >>> X.shape, y.shape, sorted(set(y.ravel().tolist())) <= [0, 1, 2]
    ((8, 40, 3), (8, 40), True)
    """
    if task not in COGNITIVE_TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {list(COGNITIVE_TASKS)}.")
    _check_sizes(n_samples, n_timesteps, 1)
    if n_timesteps < MIN_TIMESTEPS:
        raise ValueError(f"n_timesteps must be at least {MIN_TIMESTEPS} for the task periods "
                         f"to fit, got {n_timesteps}.")
    for name, value in (("noise", noise), ("stim_noise", stim_noise)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    rng = check_random_state(random_state)
    n, T = n_samples, n_timesteps
    ep = _epochs(task, T)
    resp = ep["response"]
    x = np.zeros((n, T, N_INPUTS))
    x[:, :resp, 0] = 1.0
    choice = np.zeros(n, dtype=np.int64)
    if task in ("perceptual_decision", "delayed_decision"):
        a, b = ep["stim"]
        coh = rng.choice([0.05, 0.1, 0.2, 0.4], n) * rng.choice([-1.0, 1.0], n)
        evidence = coh[:, None] + stim_noise * rng.standard_normal((n, b - a))
        x[:, a:b, 1] = 0.5 + evidence / 2
        x[:, a:b, 2] = 0.5 - evidence / 2
        choice = np.where(evidence.mean(1) > 0, 1, 2)
    elif task == "match_to_sample":
        sample = rng.randint(2, size=n)
        match = rng.randint(2, size=n).astype(bool)
        test = np.where(match, sample, 1 - sample)
        (a, b), (c, d) = ep["sample"], ep["test"]
        rows = np.arange(n)[:, None]
        x[rows, np.arange(a, b)[None], 1 + sample[:, None]] = 1.0
        x[rows, np.arange(c, d)[None], 1 + test[:, None]] = 1.0
        choice = np.where(match, 1, 2)
    elif task == "delayed_comparison":
        f1 = rng.uniform(0.2, 1.0, n)
        gap = rng.uniform(0.1, 0.4, n) * rng.choice([-1.0, 1.0], n)
        f2 = np.where((f1 + gap < 0.2) | (f1 + gap > 1.0), f1 - gap, f1 + gap)
        (a, b), (c, d) = ep["first"], ep["second"]
        x[:, a:b, 1] = f1[:, None]
        x[:, c:d, 1] = f2[:, None]
        choice = np.where(f1 > f2, 1, 2)
    else:  # interval_discrimination
        top = ep["max_duration"]
        d1 = rng.randint(2, top + 1, size=n)
        d2 = (d1 - 2 + rng.randint(1, top - 1, size=n)) % (top - 1) + 2  # in [2, top], != d1
        t = np.arange(T)[None]
        x[:, :, 1] = (((t >= ep["first"]) & (t < ep["first"] + d1[:, None]))
                      | ((t >= ep["second"]) & (t < ep["second"] + d2[:, None])))
        choice = np.where(d1 > d2, 1, 2)
    x += noise * rng.standard_normal(x.shape)
    y = np.zeros((n, T), dtype=np.int64)
    y[:, resp:] = choice[:, None]
    return x.astype(np.float32), y


def _accuracy(model, task, n_timesteps, seed):
    """Held-out accuracy on the response period (512 fresh trials)."""
    x, y = make_cognitive_task(task, 512, n_timesteps, random_state=seed)
    mask = response_period(task, n_timesteps)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(-1).numpy()
    return float((pred[:, mask] == y[:, mask]).mean())


def _train_agent(spec, common):
    """Train one agent with cross-entropy at every step (fresh trials every step)."""
    T = common["n_timesteps"]
    mask = torch.from_numpy(response_period(spec["task"], T))
    # Response steps carry the decision: weight them as much as all fixation steps.
    weight = torch.where(mask, 1.0, 0.2)

    def batch_loss(model, rng):
        x, y = make_cognitive_task(spec["task"], common["batch_size"], T, random_state=rng)
        ce = nn.functional.cross_entropy(model(torch.from_numpy(x)).transpose(1, 2),
                                         torch.from_numpy(y), reduction="none")
        return (ce * weight).sum(1).mean() / weight.sum()

    def attempt(i):
        seed = member_seed(spec["seed"], i, 31)
        model, _ = train_loop(
            lambda: RecurrentNetwork(N_INPUTS, N_ACTIONS, spec["hidden_size"], spec["cell"]),
            batch_loss, check_random_state(seed), n_steps=common["n_steps"], lr=common["lr"])
        score = _accuracy(model, spec["task"], T, held_out_seed(seed))
        return model, {"state_dict": model.state_dict(), "score": score}, \
            score >= common["min_score"]

    return train_with_retries(attempt, common["max_retries"])[1]


@with_cache_parameters
def make_cognitive_population(tasks: Sequence[str] = POPULATION_TASKS,
                              cells: Sequence[str] = ("rnn", "gru", "lstm"), n_seeds: int = 2, *,
                              hidden_size: int = 32, seed_offset: int = 0, n_steps: int = 1000,
                              n_timesteps: int = 40, lr: float = 1e-2, batch_size: int = 64,
                              n_probes: int = 256, min_score: float = 0.9, max_retries: int = 2,
                              data_home: str | PathLike | None = None,
                              download_if_missing: bool = True, n_jobs: int | None = None,
                              verbose: bool = False,
                              random_state: int | np.random.RandomState | None = 0) -> Bunch:
    """Train (or load from the cache) agents on several cognitive tasks (logits every step).

    The population is the grid ``tasks x cells x seeds`` of
    :class:`~skdynamo.datasets.RecurrentNetwork` ``(3, 3, hidden_size, cell)`` agents, each
    trained with cross-entropy on one task of :func:`make_cognitive_task` (response steps
    weighted 5 times the fixation steps). All tasks share the 3-input / 3-action
    interface, so one probe set drives every member; their outputs are logits at every
    time step.

    A member whose held-out accuracy on the response period stays below ``min_score`` is
    retrained from a new seed up to ``max_retries`` times; if it still fails it is kept but
    reported by a warning and by ``learned=False``, never silently.

    Parameters
    ----------
    tasks : sequence of str, default=POPULATION_TASKS
        Task names (see :func:`make_cognitive_task`). The default is every task but
        ``'match_to_sample'``, which tanh RNNs do not learn within ``n_steps=1000``.
    cells : sequence of {'rnn', 'gru', 'lstm'}, default=('rnn', 'gru', 'lstm')
        Recurrent cells.
    n_seeds : int, default=2
        Seeds per (task, cell).
    hidden_size : int, default=32
        Hidden width of every member.
    seed_offset : int, default=0
        First seed (``seed_offset=100`` draws held-out members).
    n_steps : int, default=1000
        Adam steps per training attempt (batches of ``batch_size`` fresh trials).
    n_timesteps : int, default=40
        Trial length for training and probes.
    lr : float, default=1e-2
        Adam learning rate (cosine schedule).
    batch_size : int, default=64
        Trials per Adam step.
    n_probes : int, default=256
        Number of probe trials returned (a shuffled mix of every task's inputs).
    min_score : float, default=0.9
        Held-out response-period accuracy a member must reach to count as learned.
    max_retries : int, default=2
        Retraining attempts for a member below ``min_score``.
    {cache_parameters}
    random_state : int, default=0
        Seed of the probe inputs.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (list of :class:`~skdynamo.datasets.RecurrentNetwork`), ``task``,
        ``cell``, ``hidden_size``, ``seed`` (arrays, one entry per model), ``score``
        (held-out accuracy on the response period), ``learned`` (bool array),
        ``probe_inputs`` (ndarray of shape ``(n_probes, n_timesteps, 3)``) and ``DESCR``.

    Examples
    --------
    >>> from skdynamo.datasets import make_cognitive_population
    >>> pop = make_cognitive_population(n_seeds=1)  # doctest: +SKIP
    >>> pop.models[0](torch.from_numpy(pop.probe_inputs)).shape  # doctest: +SKIP
    torch.Size([256, 40, 3])
    """
    tasks, cells = list(tasks), list(cells)
    check_grid(n_seeds, tasks=tasks, cells=cells)
    check_names(tasks=(tasks, COGNITIVE_TASKS), cells=(cells, CELLS))
    if n_timesteps < MIN_TIMESTEPS:
        raise ValueError(f"n_timesteps must be at least {MIN_TIMESTEPS}, got {n_timesteps}.")
    specs = grid(n_seeds, seed_offset, task=tasks, cell=cells, hidden_size=[int(hidden_size)])
    common = dict(n_steps=n_steps, n_timesteps=n_timesteps, lr=lr, batch_size=batch_size,
                  min_score=min_score, max_retries=max_retries)
    pop = build_population(
        "cognitive_population", specs, common, partial(_train_agent, common=common),
        recurrent_member(N_INPUTS, N_ACTIONS),
        columns=("task", "cell", "hidden_size", "seed", "score", "learned"),
        **at_least("score", min_score=min_score),
        label=lambda s, r: (f"{s['task']}/{s['cell']}/seed {s['seed']}: "
                            f"accuracy={r['score']:.3f}"),
        max_retries=max_retries, data_home=data_home, download_if_missing=download_if_missing,
        n_jobs=n_jobs, verbose=verbose, desc="Training cognitive agents")
    rng = check_random_state(random_state)
    per_task = [make_cognitive_task(t, n_probes // len(tasks) + 1, n_timesteps,
                                    random_state=rng)[0] for t in tasks]
    probes = np.concatenate(per_task)[rng.permutation(sum(len(p) for p in per_task))[:n_probes]]
    pop.update(probe_inputs=probes.astype(np.float32), DESCR=(
        f"{len(specs)} cognitive agents (logits over {N_ACTIONS} actions at every "
        f"step): tasks={tasks}, cells={cells}, hidden_size={hidden_size}, "
        f"seeds={seed_offset}..{seed_offset + n_seeds - 1}, {n_timesteps} steps; "
        "score is held-out accuracy on the response period."))
    return pop
