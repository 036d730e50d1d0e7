"""The Transformer family: causal sequence models built of Transformer blocks, beside RNNs.

Tokens are time. A member is any ``nn.Module`` mapping ``(n, T, features)`` to outputs
whose step ``t`` depends only on the inputs up to ``t``, built of
``nn.TransformerEncoderLayer`` blocks (or of the blocks named through ``layers=``). The
residual stream after each block is recorded at every position (the blocks concatenated
along the unit axis, as the layers of a multi-layer RNN are), reduced by PCA and emulated
by the same :class:`~skdynamo.nn.ConditionedRNN` as recurrent networks.

The family extends :class:`~skdynamo.families.RecurrentFamily`: members holding
``nn.RNN``/``nn.GRU``/``nn.LSTM`` layers are recorded as the recurrent family records
them, so a population mixing RNNs and Transformers on one task interface resolves to this
family and embeds in one map (:func:`skdynamo.families.resolve_family` picks the most
specific family that claims a member).
"""

from contextlib import ExitStack

import numpy as np
import torch
from torch import nn

from .._recording import Trajectories, probe_batches, recording
from ._recurrent import RecurrentFamily, _to_numpy, recurrent_layers

__all__ = ["TransformerFamily", "transformer_blocks", "record_transformer", "check_causal"]


def transformer_blocks(model, layers="auto"):
    """The blocks of ``model`` whose outputs are its residual stream, in registration order.

    ``layers='auto'``: every ``nn.TransformerEncoderLayer``. Otherwise a submodule name
    (``named_modules()``), an ``nn.Module`` type, or a list of those: user blocks, each
    returning the residual stream ``(batch, time, width)`` (or a tuple starting with it).
    """
    named = dict(model.named_modules())
    if isinstance(layers, str) and layers == "auto":
        return [m for m in named.values() if isinstance(m, nn.TransformerEncoderLayer)]
    blocks = []
    for item in (layers if isinstance(layers, (list, tuple)) else [layers]):
        if isinstance(item, type) and issubclass(item, nn.Module):
            found = [m for n, m in named.items() if n and isinstance(m, item)]
        elif isinstance(item, str) and item and item in named:
            found = [named[item]]
        else:
            raise ValueError(f"layers entry {item!r} names no block of "
                             f"{type(model).__name__} (pass 'auto', submodule names such as "
                             f"{[n for n in named if n][:6]}, or nn.Module types).")
        blocks += [m for m in found if all(m is not b for b in blocks)]
    return blocks


def _stream(block, output):
    """A block's output as a batch-first ``(batch, time, width)`` tensor."""
    out = output[0] if isinstance(output, (tuple, list)) else output
    attn = getattr(block, "self_attn", None)
    if isinstance(attn, nn.MultiheadAttention) and not attn.batch_first:
        out = out.transpose(0, 1)
    return out


