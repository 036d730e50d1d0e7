"""Save and load fitted weights without pickling code.

``pickle``/``joblib`` round-trip every skdynamo estimator, but loading such a file runs
whatever code it names: trusted files only. :func:`save_weights` writes a file that
:func:`load_weights` reads with ``torch.load(weights_only=True)``: tensors, numbers,
strings, lists and dicts, nothing that can execute. What a file holds:

* a :class:`DynamoEmbedder`: its constructor parameters, the meta-model's ``state_dict``
  and constructor sizes, and every fitted array; it loads back as a fitted embedder whose
  ``transform`` gives the same result;
* a :class:`DynamoAverager` / :class:`DynamoSemiSupervised` (or a
  :class:`~skdynamo.StandaloneRNN` / :class:`~skdynamo.StandaloneCNN`): the network they
  built (``averaged_model_`` / ``model_``), which loads back as a ``StandaloneRNN`` (or
  ``StandaloneCNN`` for a population of CNNs).
"""

import io
import json
import os
import pickle
import warnings
import zipfile
from typing import Any

import numpy as np
import torch
from sklearn.utils import Bunch

from ._guards import check_device

__all__ = ["save_weights", "load_weights", "save_estimator", "load_estimator", "FORMAT",
           "FORMAT_VERSION"]

FORMAT = "skdynamo-weights"
#: Bumped when a file written by this version cannot be read by older ones. 2: recurrent
#: meta-models record their ``conditioning`` (format 1 files, without it, build the
#: constructor's default, ``'concat'``, which is what they were).
FORMAT_VERSION = 2

_PLAIN = (type(None), bool, int, float, str)


def _version():
    from . import __version__
    return __version__


