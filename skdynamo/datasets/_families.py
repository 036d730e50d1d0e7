"""Task families with a continuous parameter, and a sequence-classification task.

These back the applications (averaging, semi-supervised learning, clustering): a
*family* is one pulse task on the shared 3-channel interface whose generator has a
continuous parameter (the leak rate of leaky integration by default), so that a
population can be trained on some values and a held-out value lies between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
import warnings
from functools import partial

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state
from torch import nn

from .._docstrings import share_parameters
from ..nn import CELLS
from ._builder import (at_least, build_population, check_grid, check_names, grid, held_out_seed,
                       member_seed, train_loop, train_with_retries)
from ._tasks import PULSE_TASKS, make_pulses, make_task
from ._zoo import RecurrentNetwork, make_rnn_population, recurrent_member

__all__ = ["make_family_population", "make_sequence_classification",
           "make_classifier_population", "train_sequence_classifier"]


def make_family_population(values: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4), *,
                           task: str = "leaky_integration", param: str = "leak",
                           cells: Sequence[str] = ("gru",), hidden_sizes: Sequence[int] = (16,),
                           n_seeds: int = 2, seed_offset: int = 0, n_steps: int = 800,
                           n_timesteps: int = 50, n_channels: int = 3, n_probes: int = 256,
                           min_score: float = 0.9, max_retries: int = 2,
                           data_home: str | PathLike | None = None,
                           download_if_missing: bool = True, n_jobs: int | None = None,
                           verbose: bool = False,
                           random_state: int | np.random.RandomState | None = 0) -> Bunch:
    """Train (or load) a population over a continuous parameter of one pulse task.

    For each value ``v`` of ``values`` the grid ``cells x hidden_sizes x seeds`` is
    trained on ``task`` with ``{param: v}`` (through :func:`make_rnn_population`, so
    members are cached, weights only). Every member shares the pulse interface, so a
    network trained on a value that is *not* in ``values`` (a held-out task variant) can
    be compared with the population directly.

    Parameters
    ----------
    values : sequence of float, default=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4)
        Parameter values of the population (leak rates by default).
    task : str, default='leaky_integration'
        A pulse task (see :func:`make_task`).
    param : str, default='leak'
        Name of the generator's continuous parameter.
    {cells}
    {hidden_sizes}
    {n_seeds}
    {seed_offset}
    {n_steps}
    {n_timesteps}
    {n_channels}
    n_probes : int, default=256
        Probe sequences returned (the task's inputs; they do not depend on the parameter
        for pulse tasks).
    {min_score}
    {max_retries}
    {data_home}
    {download_if_missing}
    {n_jobs}
    {verbose}
    random_state : int, default=0
        Seed of the probe inputs.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models``, ``value`` (the parameter of each model), ``cell``, ``hidden_size``,
        ``seed``, ``score`` (held-out R^2 on its own task variant), ``learned``,
        ``probe_inputs``, ``task``, ``param`` and ``DESCR``.

    Examples
    --------
    >>> from skdynamo.datasets import make_family_population
    >>> pop = make_family_population((0.1, 0.3), n_seeds=1, n_steps=20,
    ...                              min_score=-10)  # doctest: +SKIP
    >>> pop.value  # doctest: +SKIP
    array([0.1, 0.3])
    """
    if task not in PULSE_TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {sorted(PULSE_TASKS)}.")
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a non-empty sequence of finite numbers, got {values!r}.")
    parts = []
    for v in values:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pop = make_rnn_population(
                tasks=(task,), cells=cells, hidden_sizes=hidden_sizes, n_seeds=n_seeds,
                seed_offset=seed_offset, task_params={task: {param: float(v)}},
                n_steps=n_steps, n_timesteps=n_timesteps, n_channels=n_channels,
                n_probes=n_probes, min_score=min_score, max_retries=max_retries,
                data_home=data_home, download_if_missing=download_if_missing, n_jobs=n_jobs,
                verbose=verbose, random_state=random_state)
        for w in caught:
            warnings.warn(f"{param}={v}: {w.message}", w.category, stacklevel=2)
        parts.append(pop)
    cat = lambda key: np.concatenate([p[key] for p in parts])  # noqa: E731
    return Bunch(
        models=[m for p in parts for m in p.models],
        value=np.concatenate([np.full(len(p.models), v) for p, v in zip(parts, values)]),
        cell=cat("cell"), hidden_size=cat("hidden_size"), seed=cat("seed"),
        score=cat("score"), learned=cat("learned"),
        probe_inputs=parts[0].probe_inputs, task=task, param=param,
        DESCR=(f"{sum(len(p.models) for p in parts)} recurrent networks trained on {task} "
               f"with {param} in {values.tolist()}; cells={list(cells)}, "
               f"hidden_sizes={list(hidden_sizes)}, {n_seeds} seeds each."),
    )


def make_sequence_classification(n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3,
                                 *, leak: float = 0.1, pulse_prob: float = 0.08,
                                 noise: float = 0.05,
                                 random_state: int | np.random.RandomState | None = None
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Generate sequence classification on the pulse interface: which channel leads at the end.

    Each channel's pulses are integrated with leak rate ``leak``
    (``s_t = (1 - leak) s_{t-1} + pulse_t``); the label is the channel with the largest
    final ``s_T``. The leak rate is a continuous parameter (recent pulses weigh more as it
    grows), so classifiers trained on different leaks form a task family.

    Parameters
    ----------
    {n_samples}
    {n_timesteps}
    {n_channels}
    leak : float, default=0.1
        Leak rate in [0, 1].
    {pulse_prob}
    {noise}
    {random_state}

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    labels : ndarray of shape (n_samples,)
        The leading channel, in ``[0, n_channels)``, int64.
    """
    if not 0.0 <= leak <= 1.0:
        raise ValueError(f"leak must be in [0, 1], got {leak!r}.")
    inputs, pulses = make_pulses(n_samples, n_timesteps, n_channels, pulse_prob=pulse_prob,
                                 noise=noise, random_state=random_state)
    decay = (1.0 - leak) ** np.arange(n_timesteps - 1, -1, -1)
    final = np.einsum("ntc,t->nc", pulses.astype(np.float64), decay)
    return inputs, final.argmax(1).astype(np.int64)