def _run_blocks(model, x, blocks):
    """Run ``model`` on ``x``; returns (residual streams concatenated, outputs)."""
    streams = {id(b): [] for b in blocks}
    with ExitStack() as hooks:   # every hook removed, whatever happens
        for b in blocks:
            hooks.callback(b.register_forward_hook(
                lambda m, a, o: streams[id(m)].append(_stream(m, o))).remove)
        out = model(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    missing = [i for i, b in enumerate(blocks) if len(streams[id(b)]) != 1]
    if missing:
        raise ValueError(f"blocks {missing} ran {[len(streams[id(blocks[i])]) for i in missing]} "
                         "times in one forward pass (each must run once); pass a callable "
                         "recorder(model, inputs) -> (hidden, outputs).")
    return torch.cat([streams[id(b)][0] for b in blocks], dim=-1), out


def record_transformer(model, inputs, *, layers="auto", batch_size=512):
    """Record a Transformer's residual stream after each block, at every position.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : ndarray of shape (n_probes, n_timesteps, n_features)
    layers : 'auto', str, nn.Module type or list of those, default='auto'
        The blocks (:func:`transformer_blocks`).
    batch_size : int, default=512

    Returns
    -------
    Trajectories
        ``hidden`` of shape ``(n_probes, n_timesteps, n_blocks * width)``.
    """
    blocks = transformer_blocks(model, layers)
    if not blocks:
        raise ValueError(f"layers={layers!r} found no Transformer block in "
                         f"{type(model).__name__}; name its blocks (layers=['blocks.0', ...]) "
                         "or pass a callable recorder.")
    hidden, outputs = [], []
    with recording(model):
        for x in probe_batches(model, inputs, batch_size):
            h, y = _run_blocks(model, x, blocks)
            hidden.append(_to_numpy(h, "hidden"))
            outputs.append(_to_numpy(y, "outputs"))
    return Trajectories(np.concatenate(hidden), np.concatenate(outputs))


def check_causal(index, model, probes, record=None, *, n_last=None, seed=0):
    """ValueError naming model ``index`` if its outputs or recorded states before the last
    steps change when only the last steps of a few probes change (a non-causal model).

    ``n_last`` steps (default: the last quarter, at least one) of four probes are replaced
    by noise of the probes' scale; every earlier step must stay the same. ``record(model,
    inputs) -> Trajectories`` records the model (default: :func:`record_transformer`).
    """
    T = probes.shape[1]
    if T < 2:
        return
    n_last = n_last or max(1, T // 4)
    start = T - n_last
    x = np.asarray(probes[:4], dtype=np.float32)
    scale = float(x.std()) or 1.0
    changed = x.copy()
    changed[:, start:] = (np.random.RandomState(seed).standard_normal(changed[:, start:].shape)
                          * 2 * scale).astype(np.float32)
    record = record or record_transformer
    a, b = (record(model, v) for v in (x, changed))
    for what, u, v in (("recorded states", a.hidden, b.hidden), ("outputs", a.outputs,
                                                                  b.outputs)):
        if u.ndim < 3:
            continue  # last-step outputs: the residual stream tells
        diff = float(np.abs(u[:, :start] - v[:, :start]).max())
        if diff > 1e-4 * (1.0 + float(np.abs(u).max())):
            raise ValueError(
                f"Model {index} ({type(model).__name__}) is not causal: its {what} at steps "
                f"< {start} changed (by up to {diff:.3g}) when only inputs at steps >= "
                f"{start} changed. DYNAMO emulates sequence models with a recurrent "
                "meta-model, so outputs at step t may depend only on inputs up to t: give "
                "its attention a causal mask (nn.Transformer.generate_square_subsequent_"
                "mask(T), is_causal=True).")


class TransformerFamily(RecurrentFamily):
    """Causal Transformers (and RNNs beside them): probes ``(n, T, features)``, tokens as
    time, the residual stream after each block as hidden state.

    Members holding recurrent layers are recorded as by :class:`RecurrentFamily`; any other
    module at its Transformer blocks (``layers``), after a causality check
    (:func:`check_causal`). Targets, meta-model (:class:`~skdynamo.nn.ConditionedRNN`),
    loss and baking are the recurrent family's.
    """

    name = "transformer"
    # Not measured on Transformer populations yet: 'auto' adds none (an int still does).
    auto_augmentation = 0
    auto_bfloat16 = False  # not measured on Transformer populations either

    @classmethod
    def is_member(cls, model):
        return isinstance(model, nn.Module) and any(
            isinstance(m, nn.TransformerEncoderLayer) for m in model.modules())

    def _is_recurrent(self, model):
        return bool(recurrent_layers(model))

    def _check_member_probes(self, index, model, probes):
        if self._is_recurrent(model):
            return super()._check_member_probes(index, model, probes)
        blocks = transformer_blocks(model, self.layers)
        if not blocks and self.recorder == "auto":
            raise ValueError(f"Model {index} ({type(model).__name__}) holds no recurrent layer "
                             f"and layers={self.layers!r} finds no Transformer block in it; "
                             "name its blocks (layers=['blocks.0', ...]) or pass a callable "
                             "recorder.")
        inner = {id(m) for b in blocks for m in b.modules()}
        first = next((m for m in model.modules() if id(m) not in inner
                      and isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))), None)
        width = getattr(first, "in_features", getattr(first, "in_channels", None))
        if width is not None and width != probes.shape[-1]:
            raise ValueError(f"Model {index} ({type(model).__name__}) takes inputs of width "
                             f"{width}, but probe_inputs has {probes.shape[-1]} features.")
        check_causal(index, model, probes, lambda m, x: self.record_member(index, m, x))

    def record_member(self, index, model, probes):
        if self.recorder != "auto" or self._is_recurrent(model):
            return super().record_member(index, model, probes)
        return record_transformer(model, probes, layers=self.layers)
