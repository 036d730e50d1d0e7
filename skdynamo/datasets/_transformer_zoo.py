"""A seeded, cached population of small causal Transformers on the pulse tasks.

The members read the same ``n_channels`` pulse interface as the recurrent zoo
(:func:`skdynamo.datasets.make_rnn_population`) and write one output per channel at every
step, so Transformers and RNNs trained on the same task can be embedded together
(:class:`skdynamo.families.TransformerFamily`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
from sklearn.utils import Bunch
from torch import nn

from ._builder import (at_least, build_population, check_grid, check_names, grid, member_seed,
                       train_with_retries, with_cache_parameters)
from ._tasks import PULSE_TASKS
from ._zoo import pulse_probes, train_on_pulse_task

__all__ = ["CausalTransformer", "train_causal_transformer", "make_transformer_population"]


def sinusoidal_positions(n_timesteps, d_model):
    """The sinusoidal position code of Vaswani et al. (2017): ``(n_timesteps, d_model)``."""
    pos = torch.arange(n_timesteps, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32)
                     * (-math.log(10000.0) / d_model))
    code = torch.zeros(n_timesteps, d_model)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return code


class CausalTransformer(nn.Module):
    """A small causal Transformer with a linear readout at every position (tokens as time).

    Inputs are projected to ``d_model``, sinusoidal positions are added, and ``n_layers``
    pre-norm ``nn.TransformerEncoderLayer`` blocks run under a causal mask, so the output
    at step ``t`` depends only on the inputs up to ``t`` (the embedder checks it).

    Parameters
    ----------
    n_inputs, n_outputs : int
        Input and output widths.
    d_model : int, default=32
        Width of the residual stream.
    n_layers : int, default=2
        Number of Transformer blocks.
    n_heads : int, default=4
        Attention heads per block (must divide ``d_model``).

    Examples
    --------
    >>> import torch
    >>> from skdynamo.datasets import CausalTransformer
    >>> CausalTransformer(3, 3, d_model=16, n_layers=1, n_heads=2)(torch.zeros(2, 7, 3)).shape
    torch.Size([2, 7, 3])
    """

    def __init__(self, n_inputs: int, n_outputs: int, d_model: int = 32, n_layers: int = 2,
                 n_heads: int = 4) -> None:
        super().__init__()
        if d_model % n_heads or d_model % 2:
            raise ValueError(f"d_model must be even and divisible by n_heads; got "
                             f"d_model={d_model}, n_heads={n_heads}.")
        self.embed = nn.Linear(n_inputs, d_model)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model,
                                       dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs to outputs at every position.

        Parameters
        ----------
        x : tensor of shape (batch, time, n_inputs)
            Input sequences.

        Returns
        -------
        tensor of shape (batch, time, n_outputs)
            The readout of the last block's residual stream at every step.
        """
        n_timesteps = x.shape[1]
        h = self.embed(x) + sinusoidal_positions(n_timesteps, self.embed.out_features).to(x)
        mask = nn.Transformer.generate_square_subsequent_mask(n_timesteps, device=x.device,
                                                              dtype=x.dtype)
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.readout(self.norm(h))


def train_causal_transformer(task: str, d_model: int = 32, n_layers: int = 2,
                             n_heads: int = 4, *, n_steps: int = 1000, batch_size: int = 64,
                             n_timesteps: int = 50, n_channels: int = 3, lr: float = 3e-3,
                             task_params: dict | None = None,
                             random_state: int | None = 0) -> tuple[CausalTransformer, float]:
    """Train one :class:`CausalTransformer` on a pulse task with fresh data every step.

    The training loop is the one every zoo uses (Adam, cosine schedule, gradient
    clipping).

    Parameters
    ----------
    task : str
        Name of a pulse task (see :func:`make_task`).
    d_model, n_layers, n_heads : int, default=32, 2, 4
        Width of the residual stream, number of blocks, attention heads.
    n_steps : int, default=1000
        Adam steps.
    batch_size : int, default=64
        Sequences per step.
    n_timesteps, n_channels : int, default=50, 3
        Length and width of the task sequences.
    lr : float, default=3e-3
        Peak learning rate.
    task_params : dict, default=None
        Extra keyword arguments of the task generator.
    random_state : int, default=0
        Seed of the initialisation and the training data.

    Returns
    -------
    model : CausalTransformer
        The trained network, in eval mode.
    score : float
        R^2 of its outputs on 512 held-out sequences.
    """
    def build():
        return CausalTransformer(n_channels, n_channels, d_model, n_layers, n_heads)
    return train_on_pulse_task(build, task, n_steps=n_steps, batch_size=batch_size, lr=lr,
                               n_timesteps=n_timesteps, n_channels=n_channels,
                               task_params=task_params, random_state=random_state)


