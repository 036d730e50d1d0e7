"""Torch modules of DYNAMO: the conditioned meta-model, the training module holding the
embedding table and per-model maps, and the standalone emulated network."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["ConditionedRNN", "ConditionedCNN", "FiLM", "DynamoModule", "EmulatedNetwork",
           "CELLS", "META_MODELS", "build_meta_model"]

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
#: How a recurrent meta-model reads its embedding (:class:`ConditionedRNN`).
CONDITIONINGS = ("concat", "bilinear")


class ConditionedRNN(nn.Module):
    """Recurrent meta-model whose dynamics are conditioned on a model embedding ``theta``.

    ``g_t = Cell([x_t, theta], g_{t-1})``, ``g_0 = A theta + b``, ``y_t = W g_t + c``
    (``conditioning='concat'``, the original DYNAMO form). With
    ``conditioning='bilinear'`` the cell reads ``u_t = [x_t, theta, x_t (x) theta]``
    (``(x)`` the outer product) and the readout is ``W(theta) = W_0 + sum_i theta_i W_i``:
    input weights and readout are linear functions of ``theta``, so that embeddings
    weigh the inputs differently, not only shift the gates. At a fixed ``theta`` either
    folds into a plain layer (:meth:`plain_weights`).

    Parameters
    ----------
    n_inputs, n_outputs, n_components : int
        Input width, output width and embedding dimension.
    hidden_size : int, default=64
        Width of the meta-model's state.
    cell : {'gru', 'lstm', 'rnn'}, default='gru'
        The recurrent layer.
    conditioning : {'concat', 'bilinear'}, default='concat'
        How ``theta`` enters: appended to the inputs (``'concat'``), or input weights and
        readout linear in ``theta`` (``'bilinear'``; see ``DynamoEmbedder``'s parameter
        of that name for what it changes).

    Examples
    --------
    >>> import torch
    >>> from skdynamo.nn import ConditionedRNN
    >>> meta = ConditionedRNN(n_inputs=3, n_outputs=2, n_components=4, hidden_size=8)
    >>> y, g = meta(torch.zeros(5, 10, 3), torch.zeros(5, 4))
    >>> y.shape, g.shape
    (torch.Size([5, 10, 2]), torch.Size([5, 10, 8]))
    """

    kind = "rnn"
    per_step_maps = False

    def __init__(self, n_inputs: int, n_outputs: int, n_components: int, hidden_size: int = 64,
                 cell: str = "gru", conditioning: str = "concat") -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}.")
        # numpy integers pass sklearn's validation but not torch's layer constructors.
        n_inputs, n_outputs, n_components, hidden_size = map(
            int, (n_inputs, n_outputs, n_components, hidden_size))
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        self.n_components, self.hidden_size, self.cell = n_components, hidden_size, cell
        self.conditioning = conditioning
        bilinear = conditioning == "bilinear"
        width = n_inputs + n_components + (n_inputs * n_components if bilinear else 0)
        self.rnn = CELLS[cell](width, hidden_size, batch_first=True)
        n_state = 2 if cell == "lstm" else 1
        self.init_state = nn.Linear(n_components, n_state * hidden_size)
        self.readout = nn.Linear(hidden_size, n_outputs)
        if bilinear:
            # W_i of the readout W(theta) = W_0 + sum_i theta_i W_i, stored (O, H * d);
            # zero at the start: training begins from a theta-independent readout.
            self.readout_theta = nn.Linear(hidden_size * n_components, n_outputs, bias=False)
            nn.init.zeros_(self.readout_theta.weight)

    def cell_inputs(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Compute what the recurrent layer reads at every step.

        ``[x, theta]``, followed by ``x (x) theta`` with ``conditioning='bilinear'``.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, time, n_inputs) or (batch, n_inputs)
            Inputs.
        theta : torch.Tensor of shape (batch, n_components)
            The embedding of each row.

        Returns
        -------
        torch.Tensor of shape (batch, [time,] rnn.input_size)
            The layer's inputs.
        """
        lead = (1,) * (x.dim() - 2)
        th = theta.reshape(theta.shape[0], *lead, -1).expand(*x.shape[:-1], -1).to(x.dtype)
        if self.conditioning == "concat":
            return torch.cat([x, th], dim=-1)
        return torch.cat([x, th, (x[..., :, None] * th[..., None, :]).flatten(-2)], dim=-1)

    def _readout(self, g: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        y = self.readout(g)
        if self.conditioning == "concat":
            return y
        w = self.readout_theta.weight.view(self.n_outputs, self.hidden_size, self.n_components)
        return y + torch.einsum("bth,ohd,bd->bto", g, w, theta)

    def plain_weights(self, theta: torch.Tensor) -> dict:
        """The weights of the plain layer and readout this meta-model is at one ``theta``.

        Parameters
        ----------
        theta : torch.Tensor of shape (n_components,)
            The embedding.

        Returns
        -------
        dict
            ``weight_ih`` (gates, n_inputs) and ``bias_ih`` (gates,): the input weights
            and bias of the recurrent layer at ``theta`` (its recurrent weights are the
            meta-model's own); ``readout_weight`` (n_outputs, hidden_size) and
            ``readout_bias`` (n_outputs,).
        """
        f, d = self.n_inputs, self.n_components
        w = self.rnn.weight_ih_l0
        weight, bias = w[:, :f], self.rnn.bias_ih_l0 + w[:, f:f + d] @ theta
        readout = self.readout.weight
        if self.conditioning == "bilinear":
            weight = weight + w[:, f + d:].reshape(-1, f, d) @ theta
            readout = readout + self.readout_theta.weight.view(
                self.n_outputs, self.hidden_size, d) @ theta
        return dict(weight_ih=weight, bias_ih=bias, readout_weight=readout,
                    readout_bias=self.readout.bias)

    def initial_state(self, theta: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Compute the initial state ``g_0 = A theta + b`` in the layout the layer takes.

        Parameters
        ----------
        theta : torch.Tensor of shape (batch, n_components)
            Embeddings.

        Returns
        -------
        torch.Tensor or (torch.Tensor, torch.Tensor)
            ``h0`` of shape (1, batch, hidden_size); ``(h0, c0)`` for an LSTM.
        """
        h0 = self.init_state(theta)
        if self.cell == "lstm":
            h, c = h0.chunk(2, dim=-1)
            return h[None].contiguous(), c[None].contiguous()
        return h0[None].contiguous()

    def forward(self, x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run input sequences at one embedding per sequence.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, time, n_inputs)
            Input sequences.
        theta : torch.Tensor of shape (batch, n_components)
            The embedding each sequence is run at.

        Returns
        -------
        outputs : torch.Tensor of shape (batch, time, n_outputs)
            The readout at every step.
        states : torch.Tensor of shape (batch, time, hidden_size)
            The meta-model's state at every step.
        """
        g, _ = self.rnn(self.cell_inputs(x, theta), self.initial_state(theta))
        return self._readout(g, theta), g

    @property
    def state_size(self) -> int:
        """Width of the states returned per step (what the per-model maps read)."""
        return self.hidden_size

    @property
    def step_state_size(self) -> int:
        """Width of the full recurrent state used by :meth:`step` (``[h, c]`` for LSTM)."""
        return self.hidden_size * (2 if self.cell == "lstm" else 1)

    @property
    def config(self) -> dict:
        """Constructor arguments: ``ConditionedRNN(**meta.config)`` rebuilds the module."""
        return dict(n_inputs=self.n_inputs, n_outputs=self.n_outputs,
                    n_components=self.n_components, hidden_size=self.hidden_size,
                    cell=self.cell, conditioning=self.conditioning)

    def flat_initial_state(self, theta: torch.Tensor) -> torch.Tensor:
        """Compute ``g_0`` as one flat state per embedding, the layout :meth:`step` takes.

        Parameters
        ----------
        theta : torch.Tensor of shape (batch, n_components)
            Embeddings.

        Returns
        -------
        torch.Tensor of shape (batch, step_state_size)
            The initial states (``[h, c]`` for an LSTM).
        """
        h0 = self.initial_state(theta)
        return torch.cat([h[0] for h in h0], -1) if isinstance(h0, tuple) else h0[0]

    def step(self, x_t: torch.Tensor, h: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Run one step of the conditioned cell (the update whose fixed points are sought).

        Parameters
        ----------
        x_t : torch.Tensor of shape (batch, n_inputs)
            Inputs at this step.
        h : torch.Tensor of shape (batch, step_state_size)
            Current states (``[h, c]`` for an LSTM).
        theta : torch.Tensor of shape (batch, n_components)
            Embeddings.

        Returns
        -------
        torch.Tensor of shape (batch, step_state_size)
            The next states.
        """
        inp = self.cell_inputs(x_t, theta)[:, None]
        if self.cell == "lstm":
            hh, cc = h.chunk(2, dim=-1)
            _, (hn, cn) = self.rnn(inp, (hh[None].contiguous(), cc[None].contiguous()))
            return torch.cat([hn[0], cn[0]], dim=-1)
        _, hn = self.rnn(inp, h[None].contiguous())
        return hn[0]


def _pool_plan(image_size, n_steps):
    """Which stages end with a 2x2 max-pool: halve the feature map while both sides >= 4."""
    h, w = image_size
    plan = []
    for _ in range(n_steps):
        pool = min(h, w) >= 4
        plan.append(pool)
        if pool:
            h, w = h // 2, w // 2
    return plan


class FiLM(nn.Module):
    """Feature-wise linear modulation: per-channel scale ``1 + W_g theta`` and shift ``W_b theta``.

    Parameters
    ----------
    n_components : int
        Embedding dimension.
    channels : int
        Channels modulated.
    """

    def __init__(self, n_components: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_components, 2 * channels)

    def forward(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the per-channel scale and shift at each embedding.

        Parameters
        ----------
        theta : torch.Tensor of shape (batch, n_components)
            Embeddings.

        Returns
        -------
        scale : torch.Tensor of shape (batch, channels)
            ``1 + W_g theta``.
        shift : torch.Tensor of shape (batch, channels)
            ``W_b theta``.
        """
        gamma, beta = self.linear(theta).chunk(2, dim=-1)
        return 1.0 + gamma, beta


class ConditionedCNN(nn.Module):
    """Convolutional meta-model conditioned on ``theta`` by FiLM; each stage is one step.

    Stage ``t`` is ``Conv2d(3x3, padding 1) -> FiLM(theta) -> ReLU`` followed by a 2x2
    max-pool while the feature map is at least 4x4. The state of step ``t`` is the stage's
    output averaged over space (or over a ``grid``), matching how :func:`record_cnn`
    reduces a member's layers; the logits are a linear readout of the last stage's
    spatial average.

    Parameters
    ----------
    in_channels : int
        Image channels.
    n_outputs : int
        Logits.
    n_components : int
        Embedding dimension.
    n_steps : int
        Stages (the aligned number of recorded layers of the population).
    image_size : (int, int)
        Height and width of the images.
    hidden_size : int, default=64
        Channels of every stage.
    grid : (int, int) or None, default=None
        Spatial grid of the states (``None``: global average), as ``spatial`` of
        :func:`record_cnn`.
    """

    kind = "cnn"
    per_step_maps = True

    def __init__(self, in_channels: int, n_outputs: int, n_components: int, n_steps: int,
                 image_size: Sequence[int], hidden_size: int = 64,
                 grid: Sequence[int] | None = None) -> None:
        super().__init__()
        self.in_channels, self.n_inputs = int(in_channels), int(in_channels)
        self.n_outputs, self.n_components = int(n_outputs), int(n_components)
        self.n_steps, self.hidden_size = int(n_steps), int(hidden_size)
        self.image_size = tuple(int(v) for v in image_size)
        self.input_shape = (self.in_channels, *self.image_size)
        self.grid = None if grid is None else tuple(int(v) for v in grid)
        self.pools = _pool_plan(self.image_size, self.n_steps)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if t == 0 else hidden_size, hidden_size, 3, padding=1)
            for t in range(n_steps))
        self.films = nn.ModuleList(FiLM(n_components, hidden_size) for _ in range(n_steps))
        self.readout = nn.Linear(hidden_size, n_outputs)

    @property
    def state_size(self) -> int:
        """Width of one step's state: ``hidden_size`` times the grid's cells."""
        cells = 1 if self.grid is None else self.grid[0] * self.grid[1]
        return self.hidden_size * cells

    step_state_size = state_size

    @property
    def config(self) -> dict:
        """Constructor arguments: ``ConditionedCNN(**meta.config)`` rebuilds the module."""
        return dict(in_channels=self.in_channels, n_outputs=self.n_outputs,
                    n_components=self.n_components, n_steps=self.n_steps,
                    image_size=self.image_size, hidden_size=self.hidden_size, grid=self.grid)

    def flat_initial_state(self, *args: Any) -> torch.Tensor:
        """Refuse: layers are this meta-model's time axis, it has no recurrent update.

        ``step`` is the same method.

        Parameters
        ----------
        *args : object
            Ignored.

        Returns
        -------
        torch.Tensor
            Never returns.

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError("A convolutional meta-model has no recurrent update: layers are "
                        "its time axis, so fixed points and recurrent_step do not apply.")

    step = flat_initial_state

    def _state(self, a):
        if self.grid is None:
            return a.mean(dim=(2, 3))
        return nn.functional.adaptive_avg_pool2d(a, self.grid).flatten(1)

    def forward(self, x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run images at one embedding per image.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, channels, height, width)
            Images.
        theta : torch.Tensor of shape (batch, n_components)
            The embedding each image is run at.

        Returns
        -------
        logits : torch.Tensor of shape (batch, n_outputs)
            The readout of the last stage.
        states : torch.Tensor of shape (batch, n_steps, state_size)
            Each stage's state.
        """
        states = []
        for conv, film, pool in zip(self.convs, self.films, self.pools):
            scale, shift = film(theta)
            x = torch.relu(conv(x) * scale[:, :, None, None] + shift[:, :, None, None])
            states.append(self._state(x))
            if pool:
                x = nn.functional.max_pool2d(x, 2)
        return self.readout(x.mean(dim=(2, 3))), torch.stack(states, dim=1)


#: Meta-model classes by their ``kind`` (the ``meta_params['kind']`` of DynamoModule).
META_MODELS = {cls.kind: cls for cls in (ConditionedRNN, ConditionedCNN)}


def build_meta_model(kind: str, **params: Any) -> nn.Module:
    """Build the meta-model of a kind: :class:`ConditionedRNN` or :class:`ConditionedCNN`.

    Parameters
    ----------
    kind : str
        A key of ``META_MODELS`` (``'rnn'``, ``'cnn'``).
    **params
        Constructor arguments of that class.

    Returns
    -------
    torch.nn.Module
        The new, untrained meta-model.

    Raises
    ------
    ValueError
        If ``kind`` is unknown.
    """
    if kind not in META_MODELS:
        raise ValueError(f"Unknown meta-model kind {kind!r}; expected one of "
                         f"{sorted(META_MODELS)}.")
    return META_MODELS[kind](**params)


class DynamoModule(nn.Module):
    """Training-time module: meta-model, embedding table and per-model linear maps.

    A training batch is a set of (model, probe) pairs, each run at its model's embedding;
    the per-model maps ``V_n`` take the meta-model's states to each model's PCA-reduced
    hidden states. A recurrent meta-model has one map per model shared over time; a
    convolutional one has one map per model *and layer* (layers differ in meaning). The
    maps start at zero and ``theta`` starts from the given table, so two models with the
    same (reparameterisation-invariant) targets follow the same training trajectory
    whenever they are in the same batches on the same probes
    (:class:`skdynamo._net.PairSampler`).

    Parameters
    ----------
    meta_params : dict
        Constructor arguments of the meta-model (:func:`build_meta_model`), with ``kind``.
    n_models, n_targets : int
        Models, and principal components per model (per layer for CNNs).
    init_embeddings : array-like of shape (n_models, n_components), default=None
        Starting embeddings; zeros by default.
    target_mask : array-like, default=None
        ``(n_models, n_targets)`` (RNN) or ``(n_models, n_steps, n_targets)`` (CNN): 1
        where a model has that component.
    output_scale : array-like of shape (n_models,), default=None
        Each model's output variance (normalises the MSE output loss).
    return_states : bool, default=False
        Also return the meta-model's states of (model, probe) pairs (for the reverse
        hidden term, ``DynamoEmbedder(reverse_weight=...)``).
    """

    def __init__(self, meta_params: dict, n_models: int, n_targets: int,
                 init_embeddings: Any = None, target_mask: Any = None,
                 output_scale: Any = None, return_states: bool = False) -> None:
        super().__init__()
        self.return_states = bool(return_states)
        params = dict(meta_params)
        self.meta = build_meta_model(params.pop("kind", "rnn"), **params)
        n_components = self.meta.n_components
        init = (torch.zeros(n_models, n_components) if init_embeddings is None
                else torch.as_tensor(init_embeddings, dtype=torch.float32).clone())
        self.embeddings = nn.Parameter(init)
        per_step = self.meta.per_step_maps
        steps = (self.meta.n_steps,) if per_step else ()
        width = self.meta.state_size
        self.map_weight = nn.Parameter(torch.zeros(n_models, *steps, n_targets, width))
        self.map_bias = nn.Parameter(torch.zeros(n_models, *steps, n_targets))
        mask = (torch.ones(n_models, *steps, n_targets) if target_mask is None
                else torch.as_tensor(target_mask, dtype=torch.float32))
        self.register_buffer("target_mask", mask)
        scale = (torch.ones(n_models) if output_scale is None
                 else torch.as_tensor(output_scale, dtype=torch.float32))
        self.register_buffer("output_scale", scale)

    def forward(self, x: torch.Tensor, models: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run (model, probe) pairs, or a batch of probes for every model.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, ...)
            Probe sequences or images.
        models : torch.Tensor of int, shape (batch,), default=None
            The model of each probe: probe ``i`` is run at ``embeddings[models[i]]`` and
            mapped by that model's ``V_n`` (a training batch of (model, probe) pairs).
            ``None`` runs every probe for every model.

        Returns
        -------
        outputs : torch.Tensor of shape (rows, probes, ...)
            The meta-model's outputs, models first: ``(batch, 1, ...)`` for pairs (one
            probe per row), ``(n_models, batch, ...)`` without ``models``.
        hidden : torch.Tensor of shape (rows, probes, time, n_targets)
            Its states mapped by each row's ``V_n`` (masked where a model has fewer
            components).
        states : torch.Tensor of shape (rows, probes, time, state_size)
            The meta-model's states, only for pairs (``models`` given) and with
            ``return_states=True``.
        """
        pairs = models is not None
        if not pairs:
            n_models, batch = self.embeddings.shape[0], x.shape[0]
            models = torch.arange(n_models, device=x.device).repeat_interleave(batch)
            x = x[None].expand(n_models, *x.shape).reshape(-1, *x.shape[1:])
            rows = (n_models, batch)
        else:
            rows = (x.shape[0], 1)
        y, g = self.meta(x, self.embeddings[models])
        weight, bias = self.map_weight[models], self.map_bias[models]
        mask = self.target_mask[models]
        if self.meta.per_step_maps:
            h = (torch.einsum("rth,rtkh->rtk", g, weight) + bias) * mask
        else:
            h = (torch.einsum("rth,rkh->rtk", g, weight) + bias[:, None]) * mask[:, None]
        out = y.view(*rows, *y.shape[1:]), h.view(*rows, *h.shape[1:])
        if self.return_states and pairs:
            return (*out, g.view(*rows, *g.shape[1:]))
        return out


class EmulatedNetwork(nn.Module):
    """The meta-model frozen at one embedding: an operable network.

    Returned by :meth:`DynamoEmbedder.model_at`. It is a plain ``nn.Module`` (save it with
    ``torch.save(net.state_dict(), path)``). With a recurrent meta-model it maps inputs
    ``(batch, time, n_inputs)`` to outputs ``(batch, time, n_outputs)``; with a
    convolutional one, images ``(batch, channels, height, width)`` to logits
    ``(batch, n_outputs)``.

    Parameters
    ----------
    meta : ConditionedRNN or ConditionedCNN
        A trained meta-model; it is copied, and the copy's parameters frozen.
    theta : array-like of shape (n_components,)
        The embedding.

    Attributes
    ----------
    meta : ConditionedRNN or ConditionedCNN
        A private copy of the meta-model.
    theta : torch.Tensor of shape (n_components,)
        The embedding (a buffer).
    hidden_size : int
        Size of the state used by :meth:`recurrent_step` (``2 * H`` for LSTM meta-models,
        whose state is ``[h, c]``); for a CNN, the width of one step's state.
    n_inputs : int
        Input features per step (RNN) or image channels (CNN).

    Examples
    --------
    >>> import torch
    >>> from skdynamo.nn import ConditionedRNN, EmulatedNetwork
    >>> meta = ConditionedRNN(n_inputs=3, n_outputs=2, n_components=4, hidden_size=8)
    >>> net = EmulatedNetwork(meta, torch.zeros(4))
    >>> net(torch.zeros(5, 10, 3)).shape
    torch.Size([5, 10, 2])
    """

    def __init__(self, meta: nn.Module, theta: Any) -> None:
        super().__init__()
        self.meta = copy.deepcopy(meta)
        for p in self.meta.parameters():
            p.requires_grad_(False)
        ref = next(self.meta.parameters())
        self.register_buffer("theta", torch.as_tensor(theta, dtype=ref.dtype,
                                                      device=ref.device).reshape(-1))
        self.n_inputs = meta.n_inputs
        self.hidden_size = meta.step_state_size
        shape = getattr(meta, "input_shape", None)  # images: what the network takes
        if shape is not None:
            self.input_shape = shape

    def _theta(self, batch):
        return self.theta[None].expand(batch, -1)

    def trajectories(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network and return its states and outputs.

        Parameters
        ----------
        x : torch.Tensor
            Sequences ``(batch, time, n_inputs)`` or images ``(batch, channels, height,
            width)``, as the meta-model takes.

        Returns
        -------
        hidden : torch.Tensor of shape (batch, time or layer, state_size)
            The meta-model's states.
        outputs : torch.Tensor
            Outputs ``(batch, time, n_outputs)`` or logits ``(batch, n_outputs)``.
        """
        y, g = self.meta(x, self._theta(x.shape[0]))
        return g, y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the outputs of the network.

        Parameters
        ----------
        x : torch.Tensor
            Sequences ``(batch, time, n_inputs)`` or images ``(batch, channels, height,
            width)``, as the meta-model takes.

        Returns
        -------
        torch.Tensor
            Outputs ``(batch, time, n_outputs)`` or logits ``(batch, n_outputs)``.
        """
        return self.trajectories(x)[1]

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        """Return the initial state ``g_0``, repeated for a batch.

        Parameters
        ----------
        batch : int, default=1
            Number of copies.

        Returns
        -------
        torch.Tensor of shape (batch, hidden_size)
            The initial state; ``[h, c]`` for an LSTM meta-model.
        """
        return self.meta.flat_initial_state(self._theta(batch))

    def recurrent_step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Run one step of the update ``h' = F(h, x_t)`` (used by :mod:`skdynamo.dynamics`).

        Parameters
        ----------
        x_t : torch.Tensor of shape (batch, n_inputs)
            Inputs at this step.
        h : torch.Tensor of shape (batch, hidden_size)
            Current states.

        Returns
        -------
        torch.Tensor of shape (batch, hidden_size)
            The next states.
        """
        return self.meta.step(x_t, h, self._theta(x_t.shape[0]))
