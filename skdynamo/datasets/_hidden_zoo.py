"""A seeded, cached population whose outputs agree but whose hidden computation differs.

Every member is a :class:`~skdynamo.datasets.RecurrentNetwork` that outputs the 3-bit
flip-flop. Half of them (``group == "hidden_head"``) were trained jointly with a second
linear readout that computed another task on the same inputs (by default the running
integral of the pulses); that head is removed afterwards. Output-space methods cannot tell
the two groups apart, since they output the same thing; what differs is what the hidden
states carry.
"""

import warnings
from functools import partial
from itertools import product

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state
from torch import nn

from ._cache import load_or_train
from ._tasks import PULSE_TASKS, make_flipflop, make_task
from ._zoo import _CELLS, RecurrentNetwork, _r2

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
    with_head = spec["group"] == "hidden_head"
    for attempt in range(common["max_retries"] + 1):
        # The seed does not depend on the group: a plain member and its hidden-head partner
        # start from the same weights and see the same batches; only the extra head differs.
        seed = spec["seed"] * 7919 + attempt * 104729 + 23
        rng = check_random_state(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
            model = RecurrentNetwork(n_channels, n_channels, spec["hidden_size"], spec["cell"])
            head = nn.Linear(spec["hidden_size"], n_channels)
            params = list(model.parameters()) + (list(head.parameters()) if with_head else [])
            opt = torch.optim.Adam(params, lr=common["lr"])
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, common["n_steps"])
            for _ in range(common["n_steps"]):
                batch_seed = int(rng.randint(np.iinfo(np.int32).max))
                x, y = make_flipflop(common["batch_size"], n_timesteps, n_channels,
                                     random_state=batch_seed)
                h = model.rnn(torch.from_numpy(x))[0]
                loss = nn.functional.mse_loss(model.readout(h), torch.from_numpy(y))
                if with_head:
                    # Same inputs (same seed), the hidden task's targets.
                    _, z = make_task(hidden_task, common["batch_size"], n_timesteps, n_channels,
                                     random_state=batch_seed, **task_params)
                    loss = loss + common["head_weight"] * nn.functional.mse_loss(
                        head(h), torch.from_numpy(z))
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
        model.eval()
        test_seed = seed % 9973 + 1
        x, y = make_flipflop(512, n_timesteps, n_channels, random_state=test_seed)
        _, z = make_task(hidden_task, 512, n_timesteps, n_channels, random_state=test_seed,
                         **task_params)
        with torch.no_grad():
            h = model.rnn(torch.from_numpy(x))[0]
            score = _r2(model.readout(h).numpy(), y)
            head_score = _r2(head(h).numpy(), z) if with_head else float("nan")
        if score >= common["min_score"] and (not with_head or head_score >= common["min_score"]):
            break
    decoding = _linear_decoding_r2(model, hidden_task, task_params, n_timesteps, n_channels,
                                   test_seed + 1)
    # Only the flip-flop network is kept: the hidden head is removed here.
    return {"state_dict": model.state_dict(), "score": float(score),
            "head_score": float(head_score), "decoding_score": float(decoding),
            "attempts": attempt}


