"""A seeded, cached population of 1-, 2- and 3-bit flip-flops with true attractors.

Networks trained on short trials often hold their bits with slow points that drift away
after a few hundred steps. These are trained differently so that each memory state is a
true stable fixed point at zero input:

- long trials (``n_timesteps=100``) with sparse pulses (``pulse_prob=0.03``), so the network
  must hold its state over long silent stretches;
- a pulse of random sign on every channel at the first step, so every tracked bit is
  defined from the start and no third "not yet set" state has to be remembered;
- after training, long autonomous runs at zero input from the states the network visits
  must settle into exactly ``2 ** n_bits`` distinct states
  (:func:`skdynamo.dynamics.simulate_settled_states`); otherwise the member is retrained
  from another seed (up to ``max_retries`` times) and flagged if it still fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from functools import partial

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state
from torch import nn

from ._builder import (build_population, check_grid, grid, held_out_seed, member_seed, train_loop,
                       train_with_retries, with_cache_parameters)
from .._docstrings import share_parameters
from ._tasks import _flipflop_targets, make_flipflop, make_pulses
from ._zoo import RecurrentNetwork, _r2, recurrent_member

__all__ = ["make_flipflop_population", "make_flipflop_trials"]


def make_flipflop_trials(n_samples: int = 256, n_timesteps: int = 100, n_channels: int = 3, *,
                         n_bits: int | None = None, pulse_prob: float = 0.03, noise: float = 0.05,
                         random_state: int | np.random.RandomState | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Flip-flop trials whose bits are all set by a pulse at the first step.

    Like :func:`skdynamo.datasets.make_flipflop`, except that every channel receives a
    pulse of random sign at ``t = 0``, so every tracked output is +-1 throughout (untracked
    outputs stay 0). Sparse pulses make long silent stretches.

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=100
        Length of each sequence.
    n_channels : int, default=3
        Number of input (and output) channels.
    {n_bits}
    pulse_prob : float, default=0.03
        Probability that a channel carries a pulse at a given later step.
    {noise}
    {random_state}

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    targets : ndarray of shape (n_samples, n_timesteps, n_channels)
        The flip-flop states, float32.
    """
    n_bits = n_channels if n_bits is None else n_bits
    if not 0 <= n_bits <= n_channels:
        raise ValueError(f"n_bits must be in [0, n_channels={n_channels}], got {n_bits!r}.")
    rng = check_random_state(random_state)
    inputs, pulses = make_pulses(n_samples, n_timesteps, n_channels, pulse_prob=pulse_prob,
                                 noise=noise, random_state=rng)
    first = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n_samples, n_channels))
    inputs[:, 0] += first - pulses[:, 0]
    pulses[:, 0] = first
    return inputs.astype(np.float32), _flipflop_targets(pulses, n_bits)


def _count_attractors(model, n_bits, n_channels, seed):
    # Imported here: datasets must not depend on dynamics at import time.
    from ..dynamics import simulate_settled_states

    x, _ = make_flipflop_trials(64, 100, n_channels, n_bits=n_bits, random_state=seed)
    sim = simulate_settled_states(model, x, n_initial=256, n_steps=2000, noise=0.05,
                                  random_state=seed)
    return sim.n_attractors, sim.n_unsettled


def _train_member(spec, common):
    n_bits, n_channels = spec["n_bits"], common["n_channels"]
    trials = partial(make_flipflop_trials, n_timesteps=common["n_timesteps"],
                     n_channels=n_channels, n_bits=n_bits, pulse_prob=common["pulse_prob"],
                     noise=common["noise"])

    def batch_loss(model, rng):
        x, y = trials(common["batch_size"], random_state=rng)
        return nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y))

    def attempt(i):
        seed = member_seed(spec["seed"], i, n_bits * 31 + 5)
        model, _ = train_loop(
            lambda: RecurrentNetwork(n_channels, n_channels, spec["hidden_size"], spec["cell"]),
            batch_loss, check_random_state(seed), n_steps=common["n_steps"], lr=common["lr"])
        x, y = trials(512, random_state=held_out_seed(seed))
        with torch.no_grad():
            tracked = slice(0, max(n_bits, 1))
            score = _r2(model(torch.from_numpy(x)).numpy()[..., tracked], y[..., tracked])
        n_attr, n_unsettled = _count_attractors(model, n_bits, n_channels, seed)
        record = {"state_dict": model.state_dict(), "score": float(score),
                  "n_attractors": int(n_attr), "n_unsettled": int(n_unsettled)}
        return model, record, score >= common["min_score"] and n_attr == 2 ** n_bits

    return train_with_retries(attempt, common["max_retries"])[1]


