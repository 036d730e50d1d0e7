"""Recording hidden-state trajectories and outputs of base models on probe inputs.

Everything torch-side stays here; the estimators receive numpy arrays wrapped in
:class:`Trajectories`.
"""

import numbers

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from ._guards import check_magnitude

__all__ = ["Trajectories", "record", "record_each", "record_population", "recurrent_layers",
           "input_width"]


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

    def __init__(self, hidden, outputs, name=None):
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
    def n_probes(self):
        return self.hidden.shape[0]

    def __repr__(self):
        return (f"Trajectories(hidden={self.hidden.shape}, outputs={self.outputs.shape}"
                + (f", name={self.name!r})" if self.name else ")"))


def recurrent_layers(model):
    """The ``nn.RNN``/``nn.GRU``/``nn.LSTM`` submodules of ``model``, in registration order."""
    return [m for m in model.modules() if isinstance(m, nn.RNNBase)]


def input_width(model):
    """Input width read off the first layer that declares one, or None."""
    for m in model.modules():
        if isinstance(m, nn.RNNBase):
            return m.input_size
        if isinstance(m, nn.Linear):
            return m.in_features
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return None


def _single_layer_outputs(rnn, x, hx):
    """Per-layer output sequences of a multi-layer RNN (each a batch-first tensor)."""
    n_dir = 2 if rnn.bidirectional else 1
    outputs = []
    inp = x
    for layer in range(rnn.num_layers):
        single = type(rnn)(inp.shape[-1], rnn.hidden_size, num_layers=1, bias=rnn.bias,
                           batch_first=True, bidirectional=rnn.bidirectional,
                           **({"proj_size": rnn.proj_size} if rnn.proj_size else {}),
                           **({"nonlinearity": rnn.nonlinearity}
                              if isinstance(rnn, nn.RNN) else {}))
        single = single.to(device=x.device, dtype=x.dtype)
        state = {}
        for name, value in rnn.named_parameters():
            for suffix in ("", "_reverse"):
                tag = f"_l{layer}{suffix}"
                if name.endswith(tag):
                    state[name[: -len(tag)] + f"_l0{suffix}"] = value
        single.load_state_dict(state)
        layer_hx = None
        if hx is not None:
            sl = slice(layer * n_dir, (layer + 1) * n_dir)
            layer_hx = tuple(h[sl] for h in hx) if isinstance(hx, tuple) else hx[sl]
        inp = single(inp, layer_hx)[0]
        outputs.append(inp)
    return outputs


def _auto_record(model, inputs):
    """Run ``model`` on ``inputs`` and capture every recurrent layer's hidden sequence.

    Multi-layer RNNs contribute every layer (re-run layer by layer with the module's own
    weights); LSTMs contribute ``h_t`` (their cell state ``c_t`` is not exposed per step by
    ``nn.LSTM``; pass a callable ``recorder`` to include it). Several recurrent submodules
    are concatenated along the unit axis; a layer called once per time step is
    concatenated along time.
    """
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError("recorder='auto' found no nn.RNN, nn.GRU or nn.LSTM submodule; pass "
                         "a callable recorder(model, inputs) -> (hidden, outputs) instead.")
    captured = {id(m): [] for m in layers}

    def hook(module, args, kwargs, output):
        # with_kwargs: `rnn(x, hx=h0)` must not lose its initial state.
        x = args[0] if args else kwargs["input"]
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise TypeError("recorder='auto' cannot record PackedSequence inputs; pass a "
                            "callable recorder.")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        if not module.batch_first:
            x = x.transpose(0, 1)
        if module.num_layers == 1:
            seqs = [output[0] if module.batch_first else output[0].transpose(0, 1)]
        else:
            seqs = _single_layer_outputs(module, x, hx)
        captured[id(module)].append(torch.cat(seqs, dim=-1))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in layers]
    try:
        out = model(inputs)
    finally:
        for h in handles:
            h.remove()
    if isinstance(out, (tuple, list)):
        out = out[0]
    per_layer = [torch.cat(captured[id(m)], dim=1) for m in layers if captured[id(m)]]
    if not per_layer:
        raise ValueError("recorder='auto': the model ran but none of its recurrent layers "
                         "was called.")
    lengths = {p.shape[1] for p in per_layer}
    if len(lengths) > 1:
        raise ValueError(f"recorder='auto': recurrent layers ran for different numbers of "
                         f"steps {sorted(lengths)}; pass a callable recorder.")
    return torch.cat(per_layer, dim=-1), out


