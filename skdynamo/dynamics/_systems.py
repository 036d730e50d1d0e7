"""Adapters that turn a recurrent model into a batched one-step map ``h -> F(h, x)``.

Three kinds of system are understood, tried in this order:

1. the meta-model frozen at an embedding (:class:`skdynamo.nn.EmulatedNetwork`, or any
   module with a ``meta`` submodule holding one ``rnn`` layer and a
   ``cell_inputs(x, theta)`` method, and a ``theta`` buffer): its update is the
   meta-model's layer fed ``meta.cell_inputs(x, theta)``, so many embeddings can be
   analysed in one batch;
2. any module with a ``recurrent_step(x_t, h)`` method (the protocol of
   ``EmulatedNetwork``): its update is that method;
3. an ``nn.RNN``/``nn.GRU``/``nn.LSTM`` layer or ``nn.RNNCell``/``nn.GRUCell``/
   ``nn.LSTMCell`` cell, or a module holding exactly one: its update is written out from
   the layer's weights (LSTM on the joint state ``[h, c]``).

All computations run in float64 on private copies: the caller's module is never changed.
"""

import copy
import hashlib

import torch
from torch import nn

from .._recording import RECURRENT_MODULES

__all__ = ["as_system"]


def _module_name(obj):
    return type(obj).__name__


def _check_layer(layer, where):
    if isinstance(layer, nn.RNNCellBase):
        return  # a cell is one layer, run forward one step at a time
    if layer.num_layers != 1:
        raise ValueError(f"{where} has num_layers={layer.num_layers}; fixed points are computed "
                         "for single-layer recurrent networks only.")
    if layer.bidirectional:
        raise ValueError(f"{where} is bidirectional: a bidirectional layer is not a dynamical "
                         "system run forward in time.")
    if getattr(layer, "proj_size", 0):
        raise ValueError(f"{where} is an LSTM with proj_size={layer.proj_size}; projected "
                         "LSTMs are not supported.")


def _layer_kind(layer):
    if isinstance(layer, (nn.LSTM, nn.LSTMCell)):
        return "lstm"
    if isinstance(layer, (nn.GRU, nn.GRUCell)):
        return "gru"
    if isinstance(layer, (nn.RNN, nn.RNNCell)):
        return "rnn_relu" if layer.nonlinearity == "relu" else "rnn_tanh"
    raise TypeError(f"Unsupported recurrent layer {_module_name(layer)}.")


def _layer_weights(layer):
    suffix = "" if isinstance(layer, nn.RNNCellBase) else "_l0"

    def weight(name):
        return getattr(layer, name + suffix).detach().cpu().to(torch.float64).clone()

    w_ih, w_hh = weight("weight_ih"), weight("weight_hh")
    if layer.bias:
        b_ih, b_hh = weight("bias_ih"), weight("bias_hh")
    else:
        b_ih = b_hh = torch.zeros(w_ih.shape[0], dtype=torch.float64)
    return w_ih, w_hh, b_ih, b_hh


def cell_step(kind, weights, x, h, hidden):
    """One step of a PyTorch recurrent cell written out from its weights.

    ``x`` is (batch, n_inputs), ``h`` is (batch, hidden) or (batch, 2 * hidden) = ``[h, c]``
    for LSTMs. Gate orders follow PyTorch: GRU (r, z, n), LSTM (i, f, g, o).
    """
    w_ih, w_hh, b_ih, b_hh = weights
    if kind == "lstm":
        hh, c = h[:, :hidden], h[:, hidden:]
        gates = x @ w_ih.T + b_ih + hh @ w_hh.T + b_hh
        i, f, g, o = gates.chunk(4, dim=1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c_next), c_next], dim=1)
    if kind == "gru":
        i_r, i_z, i_n = (x @ w_ih.T + b_ih).chunk(3, dim=1)
        h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * h
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return torch.relu(pre) if kind == "rnn_relu" else torch.tanh(pre)


