"""A plain recurrent module baked from the meta-model at one embedding.

With ``theta`` fixed, the meta-model's input term ``W_ih [x_t, theta] + b_ih`` equals
``W_ih[:, :F] x_t + (W_ih[:, F:] theta + b_ih)``, and its initial state ``A theta + b`` is
a constant: the emulated network is exactly a standard ``nn.GRU``/``nn.LSTM``/``nn.RNN``
with a learned initial state and a linear readout. Saving it needs only its
``state_dict`` and four integers; it holds no reference to skdynamo's training state.
"""

import torch
from torch import nn

__all__ = ["StandaloneRNN", "bake"]

_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class StandaloneRNN(nn.Module):
    """A one-layer recurrent network with a learned initial state and a linear readout.

    Parameters
    ----------
    n_inputs, n_outputs, hidden_size : int
    cell : {'gru', 'lstm', 'rnn'}, default='gru'

    Examples
    --------
    Reload a saved averaged model without skdynamo's estimators::

        net = StandaloneRNN(**config)
        net.load_state_dict(torch.load("avg.pt", weights_only=True))
    """

    def __init__(self, n_inputs, n_outputs, hidden_size, cell="gru"):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}.")
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        self.hidden_size, self.cell = hidden_size, cell
        self.rnn = _CELLS[cell](n_inputs, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, n_outputs)
        self.register_buffer("h0", torch.zeros(hidden_size))
        if cell == "lstm":
            self.register_buffer("c0", torch.zeros(hidden_size))

    @property
    def config(self):
        """Constructor arguments: ``StandaloneRNN(**net.config)`` rebuilds the module."""
        return dict(n_inputs=self.n_inputs, n_outputs=self.n_outputs,
                    hidden_size=self.hidden_size, cell=self.cell)

    def _state0(self, batch):
        h = self.h0[None, None].expand(1, batch, -1).contiguous()
        if self.cell == "lstm":
            return h, self.c0[None, None].expand(1, batch, -1).contiguous()
        return h

    def trajectories(self, x):
        """Return ``(hidden, outputs)`` for inputs ``x`` (batch, time, n_inputs)."""
        g, _ = self.rnn(x, self._state0(x.shape[0]))
        return g, self.readout(g)

    def forward(self, x):
        """Outputs (batch, time, n_outputs) for inputs (batch, time, n_inputs)."""
        return self.trajectories(x)[1]


@torch.no_grad()
def bake(meta, theta):
    """Fold a fixed embedding ``theta`` into a :class:`StandaloneRNN` equal to ``meta`` at it.

    Parameters
    ----------
    meta : skdynamo.nn.ConditionedRNN
    theta : array-like of shape (n_components,)

    Returns
    -------
    StandaloneRNN
        In eval mode, parameters without gradients, on ``meta``'s device.
    """
    ref = next(meta.parameters())
    theta = torch.as_tensor(theta, dtype=ref.dtype, device=ref.device).reshape(-1)
    f = meta.n_inputs
    net = StandaloneRNN(f, meta.n_outputs, meta.hidden_size, meta.cell).to(ref.device)
    src = meta.rnn
    net.rnn.weight_ih_l0.copy_(src.weight_ih_l0[:, :f])
    net.rnn.weight_hh_l0.copy_(src.weight_hh_l0)
    net.rnn.bias_ih_l0.copy_(src.bias_ih_l0 + src.weight_ih_l0[:, f:] @ theta)
    net.rnn.bias_hh_l0.copy_(src.bias_hh_l0)
    net.readout.load_state_dict(meta.readout.state_dict())
    state0 = meta.initial_state(theta[None])
    if meta.cell == "lstm":
        net.h0.copy_(state0[0][0, 0])
        net.c0.copy_(state0[1][0, 0])
    else:
        net.h0.copy_(state0[0, 0])
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()