# ------------------------------------------------------------------ encoding
def _encode(value, where):
    """numpy/tuples/Bunch -> what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, _PLAIN):
        # Exact builtins only: a str/int subclass (torch's TorchVersion) pickles its class.
        return value if value is None else next(
            t(value) for t in (bool, int, float, str) if isinstance(value, t))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{where} is an object array, which a weights file cannot hold.")
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.detach().cpu().clone()}
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where} has non-string keys.")
        kind = "__bunch__" if isinstance(value, Bunch) else "__dict__"
        return {kind: {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    raise TypeError(f"{where} is a {type(value).__name__}, which a weights file cannot hold.")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return value["__ndarray__"].numpy().copy()
    if "__tensor__" in value:
        return value["__tensor__"]
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__bunch__" in value:
        return Bunch(**{k: _decode(v) for k, v in value["__bunch__"].items()})
    if "__dict__" in value:
        return {k: _decode(v) for k, v in value["__dict__"].items()}
    raise ValueError(f"unknown entry {sorted(value)}")


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def _module_record(module):
    """A module's ``config`` (its constructor arguments) and ``state_dict``."""
    return {"config": {k: _plain(v) for k, v in module.config.items()},
            "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}}


def _standalone_classes():
    from .families import FAMILIES
    return {f.standalone_class.__name__: f.standalone_class for f in FAMILIES.values()}


def _embedder_record(est):
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(est)
    params, unstored = {}, []
    for name, value in est.get_params(deep=False).items():
        if (name == "callbacks" and not value) or name == "accelerator":
            params[name] = None  # an accelerator is this run's: the file loads without one
            continue
        try:
            params[name] = _encode(value, f"parameter {name}")
        except TypeError:
            unstored.append(name)    # a callable recorder, callbacks: code, never stored
    fitted = {name: _encode(value, f"attribute {name}")
              for name, value in est._fitted_state().items()}
    return {
        "params": params, "unstored_params": unstored, "fitted": fitted,
        "meta_kind": est.family_.name,
        "meta_model": _module_record(est.meta_model_),
        "history": json.dumps(list(est.history_), default=str),
    }


# ------------------------------------------------------------------ public API
def save_weights(estimator: Any, path: str | os.PathLike) -> None:
    """Write a fitted estimator's weights to ``path`` in a format that runs no code on load.

    Parameters
    ----------
    estimator : DynamoEmbedder, DynamoAverager, DynamoSemiSupervised, StandaloneRNN or StandaloneCNN
        Fitted. For an averager or a semi-supervised estimator the network it built is
        saved (``averaged_model_`` / ``model_``).
    path : str or path-like
        Written atomically (a partial file never replaces a good one).

    Notes
    -----
    Constructor parameters that are code (a callable ``recorder``, ``callbacks``) are not
    stored; :func:`load_weights` asks for them back.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> from skdynamo import DynamoEmbedder, save_weights, load_weights
    >>> from skdynamo.datasets import RecurrentNetwork
    >>> _ = torch.manual_seed(0)
    >>> models = [RecurrentNetwork(3, 3, hidden_size=8) for _ in range(3)]
    >>> emb = DynamoEmbedder(hidden_size=8, max_epochs=2, random_state=0).fit(models)
    >>> path = os.path.join(tempfile.mkdtemp(), "embedder.pt")
    >>> save_weights(emb, path)
    >>> import numpy as np
    >>> np.array_equal(load_weights(path).transform(models), emb.transform(models))
    True
    """
    from ._embedder import DynamoEmbedder

    standalone = tuple(_standalone_classes().values())
    record = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "skdynamo_version": _version(), "torch_version": str(torch.__version__)}
    if isinstance(estimator, DynamoEmbedder):
        record.update(kind="DynamoEmbedder", embedder=_embedder_record(estimator))
    else:
        net = estimator
        if not isinstance(estimator, standalone):
            from sklearn.utils.validation import check_is_fitted
            net = getattr(estimator, "averaged_model_", getattr(estimator, "model_", None))
            if not isinstance(net, standalone):
                if hasattr(estimator, "fit"):
                    check_is_fitted(estimator)
                raise TypeError(
                    f"save_weights takes a DynamoEmbedder, DynamoAverager, "
                    "DynamoSemiSupervised, StandaloneRNN or StandaloneCNN, got "
                    f"{type(estimator).__name__}. "
                    "Save other estimators with joblib.dump (and load them from trusted "
                    "sources only).")
        name = type(net).__name__
        record.update(kind=name, module=_module_record(net),
                      source=type(estimator).__name__)
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(record, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


#: How pickles and joblib's compressed pickles begin (zlib, gzip, bz2, xz, lz4).
_PICKLE_MAGIC = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x04\x22\x4d\x18")


def _pickled_file_error(path):
    return ValueError(
        f"{path!r} holds pickled Python objects (a pickle or joblib file), not weights "
        "written by skdynamo.save_weights; load_weights never unpickles, as unpickling runs "
        "the code the file names. If you trust its source, load it with "
        "skdynamo.load_estimator(path, trusted=True).")


def _first_line(exc):
    """torch's message, unless it is its advice to load with weights_only=False."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return type(exc).__name__ if "weights_only" in msg else msg


def _read(path):
    try:
        with warnings.catch_warnings():
            # "Detected pickle protocol 4 ...": a foreign pickle, reported below instead.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile,
            ValueError, KeyError, io.UnsupportedOperation) as exc:
        if "GLOBAL" in str(exc) or not zipfile.is_zipfile(path) and _starts_as_pickle(path):
            # a class or function met by torch's weights-only unpickler, or a raw pickle
            raise _pickled_file_error(path) from None
        raise ValueError(f"{path!r} is not a readable skdynamo weights file (corrupt or "
                         f"truncated): {_first_line(exc)}") from None


def _starts_as_pickle(path):
    with open(path, "rb") as f:
        return f.read(8).startswith(_PICKLE_MAGIC)


def _check_record(record, path):
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path!r} is a torch file but not a skdynamo weights file (no "
                         f"'format': {FORMAT!r} entry); write one with skdynamo.save_weights.")
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path!r} is damaged: its 'format_version' must be an integer, got "
                         f"{version!r} ({type(version).__name__}); save_weights writes "
                         f"{FORMAT_VERSION}. Re-save the estimator with save_weights.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path!r} was written by skdynamo {record.get('skdynamo_version', '?')} in "
            f"weights format {version!r}; this skdynamo ({_version()}) reads formats up to "
            f"{FORMAT_VERSION}. Upgrade skdynamo to load it.")
    if record.get("kind") != "DynamoEmbedder" and record.get("kind") not in _standalone_classes():
        raise ValueError(f"{path!r} holds an unknown kind of weights: {record.get('kind')!r}.")


def _build_module(cls, record, path):
    try:
        module = cls(**record["config"])
        module.load_state_dict(record["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path!r}: the stored {cls.__name__} weights do not match their "
                         f"configuration (damaged file?): {msg}") from None
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _check_fitted_shapes(fitted, n_components, meta, family, path):
    """The stored arrays must fit each other and the meta-model: a tampered or damaged
    file is refused here, by attribute, not with a shape error inside transform later."""
    def damaged(name, got, expected):
        return ValueError(f"{path!r} is damaged: its {name} has {got}, but {expected}. "
                          "Re-save the estimator with save_weights, or refit.")

    n_models = fitted.get("n_models_")
    emb = fitted.get("embeddings_")
    if not isinstance(n_models, int) or not isinstance(emb, np.ndarray):
        raise damaged("record", "no n_models_/embeddings_ entry", "a fitted embedder has both")
    if emb.shape != (n_models, meta.n_components) or meta.n_components != n_components:
        raise damaged("embeddings_", f"shape {emb.shape}",
                      f"n_models_={n_models} and the meta-model's n_components="
                      f"{meta.n_components} (parameter n_components={n_components}) give "
                      f"{(n_models, meta.n_components)}")
    width = meta.state_size if meta.per_step_maps else meta.hidden_size
    maps = fitted.get("maps_")
    if (not isinstance(maps, tuple) or len(maps) != 2
            or not all(isinstance(m, np.ndarray) for m in maps)
            or maps[0].shape[:1] != (n_models,) or maps[0].shape[-1:] != (width,)
            or maps[0].shape[:-1] != maps[1].shape):
        raise damaged("maps_", "shapes " + str([np.shape(m) for m in maps or ()]),
                      f"(weight (n_models={n_models}, ..., k, {width}), bias (n_models, ..., k))"
                      " are expected")
    probes = fitted.get("probe_inputs_")
    expected = family.probe_shape(meta)
    rank = family.probe_rank
    if (not isinstance(probes, np.ndarray) or probes.ndim != rank
            or probes.shape[rank - len(expected):] != expected):
        raise damaged("probe_inputs_", f"shape {np.shape(probes)}",
                      f"the meta-model takes probes ending in {expected}")
    for name in ("_train_idx", "_valid_idx"):
        idx = fitted.get(name)
        if (not isinstance(idx, np.ndarray) or idx.ndim != 1 or idx.dtype.kind not in "iu"
                or (idx.size and (idx.min() < 0 or idx.max() >= len(probes)))):
            raise damaged(name, f"{np.shape(idx)} entries", f"indices into the "
                          f"{len(probes)} probes are expected")
    for key, value in (fitted.get("emulation_scores_") or {}).items():
        if np.shape(value) != (n_models,):
            raise damaged(f"emulation_scores_[{key!r}]", f"shape {np.shape(value)}",
                          f"one score per model ({n_models}) is expected")


def load_weights(path: str | os.PathLike, **params: Any) -> Any:
    """Load what :func:`save_weights` wrote, with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_weights`.
    **params
        Constructor parameters that were not stored because they are code (a callable
        ``recorder``, ``callbacks``), or overrides such as ``device``/``n_jobs``.

    Returns
    -------
    DynamoEmbedder, StandaloneRNN or StandaloneCNN
        A fitted embedder (``transform`` works, ``fit`` retrains from scratch), or the
        network an averager / semi-supervised estimator built, on the CPU.

    Raises
    ------
    ValueError
        The file is corrupt, not a skdynamo weights file, or from a newer format.
    """
    from ._embedder import DynamoEmbedder
    from .families import FAMILIES

    path = os.fspath(path)
    record = _read(path)
    _check_record(record, path)
    standalone = _standalone_classes()
    if record["kind"] in standalone:
        if params:
            raise TypeError(f"A {record['kind']} takes no parameters; got {sorted(params)}.")
        return _build_module(standalone[record["kind"]], record["module"], path)
    rec = record["embedder"]
    missing = [p for p in rec["unstored_params"] if p not in params]
    if missing:
        raise ValueError(f"{path!r} was saved from an embedder whose parameters {missing} are "
                         "code, which a weights file does not store; pass them back: "
                         f"load_weights(path, {missing[0]}=...).")
    try:
        est_params = {k: _decode(v) for k, v in rec["params"].items()}
        fitted = {k: _decode(v) for k, v in rec["fitted"].items()}
    except (KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path!r}: damaged embedder record ({exc}).") from None
    est_params.update(params)
    est = DynamoEmbedder()
    try:
        est.set_params(**est_params)
    except ValueError as exc:
        raise ValueError(f"{path!r} stores parameters this skdynamo does not know "
                         f"({str(exc).splitlines()[0]}); it may come from another "
                         "version.") from None
    if "meta_kind" not in rec:
        # Format 1 as written before model families existed: always a recurrent fit, whose
        # output loss was the parameter itself ('mse' or 'kl'; 'auto' is 'mse' for it).
        rec["meta_kind"] = "rnn"
        loss = est_params.get("output_loss")
        fitted.update(_kind="rnn", _n_steps="max", _output_loss="mse" if loss == "auto" else loss)
    family = FAMILIES.get(rec.get("meta_kind"))
    if family is None or fitted.get("_kind") != family.name:
        raise ValueError(f"{path!r}: damaged embedder record (unknown model family "
                         f"{rec.get('meta_kind')!r}; known: {sorted(FAMILIES)}).")
    meta = _build_module(family.meta_class, rec["meta_model"], path)
    fitted.pop("_device", None)  # written by format 1 files of skdynamo 0.1
    _check_fitted_shapes(fitted, est.n_components, meta, family, path)
    try:
        est._set_fitted_state(fitted, meta, check_device(est.device))
    except KeyError as exc:
        raise ValueError(f"{path!r}: damaged embedder record (no {exc} entry).") from None
    if rec.get("history") is not None:
        from skorch.history import History
        est.history_ = History(json.loads(rec["history"]))
    return est


# ------------------------------------------------------------------ whole estimators (joblib)
_PICKLE_FORMAT = "skdynamo-estimator"


def save_estimator(estimator: Any, path: str | os.PathLike) -> None:
    """``joblib.dump`` a (fitted) estimator with the versions that wrote it.

    Any estimator works (also a Pipeline or a grid search holding skdynamo estimators).
    Reading the file back runs code: use :func:`load_estimator` on trusted files only, and
    :func:`save_weights` for files that are shared.

    Parameters
    ----------
    estimator : object
        The estimator to save, fitted or not.
    path : str or path-like
        Written atomically (a partial file never replaces a good one).
    """
    import joblib
    import sklearn
    record = {"format": _PICKLE_FORMAT, "skdynamo_version": _version(),
              "sklearn_version": sklearn.__version__, "torch_version": str(torch.__version__),
              "estimator": estimator}
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        joblib.dump(record, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_estimator(path: str | os.PathLike, *, trusted: bool = False) -> Any:
    """Load what :func:`save_estimator` (or a plain ``joblib.dump``) wrote.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_estimator` or ``joblib.dump``.
    trusted : bool, default=False
        Unpickling runs the code the file names, so it must be asked for explicitly:
        ``trusted=True`` only for files you (or someone you trust) wrote.

    Returns
    -------
    object
        The estimator that was saved.

    Raises
    ------
    ValueError
        ``trusted`` is not set; the file is corrupt or not a pickle; or it was written by
        another skdynamo version and cannot be unpickled by this one.
    """
    import joblib
    path = os.fspath(path)
    if trusted is not True:
        raise ValueError("load_estimator unpickles the file, which runs the code it names; "
                         "pass trusted=True for files from a trusted source, or share "
                         "weights with save_weights/load_weights, which run no code.")
    try:
        record = joblib.load(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (ModuleNotFoundError, AttributeError, ImportError) as exc:
        raise ValueError(
            f"{path!r} names code this installation lacks ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}): it was probably written by "
            f"another skdynamo version (this is {_version()}). Load it with that version "
            "and re-save with save_weights, or refit.") from None
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways on a bad file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path!r} is not a readable pickle/joblib file (corrupt or "
                         f"truncated): {msg}") from None
    if isinstance(record, dict) and record.get("format") == _PICKLE_FORMAT:
        written = record.get("skdynamo_version")
        if written != _version():
            warnings.warn(f"{path!r} was written by skdynamo {written}; this is "
                          f"{_version()}. Check the results, or refit.", UserWarning,
                          stacklevel=2)
        return record["estimator"]
    return record