def _to_numpy(x, what):
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    elif isinstance(x, dict):
        raise TypeError(f"its forward returned a dict (keys {list(x)[:5]}) where the {what} "
                        "were expected: recorder='auto' needs a tensor, or a tuple whose first "
                        "element is the outputs. Wrap the model so that forward returns the "
                        "output tensor, or pass recorder=callable(model, inputs) -> "
                        "(hidden, outputs).")
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"its {what} are a {type(x).__name__}, not a numeric array or tensor; "
                        "pass recorder=callable(model, inputs) -> (hidden, outputs).") from exc


def record(model, inputs, *, recorder="auto", batch_size=512):
    """Record one model's hidden trajectories and outputs on ``inputs``.

    The model runs in eval mode under ``torch.inference_mode`` on its own device; its
    training flag is restored and every hook removed afterwards, so the caller's network
    is left as it was.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : ndarray of shape (n_probes, n_timesteps, n_features)
    recorder : 'auto' or callable, default='auto'
        ``recorder(model, inputs_tensor) -> (hidden, outputs)`` overrides the hooks.
    batch_size : int, default=512
        Probes per forward pass.

    Returns
    -------
    Trajectories
    """
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    # Every submodule's flag, not just the root's: model.train(flag) would overwrite
    # submodules the caller deliberately left in the other mode (e.g. a frozen encoder).
    was_training = [(m, m.training) for m in model.modules()]
    fn = _auto_record if recorder == "auto" else recorder
    hidden, outputs = [], []
    try:
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                # A copy: a model that edits its input in place must not corrupt the
                # caller's probes or the next model's recording (issue #12).
                x = torch.as_tensor(inputs[start: start + batch_size], device=device,
                                    dtype=dtype).clone()
                h, y = fn(model, x)
                hidden.append(_to_numpy(h, "hidden"))
                outputs.append(_to_numpy(y, "outputs"))
    finally:
        for m, flag in was_training:
            m.training = flag
    return Trajectories(np.concatenate(hidden), np.concatenate(outputs))


def _record_one(index, model, inputs, recorder):
    if isinstance(model, Trajectories):
        return model
    try:
        return record(model, inputs, recorder=recorder)
    except Exception as exc:  # noqa: BLE001 - re-raised with the model's index
        raise ValueError(f"Recording model {index} ({type(model).__name__}) failed: "
                         f"{type(exc).__name__}: {exc}") from exc


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


def record_each(models, record_one, n_jobs=None):
    """``[record_one(i, models[i]) ...]`` in joblib threads, one result per listing.

    Models that share modules are recorded one after the other in the same worker; a
    model listed twice is recorded once.
    """
    groups, first = _recording_groups(models)

    def run(group):
        return [(i, record_one(i, models[i])) for i in group]

    parts = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(run)(g) for g in groups)
    done = dict(pair for part in parts for pair in part)
    return [done[j] for j in first]


def record_population(models, inputs, *, recorder="auto", n_jobs=None):
    """Record every model (``Trajectories`` pass through), in parallel threads.

    Threads, not processes: torch kernels release the GIL and modules need no pickling.
    Errors name the offending model's index. A module listed several times is recorded
    once, and models sharing a submodule are recorded in turn: two threads hooking and
    switching the same module would mix their recordings.
    """
    return record_each(models, lambda i, m: _record_one(i, m, inputs, recorder), n_jobs)


def check_trajectories(trajectories, n_probes, n_timesteps, offset=0):
    """Validate recorded trajectories against each other; errors name the model index."""
    first = trajectories[0]
    out_shape = first.outputs.shape[1:]
    for i, tr in enumerate(trajectories):
        idx = i + offset
        if tr.hidden.shape[0] != n_probes:
            raise ValueError(f"Model {idx} has {tr.hidden.shape[0]} recorded probes; expected "
                             f"{n_probes} (one per probe input).")
        if tr.hidden.shape[1] != n_timesteps:
            raise ValueError(f"Model {idx}: hidden states have {tr.hidden.shape[1]} time steps; "
                             f"the probe inputs have {n_timesteps}.")
        if tr.outputs.shape[1:] != out_shape:
            raise ValueError(f"Model {idx} has outputs of shape {tr.outputs.shape[1:]} per "
                             f"probe, but model 0 has {out_shape}: all models of a population "
                             "must share the output space.")
        for what, arr in (("hidden states", tr.hidden), ("outputs", tr.outputs)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Model {idx} produced non-finite (NaN or infinite) {what} on "
                                 "the probe inputs.")
            check_magnitude(idx, what, arr)
    return out_shape


def is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)