def train_sequence_classifier(cell: str = "gru", hidden_size: int = 16, *, leak: float = 0.1,
                              n_steps: int = 800, batch_size: int = 64, n_timesteps: int = 50,
                              n_channels: int = 3, lr: float = 1e-2,
                              random_state: int | np.random.RandomState | None = 0
                             ) -> tuple[RecurrentNetwork, float]:
    """Train a :class:`RecurrentNetwork` whose last output is the class logits.

    Cross-entropy on the last time step of :func:`make_sequence_classification`.

    Parameters
    ----------
    cell : {'rnn', 'gru', 'lstm'}, default='gru'
        Recurrent cell.
    hidden_size : int, default=16
        Number of recurrent units.
    leak : float, default=0.1
        Leak rate of the task.
    n_steps : int, default=800
        Adam steps, each on a fresh batch.
    batch_size : int, default=64
        Sequences per step.
    n_timesteps : int, default=50
        Sequence length.
    n_channels : int, default=3
        Input channels (and classes).
    lr : float, default=1e-2
        Peak learning rate (cosine schedule).
    random_state : int, RandomState instance or None, default=0
        Seed of the initialisation and the batches.

    Returns
    -------
    model : RecurrentNetwork
        In eval mode; ``model(x)[:, -1]`` are the logits.
    accuracy : float
        Held-out accuracy on 512 sequences.
    """
    def batch_loss(model, rng):
        x, y = make_sequence_classification(batch_size, n_timesteps, n_channels, leak=leak,
                                            random_state=rng)
        return nn.functional.cross_entropy(model(torch.from_numpy(x))[:, -1],
                                           torch.from_numpy(y))

    model, seed = train_loop(lambda: RecurrentNetwork(n_channels, n_channels, hidden_size, cell),
                             batch_loss, check_random_state(random_state), n_steps=n_steps,
                             lr=lr)
    x, y = make_sequence_classification(512, n_timesteps, n_channels, leak=leak,
                                        random_state=held_out_seed(seed))
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x))[:, -1].argmax(1).numpy() == y).mean())
    return model, acc


