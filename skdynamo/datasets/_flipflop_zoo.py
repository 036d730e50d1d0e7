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

import warnings
from functools import partial
from itertools import product

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state
from torch import nn

from ._cache import load_or_train
from ._tasks import make_pulses
from ._zoo import RecurrentNetwork, _r2

__all__ = ["make_flipflop_population", "make_flipflop_trials"]


def make_flipflop_trials(n_samples=256, n_timesteps=100, n_channels=3, *, n_bits=None,
                         pulse_prob=0.03, noise=0.05, random_state=None):
    """Flip-flop trials whose bits are all set by a pulse at the first step.

    Like :func:`skdynamo.datasets.make_flipflop`, except that every channel receives a
    pulse of random sign at ``t = 0``, so every tracked output is +-1 throughout (untracked
    outputs stay 0). Sparse pulses make long silent stretches.

    Returns
    -------
    inputs, targets : ndarray of shape (n_samples, n_timesteps, n_channels), float32
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
    targets = np.zeros_like(pulses)
    state = np.zeros((n_samples, n_channels), dtype=np.float32)
    for t in range(n_timesteps):
        state = np.where(pulses[:, t] != 0, pulses[:, t], state)
        targets[:, t] = state
    targets[:, :, n_bits:] = 0.0
    return inputs.astype(np.float32), targets


def _count_attractors(model, n_bits, n_channels, seed):
    # Imported here: datasets must not depend on dynamics at import time.
    from ..dynamics import simulate_settled_states

    x, _ = make_flipflop_trials(64, 100, n_channels, n_bits=n_bits, random_state=seed)
    sim = simulate_settled_states(model, x, n_initial=256, n_steps=2000, noise=0.05,
                                  random_state=seed)
    return sim.n_attractors, sim.n_unsettled


def _train_flipflop(n_bits, cell, hidden_size, n_steps, n_timesteps, n_channels, pulse_prob,
                    noise, lr, batch_size, seed):
    rng = check_random_state(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        model = RecurrentNetwork(n_channels, n_channels, hidden_size, cell)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_steps)
        for _ in range(n_steps):
            x, y = make_flipflop_trials(batch_size, n_timesteps, n_channels, n_bits=n_bits,
                                        pulse_prob=pulse_prob, noise=noise, random_state=rng)
            loss = nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    x, y = make_flipflop_trials(512, n_timesteps, n_channels, n_bits=n_bits,
                                pulse_prob=pulse_prob, noise=noise, random_state=seed % 9973 + 1)
    with torch.no_grad():
        score = _r2(model(torch.from_numpy(x)).numpy()[..., :max(n_bits, 1)],
                    y[..., :max(n_bits, 1)])
    return model, score


def _train_member(spec, common):
    for attempt in range(common["max_retries"] + 1):
        seed = spec["seed"] * 7919 + attempt * 104729 + spec["n_bits"] * 31 + 5
        model, score = _train_flipflop(
            spec["n_bits"], spec["cell"], spec["hidden_size"], common["n_steps"],
            common["n_timesteps"], common["n_channels"], common["pulse_prob"],
            common["noise"], common["lr"], common["batch_size"], seed)
        n_attr, n_unsettled = _count_attractors(model, spec["n_bits"], common["n_channels"],
                                                seed)
        if score >= common["min_score"] and n_attr == 2 ** spec["n_bits"]:
            break
    return {"state_dict": model.state_dict(), "score": float(score), "attempts": attempt,
            "n_attractors": int(n_attr), "n_unsettled": int(n_unsettled)}


def make_flipflop_population(bits=(1, 2, 3), cells=("rnn", "lstm"), n_seeds=3, *,
                             hidden_size=32, seed_offset=0, n_steps=1500, n_timesteps=100,
                             n_channels=3, pulse_prob=0.03, noise=0.05, lr=1e-2, batch_size=64,
                             n_probes=128, min_score=0.95, max_retries=2, data_home=None,
                             download_if_missing=True, n_jobs=None, verbose=False,
                             random_state=0):
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
    n_probes : int, default=128
        Number of probe sequences returned (3-bit trials: they drive every channel).
    min_score : float, default=0.95
        Held-out R^2 (on the tracked outputs) a member must reach.
    max_retries : int, default=2
        Retraining attempts for a member that misses ``min_score`` or the attractor count.
    data_home : str or path-like, default=None
        Cache folder (see :func:`skdynamo.datasets.get_data_home`).
    download_if_missing : bool, default=True
        Train missing members; if False, raise ``OSError`` instead.
    n_jobs : int, default=None
        Parallel training jobs (joblib, one torch thread each).
    verbose : bool, default=False
        Progress bar while training.
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
    if not bits or not cells or n_seeds < 1:
        raise ValueError("bits and cells must be non-empty and n_seeds >= 1.")
    for b in bits:
        if not 1 <= b <= n_channels:
            raise ValueError(f"Every entry of bits must be in [1, n_channels={n_channels}], "
                             f"got {b}.")
    specs = [dict(n_bits=b, cell=c, hidden_size=int(hidden_size), seed=int(s) + seed_offset)
             for b, c, s in product(bits, cells, range(n_seeds))]
    common = dict(n_steps=n_steps, n_timesteps=n_timesteps, n_channels=n_channels,
                  pulse_prob=pulse_prob, noise=noise, lr=lr, batch_size=batch_size,
                  min_score=min_score, max_retries=max_retries)
    records = load_or_train(
        "flipflop_population", specs, {**common, "version": 1},
        partial(_train_member, common=common),
        data_home=data_home, download_if_missing=download_if_missing, n_jobs=n_jobs,
        verbose=verbose, desc="Training flip-flops")
    models = []
    for spec, record in zip(specs, records):
        model = RecurrentNetwork(n_channels, n_channels, spec["hidden_size"], spec["cell"])
        model.load_state_dict(record["state_dict"])
        models.append(model.eval())
    scores = [r["score"] for r in records]
    n_attr = [r["n_attractors"] for r in records]
    n_bits = np.array([s["n_bits"] for s in specs])
    n_attr = np.array(n_attr)
    ok = n_attr == 2 ** n_bits
    if not ok.all():
        bad = [f"#{i} ({specs[i]['n_bits']}-bit {specs[i]['cell']} seed {specs[i]['seed']}: "
               f"{n_attr[i]} attractors)" for i in np.flatnonzero(~ok)]
        warnings.warn(f"{len(bad)} members did not form 2**n_bits attractors after "
                      f"{max_retries} retries: {', '.join(bad)}. They are kept and flagged in "
                      "population.attractors_ok.", UserWarning, stacklevel=2)
    probes, _ = make_flipflop_trials(n_probes, n_timesteps, n_channels, n_bits=n_channels,
                                     pulse_prob=pulse_prob, noise=noise,
                                     random_state=check_random_state(random_state))
    return Bunch(
        models=models, n_bits=n_bits, cell=np.array([s["cell"] for s in specs]),
        hidden_size=np.array([s["hidden_size"] for s in specs]),
        seed=np.array([s["seed"] for s in specs]), score=np.array(scores),
        n_attractors=n_attr, attractors_ok=ok, probe_inputs=probes,
        DESCR=(f"{len(models)} flip-flop networks: bits={bits}, cells={cells}, hidden_size="
               f"{hidden_size}, seeds={seed_offset}..{seed_offset + n_seeds - 1}, trained on "
               f"{n_timesteps}-step trials with pulse_prob={pulse_prob}; {int(ok.sum())} of "
               f"{len(models)} settle into 2**n_bits attractors at zero input."),
    )
