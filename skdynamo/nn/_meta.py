"""Torch modules of DYNAMO: the conditioned meta-model, the training module holding the
embedding table and per-model maps, and the standalone emulated network."""

import copy

import torch
from torch import nn

__all__ = ["ConditionedRNN", "DynamoModule", "EmulatedNetwork", "CELLS"]

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class ConditionedRNN(nn.Module):
    """Recurrent meta-model whose dynamics are conditioned on a model embedding ``theta``.

    ``g_t = Cell([x_t, theta], g_{t-1})``, ``g_0 = A theta + b``, ``y_t = W g_t + c``.

    Parameters
    ----------
    n_inputs, n_outputs, n_components : int
        Input width, output width and embedding dimension.
    hidden_size : int, default=64
        Width of the meta-model's state.
    cell : {'gru', 'lstm', 'rnn'}, default='gru'
    """

    def __init__(self, n_inputs, n_outputs, n_components, hidden_size=64, cell="gru"):
        super().__init__()
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        self.n_components, self.hidden_size, self.cell = n_components, hidden_size, cell
        self.rnn = CELLS[cell](n_inputs + n_components, hidden_size, batch_first=True)
        n_state = 2 if cell == "lstm" else 1
        self.init_state = nn.Linear(n_components, n_state * hidden_size)
        self.readout = nn.Linear(hidden_size, n_outputs)

    def initial_state(self, theta):
        h0 = self.init_state(theta)
        if self.cell == "lstm":
            h, c = h0.chunk(2, dim=-1)
            return h[None].contiguous(), c[None].contiguous()
        return h0[None].contiguous()

    def forward(self, x, theta):
        """Run ``x`` of shape (batch, time, n_inputs) at embeddings ``theta`` (batch, d).

        Returns the outputs (batch, time, n_outputs) and states (batch, time, hidden_size).
        """
        batch, steps, _ = x.shape
        inp = torch.cat([x, theta[:, None, :].expand(batch, steps, theta.shape[-1])], dim=-1)
        g, _ = self.rnn(inp, self.initial_state(theta))
        return self.readout(g), g


class DynamoModule(nn.Module):
    """Training-time module: meta-model, embedding table and per-model linear maps.

    A batch of probe sequences is run for every model at once; the per-model maps
    ``V_n`` take the meta-model's states to each model's PCA-reduced hidden states. The
    maps start at zero and ``theta`` starts from the given table, so two models with the
    same (reparameterisation-invariant) targets follow the same training trajectory.
    """

    def __init__(self, n_inputs, n_outputs, n_components, n_models, n_targets,
                 init_embeddings=None, target_mask=None, output_scale=None, hidden_size=64,
                 cell="gru"):
        super().__init__()
        self.meta = ConditionedRNN(n_inputs, n_outputs, n_components, hidden_size, cell)
        init = (torch.zeros(n_models, n_components) if init_embeddings is None
                else torch.as_tensor(init_embeddings, dtype=torch.float32).clone())
        self.embeddings = nn.Parameter(init)
        self.map_weight = nn.Parameter(torch.zeros(n_models, n_targets, hidden_size))
        self.map_bias = nn.Parameter(torch.zeros(n_models, n_targets))
        mask = (torch.ones(n_models, n_targets) if target_mask is None
                else torch.as_tensor(target_mask, dtype=torch.float32))
        self.register_buffer("target_mask", mask)
        scale = (torch.ones(n_models) if output_scale is None
                 else torch.as_tensor(output_scale, dtype=torch.float32))
        self.register_buffer("output_scale", scale)

    def forward(self, x):
        """``x``: (batch, time, n_inputs). Returns outputs (models, batch, time, n_outputs)
        and mapped states (models, batch, time, n_targets)."""
        n_models = self.embeddings.shape[0]
        batch, steps, n_in = x.shape
        xx = x[None].expand(n_models, batch, steps, n_in).reshape(-1, steps, n_in)
        theta = self.embeddings.repeat_interleave(batch, dim=0)
        y, g = self.meta(xx, theta)
        y = y.view(n_models, batch, steps, -1)
        g = g.view(n_models, batch, steps, -1)
        h = torch.einsum("nbth,nkh->nbtk", g, self.map_weight) + self.map_bias[:, None, None]
        return y, h * self.target_mask[:, None, None]


class EmulatedNetwork(nn.Module):
    """The meta-model frozen at one embedding: an operable recurrent network.

    Returned by :meth:`DynamoEmbedder.model_at`. It is a plain ``nn.Module`` (save it with
    ``torch.save(net.state_dict(), path)``) mapping inputs ``(batch, time, n_inputs)`` to
    outputs ``(batch, time, n_outputs)``.

    Attributes
    ----------
    meta : ConditionedRNN
        A private copy of the meta-model.
    theta : torch.Tensor of shape (n_components,)
        The embedding (a buffer).
    hidden_size : int
        Size of the state used by :meth:`recurrent_step` (``2 * H`` for LSTM meta-models,
        whose state is ``[h, c]``).
    n_inputs : int
    """

    def __init__(self, meta, theta):
        super().__init__()
        self.meta = copy.deepcopy(meta)
        for p in self.meta.parameters():
            p.requires_grad_(False)
        ref = next(self.meta.parameters())
        self.register_buffer("theta", torch.as_tensor(theta, dtype=ref.dtype,
                                                      device=ref.device).reshape(-1))
        self.n_inputs = meta.n_inputs
        self.hidden_size = meta.hidden_size * (2 if meta.cell == "lstm" else 1)

    def _theta(self, batch):
        return self.theta[None].expand(batch, -1)

    def trajectories(self, x):
        """Return ``(hidden, outputs)``: states (batch, time, H) and outputs."""
        y, g = self.meta(x, self._theta(x.shape[0]))
        return g, y

    def forward(self, x):
        """Outputs (batch, time, n_outputs) for inputs (batch, time, n_inputs)."""
        return self.trajectories(x)[1]

    def initial_state(self, batch=1):
        """The initial state ``g_0`` (batch, hidden_size); ``[h, c]`` for LSTM."""
        h0 = self.meta.initial_state(self._theta(batch))
        return torch.cat([h[0] for h in h0], -1) if isinstance(h0, tuple) else h0[0]

    def recurrent_step(self, x_t, h):
        """One step of the conditioned cell: ``x_t`` (batch, n_inputs), ``h`` (batch, H)."""
        inp = torch.cat([x_t, self._theta(x_t.shape[0])], dim=-1)[:, None]
        if self.meta.cell == "lstm":
            hh, cc = h.chunk(2, dim=-1)
            _, (hn, cn) = self.meta.rnn(inp, (hh[None].contiguous(), cc[None].contiguous()))
            return torch.cat([hn[0], cn[0]], dim=-1)
        _, hn = self.meta.rnn(inp, h[None].contiguous())
        return hn[0]