def _train_classifier_member(spec, common):
    def attempt(i):
        model, acc = train_sequence_classifier(
            spec["cell"], spec["hidden_size"], leak=spec["leak"], n_steps=common["n_steps"],
            n_timesteps=common["n_timesteps"], n_channels=common["n_channels"],
            random_state=member_seed(spec["seed"], i, 23))
        return model, {"state_dict": model.state_dict(), "score": float(acc)}, \
            acc >= common["min_score"]

    return train_with_retries(attempt, common["max_retries"])[1]


def make_classifier_population(leaks: Sequence[float] = (0.0, 0.1, 0.3), *,
                               cells: Sequence[str] = ("gru",), hidden_sizes: Sequence[int] = (16,),
                               n_seeds: int = 2, seed_offset: int = 0, n_steps: int = 800,
                               n_timesteps: int = 50, n_channels: int = 3, n_probes: int = 256,
                               min_score: float = 0.8, max_retries: int = 0,
                               data_home: str | PathLike | None = None,
                               download_if_missing: bool = True, n_jobs: int | None = None,
                               verbose: bool = False,
                               random_state: int | np.random.RandomState | None = 0) -> Bunch:
    """Train (or load) sequence classifiers over leak rates (cached, weights only).

    A member whose held-out accuracy stays below ``min_score`` is retrained from a new
    seed up to ``max_retries`` times; if it still fails it is kept but reported by a
    warning and by ``learned=False``, never silently.

    Parameters
    ----------
    leaks : sequence of float, default=(0.0, 0.1, 0.3)
        Leak rates of :func:`make_sequence_classification`, one group of models each.
    {cells}
    {hidden_sizes}
    {n_seeds}
    {seed_offset}
    {n_steps}
    {n_timesteps}
    {n_channels}
    n_probes : int, default=256
        Probe sequences returned (the task's inputs).
    min_score : float, default=0.8
        Held-out accuracy a member must reach to count as learned (chance is
        ``1 / n_channels``).
    max_retries : int, default=0
        Retraining attempts for a member below ``min_score``. The default trains each
        member once, as earlier versions did, so their cached members stay valid.
    {data_home}
    {download_if_missing}
    {n_jobs}
    {verbose}
    random_state : int, default=0
        Seed of the probe inputs.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (their last output step holds the logits), ``value`` (leak of each
        model), ``cell``, ``hidden_size``, ``seed``, ``score`` (held-out accuracy),
        ``learned`` (bool array), ``probe_inputs`` and ``DESCR``.
    """
    leaks = [float(v) for v in np.asarray(leaks, dtype=float).ravel()]
    check_grid(n_seeds, leaks=leaks)
    check_names(cells=(cells, CELLS))
    specs = grid(n_seeds, seed_offset, leak=leaks, cell=cells,
                 hidden_size=[int(h) for h in hidden_sizes])
    settings = dict(n_steps=n_steps, n_timesteps=n_timesteps, n_channels=n_channels)
    retries = dict(min_score=min_score, max_retries=max_retries)
    # Without retries min_score does not change what is trained: the key stays as it was.
    pop = build_population(
        "classifier_population", specs, {**settings, **(retries if max_retries else {})},
        partial(_train_classifier_member, common={**settings, **retries}),
        recurrent_member(n_channels, n_channels),
        columns=("value", "cell", "hidden_size", "seed", "score", "learned"),
        derived=dict(value=lambda s, r: s["leak"]),
        **at_least("score", min_score=min_score),
        label=lambda s, r: (f"leak {s['leak']}/{s['cell']}/seed {s['seed']}: "
                            f"accuracy={r['score']:.3f}"),
        max_retries=max_retries, data_home=data_home, download_if_missing=download_if_missing,
        n_jobs=n_jobs, verbose=verbose, desc="Training classifiers")
    rng = check_random_state(random_state)
    probes = make_task("flipflop", n_probes, n_timesteps, n_channels, random_state=rng)[0]
    pop.update(probe_inputs=probes.astype(np.float32), DESCR=(
        f"{len(specs)} sequence classifiers (last-step logits) on "
        f"make_sequence_classification with leak in {leaks}."))
    return pop


# Parameters shared with the generators and zoos they build on: one text each.
share_parameters(make_family_population, make_rnn_population)
share_parameters(make_classifier_population, make_rnn_population)
share_parameters(make_sequence_classification, make_pulses)