def _train_member(spec, n_steps, n_timesteps, n_channels, lr, min_score, max_retries):
    def attempt(i):
        model, score = train_causal_transformer(
            spec["task"], spec["d_model"], spec["n_layers"], spec["n_heads"], n_steps=n_steps,
            n_timesteps=n_timesteps, n_channels=n_channels, lr=lr,
            task_params=spec["task_params"], random_state=member_seed(spec["seed"], i, 31))
        return model, {"state_dict": model.state_dict(), "score": float(score)}, \
            score >= min_score
    return train_with_retries(attempt, max_retries)[1]


@with_cache_parameters
def make_transformer_population(tasks: Sequence[str] = ("flipflop", "integration", "delay"),
                                n_layers: Sequence[int] = (2,), n_seeds: int = 3, *,
                                d_model: int = 32, n_heads: int = 4, seed_offset: int = 0,
                                task_params: dict | None = None, n_steps: int = 1000,
                                n_timesteps: int = 50, n_channels: int = 3, lr: float = 3e-3,
                                n_probes: int = 256, min_score: float = 0.9,
                                max_retries: int = 2, data_home: str | None = None,
                                download_if_missing: bool = True, n_jobs: int | None = None,
                                verbose: bool = False, random_state: int = 0) -> Bunch:
    """Train (or load from the cache) a seeded population of causal Transformers.

    The Transformer counterpart of :func:`skdynamo.datasets.make_rnn_population`: the
    same pulse tasks, interface, probes (for equal ``tasks``, ``n_probes`` and
    ``random_state``), retries and ``learned`` flag. The population is the grid ``tasks x
    n_layers x seeds`` of :class:`CausalTransformer` members.

    Parameters
    ----------
    tasks : sequence of str, default=('flipflop', 'integration', 'delay')
        Names of pulse tasks (see :func:`make_task`).
    n_layers : sequence of int, default=(2,)
        Depths (Transformer blocks).
    n_seeds : int, default=3
        Seeds per (task, depth).
    d_model : int, default=32
        Width of the residual stream of every member.
    n_heads : int, default=4
        Attention heads per block.
    seed_offset : int, default=0
        First seed (members of other seeds for held-out populations).
    task_params : dict, default=None
        Extra keyword arguments per task name.
    n_steps : int, default=1000
        Adam steps per member.
    n_timesteps : int, default=50
        Length of the training sequences and probes.
    n_channels : int, default=3
        Input and output width.
    lr : float, default=3e-3
        Peak Adam learning rate (cosine-annealed).
    n_probes : int, default=256
        Probe sequences returned (a seeded mix of the tasks' inputs).
    min_score : float, default=0.9
        Held-out R^2 a member must reach to count as learned.
    max_retries : int, default=2
        Retrainings (other seeds) of a member below ``min_score``.
    {cache_parameters}
    random_state : int, default=0
        Seed of the probes.

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (list of :class:`CausalTransformer`), ``task``, ``n_layers``, ``seed``,
        ``score`` (held-out R^2 of each model on its task), ``learned`` (bool array),
        ``probe_inputs`` (ndarray of shape ``(n_probes, n_timesteps, n_channels)``) and
        ``DESCR``.
    """
    tasks, depths = list(tasks), [int(n) for n in n_layers]
    check_grid(n_seeds, tasks=tasks, n_layers=depths)
    check_names(tasks=(tasks, PULSE_TASKS))
    task_params = dict(task_params or {})
    specs = [{**s, "d_model": int(d_model), "n_heads": int(n_heads),
              "task_params": task_params.get(s["task"], {})}
             for s in grid(n_seeds, seed_offset, task=tasks, n_layers=depths)]
    common = dict(n_steps=n_steps, n_timesteps=n_timesteps, n_channels=n_channels, lr=lr,
                  min_score=min_score, max_retries=max_retries)
    pop = build_population(
        "transformer_population", specs, common, partial(_train_member, **common),
        lambda s: CausalTransformer(n_channels, n_channels, s["d_model"], s["n_layers"],
                                    s["n_heads"]),
        columns=("task", "n_layers", "seed", "score", "learned"),
        **at_least("score", min_score=min_score),
        label=lambda s, r: f"{s['task']}/{s['n_layers']} blocks/seed {s['seed']}: "
                           f"R2={r['score']:.3f}",
        max_retries=max_retries, data_home=data_home, download_if_missing=download_if_missing,
        n_jobs=n_jobs, verbose=verbose)
    pop.update(probe_inputs=pulse_probes(tasks, task_params, n_probes, n_timesteps,
                                          n_channels, random_state),
               DESCR=(f"{len(specs)} causal Transformers: tasks={tasks}, n_layers={depths}, "
                      f"d_model={d_model}, seeds={seed_offset}..{seed_offset + n_seeds - 1}, "
                      f"{n_channels}-channel pulse interface, {n_timesteps} steps."))
    return pop

