"""The one train-or-load cache behind every model zoo (weights only, never pickled code)."""

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

__all__ = ["get_data_home", "load_or_train", "one_torch_thread", "spec_key"]


def get_data_home(data_home=None):
    """Folder where skdynamo caches trained populations.

    ``data_home`` wins, then the ``SKDYNAMO_DATA`` environment variable, then
    ``~/skdynamo_data``. The folder is created if needed.
    """
    path = Path(data_home or os.environ.get("SKDYNAMO_DATA", "~/skdynamo_data")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def spec_key(config):
    """Stable short hash of a JSON-serialisable configuration."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def one_torch_thread():
    """Run the block with one torch/BLAS thread: parallel workers that each use every core
    run many times slower than one."""
    with threadpool_limits(1):
        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n_threads)


def _train_one(train, spec):
    with one_torch_thread():
        return train(spec)


def load_or_train(kind, specs, key_extra, train, *, data_home=None, download_if_missing=True,
                  n_jobs=None, verbose=False, desc="Training population"):
    """One cache record per spec, training (in parallel) the members not cached yet.

    Parameters
    ----------
    kind : str
        Subfolder of the data home.
    specs : list of dict
        One JSON-serialisable description per member; with ``key_extra`` it names the file.
    key_extra : dict
        Settings shared by all members that also change what is trained.
    train : callable
        ``train(spec) -> dict`` with a ``"state_dict"`` and plain values; run in joblib
        workers with one torch thread each (so it must be picklable).

    Returns
    -------
    records : list of dict
        Loaded with ``torch.load(weights_only=True)``: a cache file never runs code.
    """
    folder = get_data_home(data_home) / kind
    folder.mkdir(exist_ok=True)
    paths = [folder / f"{spec_key({**spec, **key_extra})}.pt" for spec in specs]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo and not download_if_missing:
        raise OSError(f"{len(todo)} members are not cached in {folder} and "
                      "download_if_missing=False.")
    if todo:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_train_one)(train, specs[i]) for i in todo)
        if verbose:
            from tqdm.auto import tqdm
            results = tqdm(results, total=len(todo), desc=desc, unit="model")
        for i, record in zip(todo, results):
            tmp = paths[i].with_suffix(".tmp")
            torch.save({**record, "spec": json.dumps(specs[i])}, tmp)
            os.replace(tmp, paths[i])  # atomic: a killed run leaves no half-written file
    return [torch.load(p, weights_only=True) for p in paths]
