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

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .nn import CELLS as _CELLS  # the one table of cell types

__all__ = ["StandaloneRNN", "StandaloneCNN", "bake"]


class StandaloneRNN(nn.Module):
    """A one-layer recurrent network with a learned initial state and a linear readout.

    What :class:`~skdynamo.DynamoAverager` and :func:`skdynamo.save_weights` hand out for a
    recurrent population: the meta-model at one embedding, as a plain module that needs
    only its ``state_dict`` and :attr:`config` to be rebuilt.

    Parameters
    ----------
    n_inputs : int
        Input features per time step.
    n_outputs : int
        Outputs per time step.
    hidden_size : int
        Width of the recurrent state.
    cell : {'gru', 'lstm', 'rnn'}, default='gru'
        The recurrent layer (``nn.GRU``, ``nn.LSTM`` or ``nn.RNN``).

    Raises
    ------
    ValueError
        If ``cell`` is not one of the three.

    Examples
    --------
    >>> import torch
    >>> from skdynamo import StandaloneRNN
    >>> net = StandaloneRNN(n_inputs=3, n_outputs=2, hidden_size=8)
    >>> net(torch.zeros(4, 10, 3)).shape
    torch.Size([4, 10, 2])

    Rebuild a saved network without skdynamo's estimators:

    >>> copy = StandaloneRNN(**net.config)
    >>> copy.load_state_dict(net.state_dict())
    <All keys matched successfully>
    """

    def __init__(self, n_inputs: int, n_outputs: int, hidden_size: int,
                 cell: str = "gru") -> None:
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
    def config(self) -> dict:
        """Constructor arguments: ``StandaloneRNN(**net.config)`` rebuilds the module."""
        return dict(n_inputs=self.n_inputs, n_outputs=self.n_outputs,
                    hidden_size=self.hidden_size, cell=self.cell)

    def _state0(self, batch):
        h = self.h0[None, None].expand(1, batch, -1).contiguous()
        if self.cell == "lstm":
            return h, self.c0[None, None].expand(1, batch, -1).contiguous()
        return h

    def trajectories(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network and return its hidden states and outputs.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, time, n_inputs)
            Input sequences.

        Returns
        -------
        hidden : torch.Tensor of shape (batch, time, hidden_size)
            The recurrent state at every step.
        outputs : torch.Tensor of shape (batch, time, n_outputs)
            The readout of the state at every step.
        """
        g, _ = self.rnn(x, self._state0(x.shape[0]))
        return g, self.readout(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the outputs of the network.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, time, n_inputs)
            Input sequences.

        Returns
        -------
        torch.Tensor of shape (batch, time, n_outputs)
            The outputs at every step.
        """
        return self.trajectories(x)[1]


class StandaloneCNN(nn.Module):
    """A plain CNN of ``Conv2d(3x3) -> ReLU [-> MaxPool2d(2)]`` stages and a linear readout.

    The readout reads the last stage's spatial average. What
    :class:`~skdynamo.DynamoAverager` and :func:`skdynamo.save_weights` hand out for a
    convolutional population: the FiLM meta-model at one embedding, with the scale and
    shift folded into the convolutions.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_outputs : int
        Logits per image.
    hidden_size : int
        Channels of every convolution.
    pools : list of bool
        Whether each stage ends with a 2x2 max-pool (one entry per stage).
    grid : (int, int) or None, default=None
        Spatial grid of the per-stage states returned by :meth:`trajectories`; None
        averages each stage over space.
    image_size : (int, int) or None, default=None
        Height and width of the images, when known (stored as ``input_shape``).

    Examples
    --------
    >>> import torch
    >>> from skdynamo import StandaloneCNN
    >>> net = StandaloneCNN(in_channels=1, n_outputs=10, hidden_size=8, pools=[True, False])
    >>> net(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])

    Rebuild a saved network without skdynamo's estimators:

    >>> copy = StandaloneCNN(**net.config)
    >>> copy.load_state_dict(net.state_dict())
    <All keys matched successfully>
    """

    def __init__(self, in_channels: int, n_outputs: int, hidden_size: int,
                 pools: Sequence[bool], grid: Sequence[int] | None = None,
                 image_size: Sequence[int] | None = None) -> None:
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
    def config(self) -> dict:
        """Constructor arguments: ``StandaloneCNN(**net.config)`` rebuilds the module."""
        return dict(in_channels=self.in_channels, n_outputs=self.n_outputs,
                    hidden_size=self.hidden_size, pools=list(self.pools), grid=self.grid,
                    image_size=self.image_size)

    def trajectories(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network and return its per-stage states and logits.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, channels, height, width)
            Images.

        Returns
        -------
        states : torch.Tensor of shape (batch, n_stages, n_state)
            Each stage's activation, averaged over space (``n_state = hidden_size``) or
            over the ``grid`` (``hidden_size * grid[0] * grid[1]``).
        logits : torch.Tensor of shape (batch, n_outputs)
            The readout.
        """
        states = []
        for conv, pool in zip(self.convs, self.pools):
            x = torch.relu(conv(x))
            states.append(x.mean(dim=(2, 3)) if self.grid is None else
                          nn.functional.adaptive_avg_pool2d(x, self.grid).flatten(1))
            if pool:
                x = nn.functional.max_pool2d(x, 2)
        return torch.stack(states, dim=1), self.readout(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the logits of the network.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, channels, height, width)
            Images.

        Returns
        -------
        torch.Tensor of shape (batch, n_outputs)
            The logits.
        """
        return self.trajectories(x)[1]


def bake(meta: nn.Module, theta: np.ndarray | Sequence[float]) -> nn.Module:
    """Fold a fixed embedding ``theta`` into a standalone module equal to ``meta`` at it.

    The meta-model's family bakes it (``skdynamo.families``).

    Parameters
    ----------
    meta : skdynamo.nn.ConditionedRNN or skdynamo.nn.ConditionedCNN
        A trained meta-model.
    theta : array-like of shape (n_components,)
        The embedding to fix.

    Returns
    -------
    StandaloneRNN or StandaloneCNN
        In eval mode, parameters without gradients, on ``meta``'s device.
    """
    from .families import family_of
    return family_of(meta).bake(meta, theta)