@with_cache_parameters
def make_flipflop_population(bits: Sequence[int] = (1, 2, 3),
                             cells: Sequence[str] = ("rnn", "lstm"), n_seeds: int = 3, *,
                             hidden_size: int = 32, seed_offset: int = 0, n_steps: int = 1500,
                             n_timesteps: int = 100, n_channels: int = 3, pulse_prob: float = 0.03,
                             noise: float = 0.05, lr: float = 1e-2, batch_size: int = 64,
                             n_probes: int = 128, min_score: float = 0.95, max_retries: int = 2,
                             data_home: str | PathLike | None = None,
                             download_if_missing: bool = True, n_jobs: int | None = None,
                             verbose: bool = False,
                             random_state: int | np.random.RandomState | None = 0) -> Bunch:
    """Train (or load from the cache) 1-, 2- and 3-bit flip-flops with true attractors.

    Every member reads the same ``n_channels`` pulse channels and writes ``n_channels``
    outputs: a b-bit member tracks the first b channels and holds its other outputs at 0,
    so one set of probe inputs drives the whole population. Members are trained on long,
    sparse trials (see :func:`make_flipflop_trials`) and accepted only when long autonomous
    runs at zero input settle into exactly ``2 ** b`` states; a failing member is retrained
    from another seed up to ``max_retries`` times and flagged in ``attractors_ok``.

    Parameters
    ----------
    bits : sequence of int, default=(1, 2, 3)
        Numbers of bits (each at most ``n_channels``).
    cells : sequence of {'rnn', 'gru', 'lstm'}, default=('rnn', 'lstm')
        Recurrent cells. GRUs trained this way tend to hold their bits with update gates
        near 1, which gives stable points so slow (``|lambda| > 0.999``) that long runs
        barely settle; tanh RNNs and LSTMs form clear attractors.
    n_seeds : int, default=3
        Seeds per (bits, cell).
    hidden_size : int, default=32
        Hidden width of every member.
    seed_offset : int, default=0
        First seed (``seed_offset=100`` draws held-out members).
    n_steps : int, default=1500
        Adam steps per training attempt (batches of ``batch_size`` fresh trials).
    n_timesteps : int, default=100
        Trial length for training and probes.
    n_channels : int, default=3
        Width of the shared interface.
    pulse_prob : float, default=0.03
        Pulse probability per channel and step (sparse: long silent stretches).
    noise : float, default=0.05
        Input noise.
    lr : float, default=1e-2
        Adam learning rate (cosine schedule).
    batch_size : int, default=64
        Trials per Adam step.
    n_probes : int, default=128
        Number of probe sequences returned (3-bit trials: they drive every channel).
    min_score : float, default=0.95
        Held-out R^2 (on the tracked outputs) a member must reach.
    max_retries : int, default=2
        Retraining attempts for a member that misses ``min_score`` or the attractor count.
    {cache_parameters}
    random_state : int, default=0
        Seed of the probe inputs.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (list of :class:`~skdynamo.datasets.RecurrentNetwork`), ``n_bits``,
        ``cell``, ``seed``, ``score`` (held-out R^2), ``n_attractors`` (distinct states long
        runs at zero input settle into), ``attractors_ok`` (``n_attractors == 2 ** n_bits``),
        ``probe_inputs`` (ndarray of shape ``(n_probes, n_timesteps, n_channels)``) and
        ``DESCR``.
    """
    bits, cells = [int(b) for b in bits], list(cells)
    check_grid(n_seeds, bits=bits, cells=cells)
    for b in bits:
        if not 1 <= b <= n_channels:
            raise ValueError(f"Every entry of bits must be in [1, n_channels={n_channels}], "
                             f"got {b}.")
    specs = grid(n_seeds, seed_offset, n_bits=bits, cell=cells, hidden_size=[int(hidden_size)])
    common = dict(n_steps=n_steps, n_timesteps=n_timesteps, n_channels=n_channels,
                  pulse_prob=pulse_prob, noise=noise, lr=lr, batch_size=batch_size,
                  min_score=min_score, max_retries=max_retries)
    pop = build_population(
        "flipflop_population", specs, common, partial(_train_member, common=common),
        recurrent_member(n_channels, n_channels),
        columns=("n_bits", "cell", "hidden_size", "seed", "score", "n_attractors",
                 "attractors_ok"),
        flag="attractors_ok", learned=lambda s, r: r["n_attractors"] == 2 ** s["n_bits"],
        label=lambda s, r: (f"{s['n_bits']}-bit {s['cell']} seed {s['seed']}: "
                            f"{r['n_attractors']} attractors"),
        failure="form 2**n_bits attractors", max_retries=max_retries, data_home=data_home,
        download_if_missing=download_if_missing, n_jobs=n_jobs, verbose=verbose,
        desc="Training flip-flops")
    probes, _ = make_flipflop_trials(n_probes, n_timesteps, n_channels, n_bits=n_channels,
                                     pulse_prob=pulse_prob, noise=noise,
                                     random_state=check_random_state(random_state))
    pop.update(probe_inputs=probes, DESCR=(
        f"{len(specs)} flip-flop networks: bits={bits}, cells={cells}, hidden_size="
        f"{hidden_size}, seeds={seed_offset}..{seed_offset + n_seeds - 1}, trained on "
        f"{n_timesteps}-step trials with pulse_prob={pulse_prob}; "
        f"{int(pop.attractors_ok.sum())} of {len(specs)} settle into 2**n_bits attractors "
        "at zero input."))
    return pop


share_parameters(make_flipflop_trials, make_flipflop)
