"""The one population builder behind every model zoo.

A zoo is a short specification of it: the grid of member specs (:func:`grid`), a
picklable ``train(spec) -> record`` made of :func:`train_loop` (the one training loop)
and :func:`train_with_retries` (the one retry loop, seeded by :func:`member_seed`), the
architecture of a member, when a member counts as learned and how the warning names it.
:func:`build_population` trains or loads the members (:func:`load_or_train`: cached,
weights only), rebuilds them, warns once about those that did not learn and returns the
layout every zoo shares: ``models``, then one array per column (a spec field, a record
field, a derived value or the learned flag) in the order given; the zoo adds its
``probe_inputs``, any extras and ``DESCR`` after them.
"""

import textwrap
import warnings
from itertools import product

import numpy as np
import torch
from sklearn.utils import Bunch
from torch import nn

from ._cache import load_or_train

__all__ = ["at_least", "build_population", "check_grid", "check_names", "grid", "held_out_seed",
           "member_seed", "train_loop", "train_with_retries", "with_cache_parameters"]

CACHE_PARAMETERS = """\
data_home : str or path-like, default=None
    Cache folder (see :func:`skdynamo.datasets.get_data_home`).
download_if_missing : bool, default=True
    Train members missing from the cache; if False, raise ``OSError`` instead.
n_jobs : int, default=None
    Parallel training jobs (joblib, one torch thread each).
verbose : bool, default=False
    Show a progress bar while training.
"""


def with_cache_parameters(fn):
    """Decorator: write the cache parameters every zoo shares into ``fn``'s docstring, at
    its line ``{cache_parameters}``."""
    if fn.__doc__:  # None under python -OO
        fn.__doc__ = fn.__doc__.replace("    {cache_parameters}\n",
                                        textwrap.indent(CACHE_PARAMETERS, "    "))
    return fn


def member_seed(seed, attempt, salt):
    """The seed rule: seed of training attempt ``attempt`` (0, then one per retry) of the
    member with seed ``seed``; ``salt`` keeps the zoos' members apart."""
    return seed * 7919 + attempt * 104729 + salt


def held_out_seed(seed):
    """Seed of the held-out data a member trained from ``seed`` is scored on."""
    return seed % 9973 + 1


def _join(words):
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def check_grid(n_seeds, **factors):
    """ValueError unless every factor of the grid is non-empty and ``n_seeds >= 1``."""
    if not all(len(values) for values in factors.values()) or n_seeds < 1:
        raise ValueError(f"{_join(list(factors))} must be non-empty and n_seeds >= 1.")


def check_names(**given):
    """ValueError naming the unknown entries of each ``name=(values, known)``.

    ``known`` is a table (shown sorted) or a tuple (shown in its order).
    """
    unknown = {name: [v for v in values if v not in known]
               for name, (values, known) in given.items()}
    if any(unknown.values()):
        shown = [list(known) if isinstance(known, tuple) else sorted(known)
                 for _, known in given.values()]
        names = list(given)
        raise ValueError(
            f"Unknown {' or '.join(f'{n} {unknown[n]}' for n in names)}; {names[0]} are "
            f"{shown[0]}{''.join(f' and {n} {s}' for n, s in zip(names[1:], shown[1:]))}.")


def grid(n_seeds, seed_offset, **factors):
    """One spec per point of ``factors x seeds`` (the last factor varies fastest, then the
    seed): a dict of the factors, then ``seed`` counted from ``seed_offset``."""
    return [{**dict(zip(factors, point)), "seed": int(s) + seed_offset}
            for *point, s in product(*factors.values(), range(n_seeds))]


def at_least(key, **minimum):
    """``learned`` and ``failure`` of :func:`build_population` for the usual rule: the
    record's ``key`` reaches the one ``name=value`` given (``min_score=0.9``)."""
    (name, value), = minimum.items()
    return dict(learned=lambda spec, record: record[key] >= value,
                failure=f"reach {name}={value}")