def make_hidden_head_population(cells=("rnn", "gru", "lstm"), n_seeds=3, *,
                                hidden_task="integration", task_params=None, head_weight=1.0,
                                hidden_size=32, seed_offset=0, n_steps=1500, n_timesteps=50,
                                n_channels=3, lr=1e-2, batch_size=64, n_probes=256,
                                min_score=0.85, max_retries=2, data_home=None,
                                download_if_missing=True, n_jobs=None, verbose=False,
                                random_state=0):
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
    n_probes : int, default=256
        Number of probe sequences returned (task inputs: noisy sparse pulses, which both
        tasks read).
    min_score : float, default=0.85
        Held-out R^2 a member (and its head, before removal) must reach to count as learned.
    max_retries : int, default=2
        Retraining attempts for a member below ``min_score``.
    data_home : str or path-like, default=None
        Cache folder (see :func:`skdynamo.datasets.get_data_home`).
    download_if_missing : bool, default=True
        Train members missing from the cache; if False, raise ``OSError`` instead.
    n_jobs : int, default=None
        Parallel training jobs (joblib, one torch thread each).
    verbose : bool, default=False
        Show a progress bar while training.
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
    if not cells or n_seeds < 1:
        raise ValueError("cells must be non-empty and n_seeds >= 1.")
    bad_cells = [c for c in cells if c not in _CELLS]
    if bad_cells:
        raise ValueError(f"Unknown cells {bad_cells}; cells are {sorted(_CELLS)}.")
    if hidden_task not in PULSE_TASKS or hidden_task == "flipflop":
        raise ValueError(f"hidden_task must be a pulse task other than 'flipflop' (one of "
                         f"{sorted(set(PULSE_TASKS) - {'flipflop'})}), got {hidden_task!r}.")
    if not head_weight > 0:
        raise ValueError(f"head_weight must be positive, got {head_weight!r}.")
    task_params = dict(task_params or {})
    specs = [dict(group=g, cell=c, hidden_size=int(hidden_size), seed=int(s) + seed_offset)
             for g, c, s in product(GROUPS, cells, range(n_seeds))]
    common = dict(hidden_task=hidden_task, task_params=task_params,
                  head_weight=float(head_weight), n_steps=n_steps, n_timesteps=n_timesteps,
                  n_channels=n_channels, lr=lr, batch_size=batch_size, min_score=min_score,
                  max_retries=max_retries)
    records = load_or_train(
        "hidden_head_population", specs, {**common, "version": 1},
        partial(_train_joint, common=common),
        data_home=data_home, download_if_missing=download_if_missing, n_jobs=n_jobs,
        verbose=verbose, desc="Training flip-flops (with and without hidden heads)")
    models = []
    for spec, record in zip(specs, records):
        model = RecurrentNetwork(n_channels, n_channels, spec["hidden_size"], spec["cell"])
        model.load_state_dict(record["state_dict"])
        models.append(model.eval())
    group = np.array([s["group"] for s in specs])
    hidden_head = group == "hidden_head"
    scores = np.array([r["score"] for r in records])
    head_scores = np.array([r["head_score"] for r in records])
    learned = (scores >= min_score) & (~hidden_head | (head_scores >= min_score))
    if not learned.all():
        bad = [f"#{i} ({specs[i]['group']}/{specs[i]['cell']}/seed {specs[i]['seed']}: "
               f"R2={scores[i]:.3f}, head R2={head_scores[i]:.3f})"
               for i in np.flatnonzero(~learned)]
        warnings.warn(f"{len(bad)} members did not reach min_score={min_score} after "
                      f"{max_retries} retries: {', '.join(bad)}. They are kept and flagged "
                      "in population.learned.", UserWarning, stacklevel=2)
    probes, _ = make_flipflop(n_probes, n_timesteps, n_channels,
                              random_state=check_random_state(random_state))
    return Bunch(
        models=models,
        group=group,
        hidden_head=hidden_head,
        cell=np.array([s["cell"] for s in specs]),
        hidden_size=np.array([s["hidden_size"] for s in specs]),
        seed=np.array([s["seed"] for s in specs]),
        score=scores,
        head_score=head_scores,
        decoding_score=np.array([r["decoding_score"] for r in records]),
        learned=learned,
        probe_inputs=probes.astype(np.float32),
        DESCR=(f"{len(models)} {n_channels}-bit flip-flop networks: cells={cells}, "
               f"hidden_size={hidden_size}, seeds={seed_offset}..{seed_offset + n_seeds - 1}; "
               f"half trained jointly with a {hidden_task!r} head (weight {head_weight}) that "
               f"was then removed. Every member outputs only the flip-flop; group / "
               f"hidden_head tell which computed {hidden_task!r} internally."),
    )
