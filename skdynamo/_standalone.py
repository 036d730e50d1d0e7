"""Plain modules baked from the meta-model at one embedding.

With ``theta`` fixed, the meta-model's input term ``W_ih [x_t, theta] + b_ih`` equals
``W_ih[:, :F] x_t + (W_ih[:, F:] theta + b_ih)``, and its initial state ``A theta + b`` is
a constant: the emulated network is exactly a standard ``nn.GRU``/``nn.LSTM``/``nn.RNN``
with a learned initial state and a linear readout. Saving it needs only its
``state_dict`` and four integers; it holds no reference to skdynamo's training state.

Likewise a FiLM-conditioned CNN at a fixed ``theta`` is a plain CNN: the per-channel scale
``gamma(theta)`` and shift ``beta(theta)`` after a convolution fold into that
convolution's weights (``gamma * W``) and bias (``gamma * b + beta``).
"""

import torch
from torch import nn

__all__ = ["StandaloneRNN", "StandaloneCNN", "bake"]

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


class StandaloneCNN(nn.Module):
    """A plain CNN: ``Conv2d(3x3) -> ReLU [-> MaxPool2d(2)]`` stages, a linear readout of
    the last stage's spatial average.

    Parameters
    ----------
    in_channels, n_outputs, hidden_size : int
    pools : list of bool
        Whether each stage ends with a 2x2 max-pool (one entry per stage).
    grid : (int, int) or None, default=None
        Spatial grid of the per-stage states returned by :meth:`trajectories`.

    Examples
    --------
    Reload a saved averaged CNN without skdynamo's estimators::

        net = StandaloneCNN(**config)
        net.load_state_dict(torch.load("avg.pt", weights_only=True))
    """

    def __init__(self, in_channels, n_outputs, hidden_size, pools, grid=None,
                 image_size=None):
        super().__init__()
        self.in_channels, self.n_inputs = int(in_channels), int(in_channels)
        self.n_outputs, self.hidden_size = int(n_outputs), int(hidden_size)
        self.pools = [bool(p) for p in pools]
        self.grid = None if grid is None else [int(g) for g in grid]
        self.image_size = None if image_size is None else [int(v) for v in image_size]
        if self.image_size is not None:
            self.input_shape = (self.in_channels, *self.image_size)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if t == 0 else hidden_size, hidden_size, 3, padding=1)
            for t in range(len(self.pools)))
        self.readout = nn.Linear(hidden_size, n_outputs)

    @property
    def config(self):
        """Constructor arguments: ``StandaloneCNN(**net.config)`` rebuilds the module."""
        return dict(in_channels=self.in_channels, n_outputs=self.n_outputs,
                    hidden_size=self.hidden_size, pools=list(self.pools), grid=self.grid,
                    image_size=self.image_size)

    def trajectories(self, x):
        """Return ``(states, logits)``: per-stage states (batch, n_stages, H) and logits."""
        states = []
        for conv, pool in zip(self.convs, self.pools):
            x = torch.relu(conv(x))
            states.append(x.mean(dim=(2, 3)) if self.grid is None else
                          nn.functional.adaptive_avg_pool2d(x, self.grid).flatten(1))
            if pool:
                x = nn.functional.max_pool2d(x, 2)
        return torch.stack(states, dim=1), self.readout(x.mean(dim=(2, 3)))

    def forward(self, x):
        """Logits (batch, n_outputs) for images (batch, channels, height, width)."""
        return self.trajectories(x)[1]


def bake(meta, theta):
    """Fold a fixed embedding ``theta`` into a standalone module equal to ``meta`` at it.

    The meta-model's family bakes it (``skdynamo.families``).

    Parameters
    ----------
    meta : skdynamo.nn.ConditionedRNN or skdynamo.nn.ConditionedCNN
    theta : array-like of shape (n_components,)

    Returns
    -------
    StandaloneRNN or StandaloneCNN
        In eval mode, parameters without gradients, on ``meta``'s device.
    """
    from .families import family_of
    return family_of(meta).bake(meta, theta)