def train_loop(build, batch_loss, rng, *, n_steps, lr, clip=1.0):
    """The training loop of every zoo: Adam with a cosine-annealed learning rate.

    One torch seed is drawn from ``rng`` (a ``RandomState``, which then draws the
    batches); under it, in a forked torch RNG, ``build()`` makes the network (a module, or
    a tuple of modules trained together). Each of the ``n_steps`` steps minimises
    ``batch_loss(network, rng)``, with the gradient norm clipped to ``clip`` (None: not
    clipped).

    Returns
    -------
    network : what ``build`` returned, in eval mode.
    torch_seed : int
        The seed drawn from ``rng``.
    """
    torch_seed = int(rng.randint(np.iinfo(np.int32).max))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        network = build()
        modules = network if isinstance(network, tuple) else (network,)
        params = [p for m in modules for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_steps)
        for m in modules:
            m.train()
        for _ in range(n_steps):
            loss = batch_loss(network, rng)
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
    for m in modules:
        m.eval()
    return network, torch_seed


def train_with_retries(attempt, max_retries):
    """Call ``attempt(i) -> (model, record, ok)`` for ``i = 0, 1, ...`` until ``ok`` or
    ``max_retries`` retries; the last model and its record, with ``"attempts"`` (the
    number of retries used) added."""
    for i in range(max_retries + 1):
        model, record, ok = attempt(i)
        if ok:
            break
    return model, {**record, "attempts": i}


def build_population(kind, specs, settings, train, member, *, columns, learned, label,
                     failure, max_retries, flag="learned", derived=None, data_home=None,
                     download_if_missing=True, n_jobs=None, verbose=False,
                     desc="Training population"):
    """Train (or load) the members of ``specs`` and lay them out as a population Bunch.

    Parameters
    ----------
    kind : str
        Cache subfolder; a member's file is named by its spec and ``settings`` (with
        ``version=1``): see :func:`load_or_train`.
    specs : list of dict
        One JSON-serialisable spec per member (see :func:`grid`).
    settings : dict
        Settings shared by every member that change what is trained.
    train : callable
        Picklable ``train(spec) -> record`` (a dict with ``"state_dict"``).
    member : callable
        ``member(spec)``: an untrained module of the member's architecture.
    columns : sequence of str
        The Bunch arrays after ``models``, in order: each one a ``derived`` value, the
        ``flag``, a spec field or a record field (looked up in that order).
    learned : callable
        ``learned(spec, record) -> bool``: the member counts as learned (array ``flag``).
    label : callable
        ``label(spec, record) -> str``: how the warning names a member that did not learn.
    failure : str
        What it did not do, in "N members did not {failure} after {max_retries} retries".
    max_retries : int
    flag : str, default='learned'
    derived : dict of {str: callable}, default=None
        Columns computed as ``fn(spec, record)``.
    data_home, download_if_missing, n_jobs, verbose, desc
        Passed to :func:`load_or_train`.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (eval mode) and the ``columns``; one warning names the members that
        did not learn (kept, flagged ``False`` in ``flag``), never silently.
    """
    records = load_or_train(kind, specs, {**settings, "version": 1}, train,
                            data_home=data_home, download_if_missing=download_if_missing,
                            n_jobs=n_jobs, verbose=verbose, desc=desc)
    models = []
    for spec, record in zip(specs, records):
        model = member(spec)
        model.load_state_dict(record["state_dict"])
        models.append(model.eval())
    ok = np.array([bool(learned(s, r)) for s, r in zip(specs, records)], dtype=bool)
    if not ok.all():
        bad = [f"#{i} ({label(specs[i], records[i])})" for i in np.flatnonzero(~ok)]
        warnings.warn(f"{len(bad)} members did not {failure} after {max_retries} retries: "
                      f"{', '.join(bad)}. They are kept and flagged in population.{flag}.",
                      UserWarning, stacklevel=3)
    derived = dict(derived or {})

    def column(name):
        if name == flag:
            return ok
        if name in derived:
            return np.array([derived[name](s, r) for s, r in zip(specs, records)])
        return np.array([s[name] if name in s else r[name] for s, r in zip(specs, records)])

    return Bunch(models=models, **{name: column(name) for name in columns})
