"""Recording base models on probe inputs: what every model family shares.

:class:`Trajectories` (the recorded behaviour of one model, a sample DYNAMO can embed),
the one recording context (:func:`recording`, :func:`probe_batches`: the model's own
device, eval mode, ``torch.inference_mode``, every training flag restored, the probes
copied batch by batch) and the one population loop (:func:`record_each`: joblib threads,
or the workers of another joblib backend such as dask, de-duplication, models sharing
parts recorded in turn, errors naming the model). The
family modules (``skdynamo.families``) write only what differs: which hooks, what is kept.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from joblib import Parallel, delayed
from joblib.parallel import get_active_backend
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

__all__ = ["Trajectories", "RECURRENT_MODULES", "input_width", "recording", "probe_batches",
           "record_each"]


class Trajectories:
    """Recorded behaviour of one model on the probe inputs: a sample DYNAMO can embed.

    Use it to embed networks from other frameworks, or recordings made elsewhere.

    Parameters
    ----------
    hidden : array-like of shape (n_probes, n_timesteps, n_units)
        Hidden states at every time step (for CNNs, every layer).
    outputs : array-like of shape (n_probes, n_timesteps, n_outputs) or (n_probes, n_outputs)
        Outputs at every step, or only at the end of the sequence (a sequence
        classifier); every model of a population must use the same form.
    name : str, default=None
        Optional label used in error messages.

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo import Trajectories
    >>> t = Trajectories(np.zeros((4, 10, 8)), np.zeros((4, 10, 3)))
    >>> t.hidden.shape, t.outputs.shape
    ((4, 10, 8), (4, 10, 3))
    """

    def __init__(self, hidden: np.ndarray, outputs: np.ndarray, name: str | None = None) -> None:
        self.hidden = np.asarray(hidden, dtype=np.float32)
        self.outputs = np.asarray(outputs, dtype=np.float32)
        self.name = name
        if self.hidden.ndim != 3:
            raise ValueError("Trajectories.hidden must have shape (n_probes, n_timesteps, "
                             f"n_units); got an array of shape {self.hidden.shape}.")
        if self.outputs.ndim not in (2, 3):
            raise ValueError("Trajectories.outputs must have shape (n_probes, n_timesteps, "
                             "n_outputs) or (n_probes, n_outputs); got an array of shape "
                             f"{self.outputs.shape}.")
        if self.outputs.shape[0] != self.hidden.shape[0]:
            raise ValueError(f"Trajectories: hidden has {self.hidden.shape[0]} probes but "
                             f"outputs has {self.outputs.shape[0]}.")
        if self.outputs.ndim == 3 and self.outputs.shape[1] != self.hidden.shape[1]:
            raise ValueError(f"Trajectories: hidden has {self.hidden.shape[1]} time steps but "
                             f"outputs has {self.outputs.shape[1]}.")

    @property
    def n_probes(self) -> int:
        """Number of probe inputs recorded."""
        return self.hidden.shape[0]

    def __repr__(self):
        return (f"Trajectories(hidden={self.hidden.shape}, outputs={self.outputs.shape}"
                + (f", name={self.name!r})" if self.name else ")"))


#: Recurrent modules recorded and analysed as such: layers that run whole sequences and
#: cells that run one step per call (a Python loop over time).
RECURRENT_MODULES = (nn.RNNBase, nn.RNNCellBase)


def input_width(model):
    """Input width read off the first layer that declares one, or None."""
    for m in model.modules():
        if isinstance(m, RECURRENT_MODULES):
            return m.input_size
        if isinstance(m, nn.Linear):
            return m.in_features
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return None


def model_device(model):
    """Device and dtype of ``model``'s first parameter (CPU float32 without parameters)."""
    try:
        param = next(model.parameters())
        return param.device, param.dtype
    except StopIteration:
        return torch.device("cpu"), torch.float32


@contextmanager
def recording(model):
    """Run ``model`` for recording: eval mode, ``torch.inference_mode``; afterwards every
    submodule's training flag is restored, so the caller's network is left as it was."""
    # Every submodule's flag, not just the root's: model.train(flag) would overwrite
    # submodules the caller deliberately left in the other mode (e.g. a frozen encoder).
    was_training = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.inference_mode():
            yield
    finally:
        for m, flag in was_training:
            m.training = flag


def probe_batches(model, inputs, batch_size):
    """``inputs`` in batches of ``batch_size``, as tensors on ``model``'s device and dtype.

    Each batch is a copy: a model that edits its input in place must not corrupt the
    caller's probes or the next model's recording.
    """
    device, dtype = model_device(model)
    for start in range(0, len(inputs), batch_size):
        yield torch.as_tensor(inputs[start: start + batch_size], device=device,
                              dtype=dtype).clone()


