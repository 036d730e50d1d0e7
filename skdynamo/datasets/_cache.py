"""The one train-or-load cache behind every model zoo (weights only, never pickled code)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from .._persistence import _first_line

__all__ = ["get_data_home", "load_or_train", "one_torch_thread", "spec_key"]


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Return the folder where skdynamo caches trained populations.

    ``data_home`` wins, then the ``SKDYNAMO_DATA`` environment variable, then
    ``~/skdynamo_data``. The folder is created if needed.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder to use; None for ``SKDYNAMO_DATA`` or the default.

    Returns
    -------
    pathlib.Path
        The folder, which exists.

    Raises
    ------
    OSError
        If the folder cannot be created (a file is in the way, or it is read-only); the
        message names the folder and the setting that chose it.

    Examples
    --------
    >>> import tempfile
    >>> from skdynamo.datasets import get_data_home
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     get_data_home(tmp).is_dir()
    True
    """
    source = ("data_home" if data_home else
              "SKDYNAMO_DATA" if os.environ.get("SKDYNAMO_DATA") else "the default")
    path = Path(data_home or os.environ.get("SKDYNAMO_DATA", "~/skdynamo_data")).expanduser()
    _make_folder(path, source)
    return path


def _make_folder(path, source=None):
    """mkdir -p, or an OSError saying which folder (and which setting) is unusable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        what = (f"the data folder {str(path)!r} (set by {source})" if source
                else f"the cache folder {str(path)!r}")
        blocker = next((p for p in (path, *path.parents) if p.exists()), None)
        reason = (f"{str(blocker)!r} is a file, not a folder"
                  if blocker is not None and not blocker.is_dir() else exc.strerror or exc)
        raise OSError(exc.errno, f"skdynamo cannot use {what}: {reason}. Point SKDYNAMO_DATA "
                      "or data_home= at a writable folder.") from None


def _check_writable(folder):
    """Fail before training, not after it, when the cache cannot be written."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError(exc.errno, f"The skdynamo data folder {str(folder)!r} is not writable "
                      f"({exc.strerror or exc}), so the trained members cannot be cached. "
                      "Point SKDYNAMO_DATA or data_home= at a writable folder.") from None


def _load_record(path, spec):
    """A cache record, or None (with a warning naming the file) when it is unreadable or
    foreign: it is then retrained. Never loaded with weights_only=False."""
    try:
        with warnings.catch_warnings():
            # torch's "Detected pickle protocol ..." on a foreign pickle: reported below.
            warnings.simplefilter("ignore", UserWarning)
            record = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        reason = f"unreadable ({_first_line(exc)})"
    else:
        if isinstance(record, dict) and "state_dict" in record and \
                record.get("spec", spec) == spec:
            return record
        reason = "not a record of this member (a foreign file)"
    warnings.warn(f"skdynamo cache entry {str(path)!r} is {reason}; retraining it.",
                  UserWarning, stacklevel=3)
    return None


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
        Loaded with ``torch.load(weights_only=True)``: a cache file never runs code. An
        unreadable or foreign entry is reported by path (a warning) and retrained.
    """
    folder = get_data_home(data_home) / kind
    _make_folder(folder)
    paths = [folder / f"{spec_key({**spec, **key_extra})}.pt" for spec in specs]
    records = [_load_record(p, json.dumps(spec)) if p.exists() else None
               for p, spec in zip(paths, specs)]
    todo = [i for i, r in enumerate(records) if r is None]
    if todo and not download_if_missing:
        raise OSError(f"{len(todo)} members are not cached in {folder} and "
                      "download_if_missing=False.")
    if todo:
        _check_writable(folder)
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_train_one)(train, specs[i]) for i in todo)
        if verbose:
            from tqdm.auto import tqdm
            results = tqdm(results, total=len(todo), desc=desc, unit="model")
        for i, record in zip(todo, results):
            tmp = paths[i].with_suffix(".tmp")
            torch.save({**record, "spec": json.dumps(specs[i])}, tmp)
            os.replace(tmp, paths[i])  # atomic: a killed run leaves no half-written file
            records[i] = torch.load(paths[i], weights_only=True)
    return records