def _fingerprint(tensors):
    digest = hashlib.sha1()
    for t in tensors:
        digest.update(t.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class _System:
    """Batched float64 update ``F(x, h)``; subclasses define ``step``.

    Attributes: ``n_inputs`` (width of the constant input the user gives), ``state_size``,
    ``name`` (for messages), ``group_key`` (systems with equal keys can share one batch).
    """

    group_key = None
    feed = None  # what the layer reads, given x (a meta-model's inputs at its embedding)

    def full_input(self, x):
        """What the update reads given inputs ``x`` (batch, n_inputs): ``x`` itself, or
        for a meta-model ``x`` with its fixed embedding folded in."""
        return x if self.feed is None else self.feed(x)

    def initial_state(self, batch):
        return torch.zeros(batch, self.state_size, dtype=torch.float64)

    @property
    def input_width(self):
        """Width of the sequences ``record`` accepts, or None when only a run can tell."""
        return self.n_inputs

    def layer_inputs(self, inputs):
        """Inputs (batch, time, n_inputs) as seen by the update (default: unchanged)."""
        return inputs

    def record(self, inputs):
        """States (batch, time, state_size) visited when run on ``inputs`` from the initial
        state, by iterating the update itself (so LSTM cell states are included)."""
        seq = self.layer_inputs(inputs)
        h = self.initial_state(seq.shape[0])
        states = []
        with torch.no_grad():
            for t in range(seq.shape[1]):
                h = self.step(self.full_input(seq[:, t]), h)
                states.append(h)
        return torch.stack(states, dim=1)


class _LayerSystem(_System):
    """Update written out from a recurrent layer's weights."""

    def __init__(self, layer, *, module=None, feed=None, n_inputs=None, init=None, name=None):
        self.kind = _layer_kind(layer)
        self.hidden = layer.hidden_size
        self.weights = _layer_weights(layer)
        self.state_size = self.hidden * (2 if self.kind == "lstm" else 1)
        self.feed = feed
        self.n_inputs = layer.input_size if n_inputs is None else int(n_inputs)
        self._layer = layer
        self._module = module
        self._init = init
        self.name = name or _module_name(module if module is not None else layer)
        self.group_key = (self.kind, _fingerprint(self.weights))

    @property
    def input_width(self):
        if self._module is None or self._module is self._layer:
            return self.n_inputs
        return None  # the layer sits behind other modules

    def step(self, x, h):
        return cell_step(self.kind, self.weights, x, h, self.hidden)

    def initial_state(self, batch):
        if self._init is not None:
            with torch.no_grad():
                return self._init(batch).detach().cpu().to(torch.float64)
        return super().initial_state(batch)

    def layer_inputs(self, inputs):
        # The layer may sit behind other modules: record what it actually receives.
        if self._module is None or self._module is self._layer:
            return inputs
        seen = []

        def hook(mod, args):
            seen.append(args[0].detach())

        handle = self._layer.register_forward_pre_hook(hook)
        ref = next(self._module.parameters())
        was_training = self._module.training
        self._module.eval()  # no dropout while recording; the flag is restored below
        try:
            with torch.no_grad():
                self._module(inputs.to(device=ref.device, dtype=ref.dtype))
        except RuntimeError as exc:
            raise ValueError(f"inputs of shape {tuple(inputs.shape)} could not be run through "
                             f"{self.name}: {exc}") from exc
        finally:
            handle.remove()
            self._module.train(was_training)
        if not seen:
            raise ValueError(f"Running {self.name} on inputs never called its recurrent layer.")
        if isinstance(self._layer, nn.RNNCellBase):  # one call per step
            return torch.stack([x.cpu().to(torch.float64) for x in seen], dim=1)
        seq = seen[0].cpu().to(torch.float64)
        if not self._layer.batch_first:
            seq = seq.transpose(0, 1)
        return seq


class _StepSystem(_System):
    """Update given by the module's own ``recurrent_step(x_t, h)``."""

    def __init__(self, module):
        self._module = copy.deepcopy(module).cpu().to(torch.float64).eval()
        self.name = _module_name(module)
        size = getattr(module, "hidden_size", None)
        if size is None and hasattr(module, "initial_state"):
            size = int(module.initial_state(1).shape[-1])
        if size is None:
            raise TypeError(f"{self.name} has recurrent_step but neither a hidden_size "
                            "attribute nor an initial_state(batch) method, so the size of its "
                            "state is unknown.")
        self.state_size = int(size)
        self.n_inputs = getattr(module, "n_inputs", None)

    def step(self, x, h):
        return self._module.recurrent_step(x, h)

    def initial_state(self, batch):
        if hasattr(self._module, "initial_state"):
            with torch.no_grad():
                return self._module.initial_state(batch).detach().cpu().to(torch.float64)
        return super().initial_state(batch)


def as_system(system):
    """Wrap ``system`` into a batched float64 update; raise a clear error if impossible."""
    if isinstance(system, _System):
        return system
    if not isinstance(system, nn.Module):
        raise TypeError("A recurrent system must be a torch.nn.Module (an nn.RNN/GRU/LSTM layer "
                        "or nn.RNNCell/GRUCell/LSTMCell, a module holding one, or a module "
                        f"with a recurrent_step(x_t, h) method); got {_module_name(system)}.")
    meta = getattr(system, "meta", None)
    theta = getattr(system, "theta", None)
    if (isinstance(meta, nn.Module) and isinstance(getattr(meta, "rnn", None), nn.RNNBase)
            and callable(getattr(meta, "cell_inputs", None))
            and isinstance(theta, torch.Tensor) and hasattr(system, "recurrent_step")):
        # A meta-model at one embedding: its layer is shared by every embedding (so
        # systems at several embeddings run in one batch), fed its inputs at this one.
        layer = meta.rnn
        _check_layer(layer, f"{_module_name(system)}.meta.rnn")
        at = theta.detach().cpu().to(torch.float64).reshape(1, -1)

        def feed(x):
            return meta.cell_inputs(x, at.expand(len(x), -1))

        init = system.initial_state if hasattr(system, "initial_state") else None
        return _LayerSystem(layer, feed=feed, n_inputs=system.n_inputs, init=init,
                            name=_module_name(system))
    if callable(getattr(system, "recurrent_step", None)):
        return _StepSystem(system)
    if isinstance(system, RECURRENT_MODULES):
        _check_layer(system, _module_name(system))
        return _LayerSystem(system)
    layers = [(name, m) for name, m in system.named_modules()
              if isinstance(m, RECURRENT_MODULES)]
    if not layers:
        raise TypeError(f"{_module_name(system)} has no recurrent update skdynamo can find: it "
                        "holds no nn.RNN/nn.GRU/nn.LSTM layer or nn.RNNCell/GRUCell/LSTMCell "
                        "and has no recurrent_step(x_t, h) method. Pass a recurrent layer, or "
                        "add recurrent_step.")
    if len(layers) > 1:
        names = ", ".join(repr(n) for n, _ in layers)
        raise ValueError(f"{_module_name(system)} holds {len(layers)} recurrent layers ({names}); "
                         "pass the one to analyse.")
    name, layer = layers[0]
    _check_layer(layer, f"{_module_name(system)}.{name}")
    return _LayerSystem(layer, module=system, name=f"{_module_name(system)}.{name}")