def _recording_groups(models):
    """Distinct models grouped so that models sharing a submodule, parameter or buffer fall
    in one group (connected components of the model-part graph).

    Two threads hooking, switching to eval mode and running the same module at once
    would mix their recordings and could leave its training flag wrong. Returns
    ``(groups, first)``: lists of model indices (the first listing of each distinct
    object only) and, for each listing, the index of its object's first listing.
    """
    first, seen, parts, edges = [], {}, {}, []
    for i, m in enumerate(models):
        first.append(seen.setdefault(id(m), i))
        if first[-1] == i and isinstance(m, torch.nn.Module):
            for part in (*m.modules(), *m.parameters(), *m.buffers()):
                edges.append((i, parts.setdefault(id(part), len(parts))))
    n = len(models)
    rows = [i for i, _ in edges] + list(range(n))
    cols = [n + p for _, p in edges] + list(range(n))
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + len(parts),) * 2)
    _, label = connected_components(graph, directed=False)
    groups = {}
    for i in sorted(set(first)):
        groups.setdefault(label[i], []).append(i)
    return list(groups.values()), first


def _record_named(record_one, index, model, probes):
    """``record_one(index, model, probes)``; an error is re-raised naming the model."""
    try:
        return record_one(index, model, probes)
    except Exception as exc:  # noqa: BLE001 - re-raised with the model's index
        raise ValueError(f"Recording model {index} ({type(model).__name__}) failed: "
                         f"{type(exc).__name__}: {exc}") from exc


class _Pickled:
    """An object pickled in the caller's process, to be loaded in a worker's.

    Backends that run tasks in other processes (loky, dask) pickle the tasks themselves,
    but joblib's dask backend does so in its event loop, where a member that cannot be
    pickled stops the call without an error. Pickling each member here first turns that
    into an error naming the member; loading it in the task names the member whose class
    a worker cannot import. cloudpickle (a joblib dependency) sends classes defined in a
    script or notebook by value, as loky and dask do.
    """

    __slots__ = ("data", "what")

    def __init__(self, obj, what):
        import cloudpickle

        try:
            self.data = cloudpickle.dumps(obj)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the object
            raise TypeError(
                f"{what} cannot be pickled, which the active joblib backend needs to send it "
                f"to its workers: {type(exc).__name__}: {exc}. Record in this process (the "
                "default thread backend), pass a Trajectories recorded beforehand, or make "
                "it picklable.") from exc
        self.what = what

    def load(self):
        import pickle

        try:
            return pickle.loads(self.data)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the object
            raise ValueError(
                f"{self.what} could not be unpickled on a joblib worker: "
                f"{type(exc).__name__}: {exc}. Every worker must be able to import the "
                "modules that define it (or register them with "
                "cloudpickle.register_pickle_by_value).") from exc


def _record_group(record_one, probes, then, indices, *members):
    """Record one group of members in turn: the unit of work of one joblib task.

    A module-level function whose arguments are exactly what the task needs: a backend
    that sends work to other processes or machines (loky, dask) ships each member once,
    in its own task, and the probes once per call (joblib's dask backend scatters a
    large array argument to the workers once and shares it between tasks), never the
    whole population with every task.
    """
    if isinstance(record_one, _Pickled):
        record_one, then = record_one.load(), None if then is None else then.load()
    members = [m.load() if isinstance(m, _Pickled) else m for m in members]
    out = []
    for i, m in zip(indices, members):
        recording = _record_named(record_one, i, m, probes)
        out.append((i, recording if then is None else then(i, recording)))
    return out


def record_each(models, record_one, probes, n_jobs=None, then=None):
    """``[record_one(i, models[i], probes) ...]`` in joblib workers, one result per listing.

    ``Trajectories`` pass through unrecorded (they are never sent to a worker); an error
    names the failing model's index. ``then(i, recording)``, when given, is applied in
    the worker to each recording as soon as it is made (and, in the caller, to
    passed-through ``Trajectories``), and its result kept instead: a reduction there means
    the raw recordings are never all held at once. Threads by default (``prefer="threads"``): torch
    kernels release the GIL and modules need no pickling. Under a joblib backend whose
    workers are other processes (``joblib.parallel_config(backend="loky")``, or
    ``"dask"`` for a cluster) each group of members is one task that carries those
    members, pickled here (an error names a member that cannot be pickled), and
    ``record_one`` (a module-level function, a ``functools.partial`` of one, or a bound
    method), and returns their recordings (``Trajectories`` of float32 arrays). Models
    that share modules form one group, recorded one after the other in the same worker
    (two threads hooking and switching the same module would mix their recordings); a
    model listed twice is recorded once.
    """
    groups, first = _recording_groups(models)
    done = {i: models[i] for g in groups for i in g if isinstance(models[i], Trajectories)}
    groups = [[i for i in g if i not in done] for g in groups]
    groups = [g for g in groups if g]
    if then is not None:
        done = {i: then(i, r) for i, r in done.items()}
    ship = not getattr(get_active_backend(prefer="threads")[0], "uses_threads", False)
    if ship and groups:
        record_one = _Pickled(record_one, "The recorder (recorder=)")
        then = None if then is None else _Pickled(then, "The reduction of recordings")
        members = {i: _Pickled(models[i], f"Model {i} ({type(models[i]).__name__})")
                   for g in groups for i in g}
    else:
        members = models
    parts = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_record_group)(record_one, probes, then, g, *(members[i] for i in g))
        for g in groups)
    done.update(pair for part in parts for pair in part)
    return [done[j] for j in first]
