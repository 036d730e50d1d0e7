"""The recurrent family: networks holding ``nn.RNN``/``nn.GRU``/``nn.LSTM`` layers, or
``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell`` cells called once per time step.

Time steps are time. Each member's hidden state at every step is recorded by forward
hooks (:func:`record`), reduced by PCA (:func:`skdynamo._targets.reduce_hidden`) and
emulated by a :class:`~skdynamo.nn.ConditionedRNN`; the meta-model at one embedding bakes
into a :class:`~skdynamo.StandaloneRNN`.
"""

from functools import partial

import numpy as np
import torch
from sklearn.utils import Bunch
from torch import nn

from .._augment import augment_sequences
from .._guards import check_magnitude
from .._recording import (RECURRENT_MODULES, Trajectories, input_width, probe_batches,
                          record_each, recording)
from .._standalone import StandaloneRNN
from .._targets import pad_targets, reduce_hidden
from ..nn import ConditionedRNN
from ._base import ModelFamily, check_output_shapes

__all__ = ["RecurrentFamily", "record", "record_population", "recurrent_layers",
           "check_trajectories", "check_trajectory", "check_output_shapes"]


def recurrent_layers(model):
    """The ``nn.RNN``/``nn.GRU``/``nn.LSTM`` layers and ``nn.RNNCell``/``nn.GRUCell``/
    ``nn.LSTMCell`` cells of ``model``, in registration order."""
    return [m for m in model.modules() if isinstance(m, RECURRENT_MODULES)]


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
    are concatenated along the unit axis; a layer called once per time step, and a cell
    (``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell``, whose ``h`` is kept), are concatenated
    along time.
    """
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError("recorder='auto' found no nn.RNN, nn.GRU or nn.LSTM layer and no "
                         "nn.RNNCell, nn.GRUCell or nn.LSTMCell; pass a callable "
                         "recorder(model, inputs) -> (hidden, outputs) instead (for a model "
                         "whose forward returns (outputs, hidden_states): recorder=lambda "
                         "model, x: model(x)[::-1]).")
    captured = {id(m): [] for m in layers}

    def hook(module, args, kwargs, output):
        if isinstance(module, nn.RNNCellBase):
            # One step: (batch, hidden), or (h, c) for an LSTMCell.
            h = output[0] if isinstance(output, tuple) else output
            captured[id(module)].append(h.reshape(h.shape[0], 1, -1) if h.ndim > 1
                                        else h.reshape(1, 1, -1))
            return
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
    fn = _auto_record if recorder == "auto" else recorder
    hidden, outputs = [], []
    with recording(model):
        for x in probe_batches(model, inputs, batch_size):
            h, y = fn(model, x)
            hidden.append(_to_numpy(h, "hidden"))
            outputs.append(_to_numpy(y, "outputs"))
    return Trajectories(np.concatenate(hidden), np.concatenate(outputs))


def record_population(models, inputs, *, recorder="auto", n_jobs=None):
    """Record every model (``Trajectories`` pass through), in parallel threads.

    Threads, not processes: torch kernels release the GIL and modules need no pickling.
    Errors name the offending model's index. A module listed several times is recorded
    once, and models sharing a submodule are recorded in turn: two threads hooking and
    switching the same module would mix their recordings.
    """
    return record_each(models, partial(_record_indexed, recorder=recorder), inputs, n_jobs)


def _record_indexed(index, model, inputs, recorder="auto"):
    """:func:`record` with the ``record_each`` signature (picklable for process backends)."""
    return record(model, inputs, recorder=recorder)


def check_trajectory(index, trajectory, n_probes, n_timesteps):
    """Validate one recorded trajectory against the probes; errors name model ``index``."""
    tr = trajectory
    if tr.hidden.shape[0] != n_probes:
        raise ValueError(f"Model {index} has {tr.hidden.shape[0]} recorded probes; expected "
                         f"{n_probes} (one per probe input).")
    if tr.hidden.shape[1] != n_timesteps:
        raise ValueError(f"Model {index}: hidden states have {tr.hidden.shape[1]} time steps; "
                         f"the probe inputs have {n_timesteps}.")
    for what, arr in (("hidden states", tr.hidden), ("outputs", tr.outputs)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"Model {index} produced non-finite (NaN or infinite) {what} on "
                             "the probe inputs.")
        check_magnitude(index, what, arr)


def check_trajectories(trajectories, n_probes, n_timesteps, offset=0):
    """Validate recorded trajectories against each other; errors name the model index."""
    for i, tr in enumerate(trajectories):
        check_trajectory(i + offset, tr, n_probes, n_timesteps)
    return check_output_shapes([t.outputs for t in trajectories], offset)


@torch.no_grad()
def bake_rnn(meta, theta):
    """Fold ``theta`` into a :class:`~skdynamo.StandaloneRNN` equal to ``meta`` at it."""
    net = StandaloneRNN(meta.n_inputs, meta.n_outputs, meta.hidden_size,
                        meta.cell).to(theta.device)
    plain = meta.plain_weights(theta)
    net.rnn.weight_ih_l0.copy_(plain["weight_ih"])
    net.rnn.weight_hh_l0.copy_(meta.rnn.weight_hh_l0)
    net.rnn.bias_ih_l0.copy_(plain["bias_ih"])
    net.rnn.bias_hh_l0.copy_(meta.rnn.bias_hh_l0)
    net.readout.weight.copy_(plain["readout_weight"])
    net.readout.bias.copy_(plain["readout_bias"])
    state0 = meta.initial_state(theta[None])
    if meta.cell == "lstm":
        net.h0.copy_(state0[0][0, 0])
        net.c0.copy_(state0[1][0, 0])
    else:
        net.h0.copy_(state0[0, 0])
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class RecurrentFamily(ModelFamily):
    """Recurrent networks: probes ``(n_probes, n_timesteps, n_features)``, steps as time.

    The default family: plain :class:`~skdynamo.Trajectories` belong to it.

    Parameters
    ----------
    recorder : 'auto' or callable, default='auto'
        How members are recorded (``DynamoEmbedder``'s ``recorder``).
    n_pcs : int, default=10
        Principal components kept per member.
    layers, spatial : default='auto', 'pool'
        Unused by this family (accepted for a common constructor).
    n_jobs : int, default=None
        Members recorded in parallel (joblib threads).
    n_steps : 'max' or int, default='max'
        Unused by this family (steps are the probes' time steps).
    """

    name = "rnn"
    probe_rank = 3
    meta_class = ConditionedRNN
    standalone_class = StandaloneRNN
    # One augmented sequence per training probe: higher held-out fidelity and averaging
    # on the populations measured (docs/fidelity.md, "Probe augmentation").
    auto_augmentation = 1
    # bfloat16 training steps: 0.63x the time per epoch of float32 on the default
    # population, fidelity within the seeds' spread (docs/fidelity.md, "Precision").
    auto_bfloat16 = True

    @classmethod
    def is_member(cls, model):
        return isinstance(model, nn.Module) and bool(recurrent_layers(model))

    @classmethod
    def probe_mismatch(cls, index, model, shape):
        return (f"probe_inputs are images (rank 4, shape {shape}) but model {index} "
                f"({type(model).__name__}) is recurrent: recurrent models take probe "
                "inputs of rank 3 (n_probes, n_timesteps, n_features).")

    def _check_probe_shape(self, probes):
        if probes.ndim != 3:
            hint = (" Images (n, channels, height, width) need meta_model='cnn' or 'auto'."
                    if probes.ndim == 4 else "")
            raise ValueError(f"probe_inputs must have rank 3 (n_probes, n_timesteps, "
                             f"n_features) for recurrent models; got shape {probes.shape}."
                             f"{hint}")
        if probes.shape[0] < 2 or probes.shape[1] < 1 or probes.shape[2] < 1:
            raise ValueError(f"probe_inputs needs at least 2 sequences of at least one step "
                             f"and one feature; got shape {probes.shape}.")

    def _check_member_probes(self, index, model, probes):
        width = input_width(model)
        if width is not None and width != probes.shape[-1]:
            raise ValueError(f"Model {index} ({type(model).__name__}) takes inputs of width "
                             f"{width}, but probe_inputs has {probes.shape[-1]} features.")

    def default_probes(self, models, rng):
        from ..datasets._tasks import make_random_probes
        widths = {input_width(m) for m in models if isinstance(m, torch.nn.Module)}
        if len(widths) != 1 or None in widths:
            raise ValueError(
                "probe_inputs=None needs every model's input width, read off its first "
                f"layer; found {sorted(widths, key=str)}. Pass probe_inputs=, an array of "
                "shape (n_probes, n_timesteps, n_features), ideally the task's own inputs.")
        probes = make_random_probes(256, 50, widths.pop(), random_state=rng)
        return self.check_probes(probes, models)

    def augment_probes(self, probes, n, rng):
        # Noisy, time-shifted, spliced, rescaled and denser-event sequences.
        return augment_sequences(probes, n, rng)

    def record_member(self, index, model, probes):
        return record(model, probes, recorder=self.recorder)

    def check_member(self, index, recording, probes):
        check_trajectory(index, recording, len(probes), probes.shape[1])

    def reduce_member(self, recording, train_idx):
        return Bunch(hidden=reduce_hidden(recording.hidden, train_idx, self.n_pcs),
                     outputs=recording.outputs)

    def combine_targets(self, reduced):
        shape = check_output_shapes([r.outputs for r in reduced])
        hidden, mask = pad_targets([r.hidden for r in reduced],
                                   max(r.hidden.shape[-1] for r in reduced))
        return Bunch(hidden=hidden, mask=mask, output_shape=tuple(shape),
                     n_steps=hidden.shape[2])

    def meta_params(self, probes, targets, *, n_components, hidden_size, cell, conditioning):
        return dict(kind=self.meta_class.kind, n_inputs=probes.shape[-1],
                    n_outputs=targets.output_shape[-1], n_components=n_components,
                    hidden_size=hidden_size, cell=cell, conditioning=conditioning)

    def last_only(self, output_shape):
        return len(output_shape) == 1

    def bake(self, meta, theta):
        return bake_rnn(meta, self._theta(meta, theta))
