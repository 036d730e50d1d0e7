"""Recording convolutional networks: the layer index is the time axis.

For a feed-forward or convolutional network, DYNAMO's "trajectory" of an image is the
sequence of its activations layer after layer. :func:`record_cnn` hooks
the chosen layers, reduces each layer's feature maps spatially to one vector per image
(global average by default, or a small ``k x k`` grid) and returns a
:class:`LayerTrajectories`: a :class:`~skdynamo.Trajectories` whose time axis is the
layer index, which also keeps every layer's vectors at their own width.

Members of a population may differ in width (handled downstream by per-model maps) and
in depth; :func:`align_depths` resamples members to a common number of steps by relative
depth.

:class:`ConvolutionalFamily` is the family object: FiLM-conditioned
:class:`~skdynamo.nn.ConditionedCNN` meta-model, one map per member and layer, KL on the
logits by default, baked into a :class:`~skdynamo.StandaloneCNN`.
"""

from __future__ import annotations

from typing import Any
import numbers
from functools import partial
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.utils import Bunch
from torch import nn

from .._augment import augment_images
from .._guards import check_magnitude
from .._recording import Trajectories, probe_batches, record_each, recording
from .._standalone import StandaloneCNN
from .._targets import pad_targets, reduce_layers
from ..nn import ConditionedCNN
from ._base import ModelFamily, check_output_shapes
from ._recurrent import recurrent_layers

__all__ = ["ConvolutionalFamily", "LayerTrajectories", "cnn_layers", "record_cnn",
           "align_depths", "record_cnn_population"]

_ACTIVATIONS = tuple(
    cls for cls in vars(nn.modules.activation).values()
    if isinstance(cls, type) and issubclass(cls, nn.Module) and cls is not nn.Module
    and cls not in (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.LogSoftmax,
                    nn.Softmax2d)
)


class LayerTrajectories(Trajectories):
    """Per-layer recordings of one network; the layer index is the time axis.

    Parameters
    ----------
    layers : sequence of array-like of shape (n_probes, n_units_l)
        One array per recorded layer, in forward order; widths may differ.
    outputs : array-like of shape (n_probes, n_outputs)
        The network's outputs (logits).
    layer_names : sequence of str, default=None
        Names of the recorded layers (``'<module name>'`` for a module's output,
        ``'<module name>:input'`` for the input of a module, e.g. the penultimate features
        entering the head).
    name : str, default=None
        Optional label used in error messages.

    Attributes
    ----------
    hidden : ndarray of shape (n_probes, n_layers, max_units)
        The layers stacked along time with the **zero-padding convention**: step ``l`` holds
        layer ``l``'s vector in ``hidden[:, l, :n_units[l]]`` and zeros after it. Use
        ``layers`` for the unpadded vectors.
    layers : list of ndarray
        The unpadded per-layer arrays.
    n_units : ndarray of int
        Width of each layer's vector.
    layer_names : list of str

    Examples
    --------
    >>> import numpy as np
    >>> t = LayerTrajectories([np.ones((4, 8)), np.ones((4, 16))], np.zeros((4, 10)))
    >>> t.hidden.shape, t.n_units.tolist()
    ((4, 2, 16), [8, 16])
    """

    def __init__(self, layers: Sequence[np.ndarray], outputs: np.ndarray,
                 layer_names: Sequence[str] | None = None, name: str | None = None) -> None:
        layers = [np.asarray(a, dtype=np.float32) for a in layers]
        if not layers:
            raise ValueError("LayerTrajectories needs at least one layer.")
        for i, a in enumerate(layers):
            if a.ndim != 2 or a.shape[0] != layers[0].shape[0]:
                raise ValueError(f"LayerTrajectories: layer {i} has shape {a.shape}; every "
                                 f"layer must be (n_probes={layers[0].shape[0]}, n_units).")
        n_units = np.array([a.shape[1] for a in layers])
        hidden = np.zeros((layers[0].shape[0], len(layers), n_units.max()), dtype=np.float32)
        for i, a in enumerate(layers):
            hidden[:, i, : a.shape[1]] = a
        super().__init__(hidden, outputs, name=name)
        if self.outputs.ndim != 2:
            raise ValueError("LayerTrajectories.outputs must have shape (n_probes, n_outputs); "
                             f"got {self.outputs.shape}.")
        self.layers = layers
        self.n_units = n_units
        self.layer_names = (list(layer_names) if layer_names is not None
                            else [f"layer{i}" for i in range(len(layers))])
        if len(self.layer_names) != len(layers):
            raise ValueError(f"{len(self.layer_names)} layer names for {len(layers)} layers.")

    @property
    def n_layers(self) -> int:
        """Number of recorded layers (the time axis)."""
        return len(self.layers)

    def __repr__(self):
        return (f"LayerTrajectories(n_probes={self.n_probes}, layers={self.layer_names}, "
                f"n_units={self.n_units.tolist()}, outputs={self.outputs.shape}"
                + (f", name={self.name!r})" if self.name else ")"))


def _is_leaf(module):
    return next(module.children(), None) is None


def cnn_layers(model: nn.Module, layers: str | type | Sequence[str | type] = "auto"
               ) -> list[tuple[str, nn.Module, str]]:
    """Resolve a layer selection to ``[(layer_name, module, where)]`` in registration order.

    ``where`` is ``'output'`` (the module's output is recorded) or ``'input'`` (its input,
    used for the penultimate features entering the final ``nn.Linear``).

    Parameters
    ----------
    model : torch.nn.Module
        A convolutional network.
    layers : 'auto', str, nn.Module type, or list of those, default='auto'
        ``'auto'``: for every ``nn.Conv2d``, the first activation module (ReLU, GELU,
        ...) registered after it and before the next conv or linear layer, or the conv's
        own output if there is none (e.g. a functional ``F.relu``); then the input of the
        last ``nn.Linear`` (the penultimate features), if the model has one. A name
        (str), a module type, or a list mixing both selects modules by
        ``named_modules()`` name or by type.

    Returns
    -------
    list of (str, torch.nn.Module, str)
        The selected layers: name, module and ``where``.

    Raises
    ------
    ValueError
        If the selection matches no module, or ``'auto'`` finds no ``nn.Conv2d``.
    TypeError
        If ``layers`` is of another type.

    Examples
    --------
    >>> from skdynamo import cnn_layers
    >>> from skdynamo.datasets import ConvNetwork
    >>> [(name, where) for name, _, where in cnn_layers(ConvNetwork(width=8, depth=2))]
    [('features.0.act', 'output'), ('features.1.act', 'output'), ('head:input', 'input')]
    """
    named = [(n, m) for n, m in model.named_modules()]
    by_name = dict(named)
    if isinstance(layers, str) and layers == "auto":
        leaves = [(n, m) for n, m in named if _is_leaf(m)]
        convs = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"layers='auto' found no nn.Conv2d in {type(model).__name__}; "
                             "name the layers to record (layers=['features.0', ...]).")
        chosen = []
        for i in convs:
            pick = leaves[i]
            for n, m in leaves[i + 1:]:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    break
                if isinstance(m, _ACTIVATIONS):
                    pick = (n, m)
                    break
            chosen.append((pick[0], pick[1], "output"))
        linears = [(n, m) for n, m in leaves if isinstance(m, nn.Linear)]
        if linears:
            n, m = linears[-1]
            chosen.append((f"{n}:input", m, "input"))
        return chosen
    items = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not items:
        raise ValueError("layers is empty; pass 'auto', names or module types.")
    chosen, seen = [], set()
    for item in items:
        if isinstance(item, str):
            if item not in by_name or item == "":
                sample = [n for n, _ in named if n][:12]
                raise ValueError(f"Layer {item!r} does not exist in {type(model).__name__}; "
                                 f"its layers include {sample}.")
            found = [(item, by_name[item])]
        elif isinstance(item, type) and issubclass(item, nn.Module):
            found = [(n, m) for n, m in named if n and isinstance(m, item) and _is_leaf(m)]
            if not found:
                raise ValueError(f"No layer of type {item.__name__} in "
                                 f"{type(model).__name__}.")
        else:
            raise TypeError("layers must be 'auto', a layer name, an nn.Module type, or a list "
                            f"of those; got {item!r}.")
        for n, m in found:
            if n not in seen:
                seen.add(n)
                chosen.append((n, m, "output"))
    return chosen


def _check_spatial(spatial):
    if isinstance(spatial, str):
        if spatial != "pool":
            raise ValueError(f"spatial must be 'pool', an int k or a (h, w) grid; got "
                             f"{spatial!r}.")
        return None
    grid = (spatial, spatial) if isinstance(spatial, numbers.Integral) else tuple(spatial)
    if len(grid) != 2 or not all(isinstance(g, numbers.Integral) and g >= 1 for g in grid):
        raise ValueError(f"spatial must be 'pool', an int k >= 1 or a (h, w) grid; got "
                         f"{spatial!r}.")
    return tuple(int(g) for g in grid)


def _reduce(t, grid, layer, who):
    """One vector per image: average over space (``grid=None``) or over a small grid."""
    if isinstance(t, (tuple, list)):
        t = t[0]
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{who}: layer {layer!r} returned {type(t).__name__}, not a tensor.")
    if t.ndim == 2:
        return t.detach().clone()
    if t.ndim == 4:
        if grid is None:
            return t.mean(dim=(2, 3))
        return nn.functional.adaptive_avg_pool2d(t, grid).flatten(1)
    if t.ndim == 3:
        if grid is None:
            return t.mean(dim=2)
        return nn.functional.adaptive_avg_pool1d(t, grid[0] * grid[1]).flatten(1)
    raise ValueError(f"{who}: layer {layer!r} produced activations of shape {tuple(t.shape)}; "
                     "expected (batch, channels, height, width) or (batch, features).")


def _check_images(model, images, who):
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        hint = (" For single-channel images add the channel axis: images[:, None]."
                if images.ndim == 3 else "")
        raise ValueError(f"{who}: image probes must have shape (n_images, channels, height, "
                         f"width); got an array of shape {images.shape}.{hint}")
    if images.shape[0] == 0:
        raise ValueError(f"{who}: no probe images were given.")
    conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and conv[1].in_channels != images.shape[1]:
        raise ValueError(f"{who}: image probes have {images.shape[1]} channels but the first "
                         f"convolution {conv[0]!r} expects {conv[1].in_channels} (images of "
                         "shape (n_images, channels, height, width)).")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{who}: image probes contain non-finite values (NaN or infinite).")
    return images


def record_cnn(model: nn.Module, images: np.ndarray | torch.Tensor, *,
               layers: str | type | Sequence[str | type] = "auto",
               spatial: str | int | tuple[int, int] = "pool", batch_size: int = 512,
               name: str | None = None) -> LayerTrajectories:
    """Record a convolutional network layer by layer: the layer index is the time axis.

    Forward hooks capture the chosen layers; each layer's feature maps are averaged over
    space to one vector per image (``spatial='pool'``) or over a small grid
    (``spatial=2``: a 2x2 adaptive average pool, units ordered channel-major,
    ``c * 4 + 2 * i + j``). Two-dimensional activations (linear layers) are kept as they
    are. Steps follow the order in which the layers run in the forward pass.

    The model runs in eval mode under ``torch.inference_mode`` on its own device; every
    submodule's training flag is restored and every hook removed afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        A convolutional network.
    images : array-like of shape (n_images, channels, height, width)
        The probe images.
    layers : 'auto', str, nn.Module type, or list of those, default='auto'
        See :func:`cnn_layers`. ``'auto'`` records each conv block's output (the
        activation following each ``nn.Conv2d``) and the penultimate features (the input
        of the last ``nn.Linear``). Note that for a global-average-pool head with
        ``spatial='pool'`` the penultimate features repeat the last block's vector.
    spatial : 'pool', int or (int, int), default='pool'
        Global average pooling, or the size of an adaptive average-pool grid kept per layer.
    batch_size : int, default=512
        Images per forward pass.
    name : str, default=None
        Label of the model in error messages (and in the result).

    Returns
    -------
    LayerTrajectories
        ``hidden`` of shape ``(n_images, n_layers, max_units)`` (zero-padded, see
        :class:`LayerTrajectories`), ``outputs`` ``(n_images, n_outputs)``, ``layers``
        (unpadded per-layer arrays) and ``layer_names``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo.datasets._cnn_zoo import ConvNetwork
    >>> t = record_cnn(ConvNetwork(width=8, depth=3), np.zeros((5, 1, 8, 8)))
    >>> t.layer_names
    ['features.0.act', 'features.1.act', 'features.2.act', 'head:input']
    >>> t.hidden.shape, t.outputs.shape
    ((5, 4, 8), (5, 10))
    """
    who = f"Model {name!r}" if name is not None else type(model).__name__
    images = _check_images(model, images, who)
    grid = _check_spatial(spatial)
    chosen = cnn_layers(model, layers)
    captured = {key: [] for key, _, _ in chosen}
    order = []

    def make_hook(key, where):
        def hook(module, args, output=None):
            value = args[0] if where == "input" else output
            captured[key].append(_reduce(value, grid, key, who))
            if key not in order:
                order.append(key)
        return hook

    handles = []
    per_layer = {key: [] for key, _, _ in chosen}
    outputs = []
    try:
        for key, module, where in chosen:
            hook = make_hook(key, where)
            handles.append(module.register_forward_pre_hook(hook) if where == "input"
                           else module.register_forward_hook(hook))
        with recording(model):
            for x in probe_batches(model, images, batch_size):
                for key in captured:
                    captured[key].clear()
                out = model(x)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                for key in captured:
                    calls = len(captured[key])
                    if calls == 0:
                        raise ValueError(f"{who}: layer {key!r} was not called in the forward "
                                         "pass; choose layers the model runs.")
                    if calls > 1:
                        raise ValueError(f"{who}: layer {key!r} ran {calls} times in one "
                                         "forward pass (a module reused at several depths); "
                                         "name layers that run once each.")
                    per_layer[key].append(captured[key][0].to("cpu", torch.float32).numpy())
                outputs.append(out.detach().to("cpu", torch.float32).numpy())
    finally:
        for h in handles:
            h.remove()
    arrays = [np.concatenate(per_layer[key]) for key in order]
    for key, arr in zip(order, arrays):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{who}: layer {key!r} produced non-finite (NaN or infinite) "
                             "activations on the probe images.")
    outputs = np.concatenate(outputs)
    if outputs.ndim != 2:
        raise ValueError(f"{who}: outputs have shape {outputs.shape[1:]} per image; expected "
                         "a vector of logits (n_images, n_outputs).")
    if not np.all(np.isfinite(outputs)):
        raise ValueError(f"{who}: the outputs are non-finite (NaN or infinite) on the probe "
                         "images.")
    return LayerTrajectories(arrays, outputs, layer_names=order, name=name)


def _relative_depth_index(n_layers, n_steps):
    """Source layer of each of ``n_steps`` steps: nearest relative depth, halves round up."""
    if n_steps == 1:
        return np.array([n_layers - 1])
    pos = np.arange(n_steps) * (n_layers - 1) / (n_steps - 1)
    return np.floor(pos + 0.5 + 1e-9).astype(int)


def _aligned_steps(depths, n_steps):
    """The number of steps ``K`` members of these depths are aligned to (``n_steps`` of
    :func:`align_depths`)."""
    if n_steps == "max":
        return max(depths)
    if n_steps == "min":
        return min(depths)
    if not (isinstance(n_steps, numbers.Integral) and n_steps >= 1):
        raise ValueError(f"n_steps must be 'max', 'min' or an int >= 1; got {n_steps!r}.")
    return int(n_steps)


def align_depths(trajectories: Sequence[LayerTrajectories], n_steps: str | int = "max"
                 ) -> list[LayerTrajectories]:
    """Resample members of different depths to a common number of steps by relative depth.

    A member with ``L`` recorded layers places layer ``l`` at relative depth
    ``l / (L - 1)`` (first recorded layer 0, last 1). Step ``k`` of ``K`` sits at relative
    depth ``k / (K - 1)`` and takes the member's layer nearest to it (ties go to the
    deeper layer); with ``K`` above ``L`` some layers repeat, below ``L`` some are skipped.
    Layers are never interpolated: layers of one member may differ in width and meaning.
    ``K = 1`` keeps the last layer.

    Parameters
    ----------
    trajectories : sequence of LayerTrajectories
        Recordings of the members (:func:`record_cnn`).
    n_steps : 'max', 'min' or int, default='max'
        ``K``: the deepest member's number of layers (nothing dropped), the shallowest's,
        or a given number.

    Returns
    -------
    list of LayerTrajectories
        New objects (inputs untouched); ``layer_names`` say which layer fills each step.

    Examples
    --------
    >>> import numpy as np
    >>> a = LayerTrajectories([np.zeros((2, 4))] * 3, np.zeros((2, 10)))
    >>> b = LayerTrajectories([np.zeros((2, 4))] * 4, np.zeros((2, 10)))
    >>> [t.layer_names for t in align_depths([a, b])]
    [['layer0', 'layer1', 'layer1', 'layer2'], ['layer0', 'layer1', 'layer2', 'layer3']]
    """
    trajectories = list(trajectories)
    for i, t in enumerate(trajectories):
        if not isinstance(t, LayerTrajectories):
            raise TypeError(f"align_depths: member {i} is a {type(t).__name__}, not "
                            "LayerTrajectories (record it with record_cnn).")
    if not trajectories:
        return []
    n_steps = _aligned_steps([t.n_layers for t in trajectories], n_steps)
    aligned = []
    for t in trajectories:
        src = _relative_depth_index(t.n_layers, n_steps)
        aligned.append(LayerTrajectories([t.layers[s] for s in src], t.outputs,
                                         layer_names=[t.layer_names[s] for s in src],
                                         name=t.name))
    return aligned


def _record_member(index, model, images, layers, spatial, recorder):
    if recorder is None:
        return record_cnn(model, images, layers=layers, spatial=spatial, name=str(index))
    result = recorder(model, np.array(images))  # a copy each: see record_cnn
    if isinstance(result, LayerTrajectories):
        return result
    try:
        per_layer, outputs = result
    except (TypeError, ValueError):
        raise TypeError("a recorder for CNNs must return a LayerTrajectories or a pair "
                        "(layers, outputs): a list of (n_images, n_units_l) arrays (or an "
                        "(n_images, n_layers, n_units) array) and (n_images, n_outputs) "
                        "logits.") from None
    if isinstance(per_layer, (np.ndarray, torch.Tensor)) and np.ndim(per_layer) == 3:
        per_layer = [per_layer[:, i] for i in range(per_layer.shape[1])]
    per_layer = [np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a)
                 for a in per_layer]
    outputs = np.asarray(outputs.detach().cpu() if isinstance(outputs, torch.Tensor)
                         else outputs)
    return LayerTrajectories(per_layer, outputs, name=str(index))


def _check_member(i, t, images):
    """One CNN member's recording against the probe images (errors name model ``i``)."""
    if not isinstance(t, LayerTrajectories):
        raise TypeError(f"Model {i} is a {type(t).__name__}; image probes need "
                        "LayerTrajectories (record_cnn) for precomputed recordings.")
    if t.n_probes != len(images):
        raise ValueError(f"Model {i} has {t.n_probes} recorded images; expected "
                         f"{len(images)} (one per probe image).")
    if not (np.all(np.isfinite(t.hidden)) and np.all(np.isfinite(t.outputs))):
        raise ValueError(f"Model {i} has non-finite (NaN or infinite) activations or "
                         "outputs on the probe images.")
    check_magnitude(i, "activations", t.hidden, "on the probe images")
    check_magnitude(i, "outputs", t.outputs, "on the probe images")


def _check_population(recorded, images):
    """Recordings of a CNN population against each other and the probe images."""
    for i, t in enumerate(recorded):
        _check_member(i, t, images)
    check_output_shapes([t.outputs for t in recorded], unit="image")
    return recorded


def record_cnn_population(models, images, *, layers="auto", spatial="pool", align="max",
                          recorder=None, n_jobs=None):
    """Record every CNN of a population (:func:`record_cnn`), then align depths.

    Elements may also be precomputed :class:`LayerTrajectories`. Members must share the
    output space: a member whose number of outputs differs from model 0's raises an error
    naming it. ``align`` is passed to :func:`align_depths` as ``n_steps`` (``None`` skips
    alignment). ``recorder(model, images)``, when given, replaces :func:`record_cnn` and
    returns a :class:`LayerTrajectories` or ``(layers, outputs)``. Recording runs in
    threads; a module listed several times is recorded once, models sharing a
    submodule one after the other.
    """
    models = list(models)
    if not models:
        raise ValueError("record_cnn_population needs at least one model.")
    recorded = record_each(
        models, partial(_record_member, layers=layers, spatial=spatial, recorder=recorder),
        images, n_jobs)
    recorded = _check_population(recorded, images)
    return recorded if align is None else align_depths(recorded, align)


def is_convolutional(model):
    """A module with a 2-D convolution and no recurrent layer."""
    return (isinstance(model, torch.nn.Module) and not recurrent_layers(model)
            and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()))


@torch.no_grad()
def bake_cnn(meta, theta):
    """Fold ``theta`` into a :class:`~skdynamo.StandaloneCNN` equal to ``meta`` at it: the
    FiLM scale and shift after each convolution fold into its weights and bias."""
    net = StandaloneCNN(meta.in_channels, meta.n_outputs, meta.hidden_size, meta.pools,
                        meta.grid, meta.image_size).to(theta.device)
    for conv, src, film in zip(net.convs, meta.convs, meta.films):
        scale, shift = film(theta[None])
        conv.weight.copy_(src.weight * scale[0][:, None, None, None])
        conv.bias.copy_(src.bias * scale[0] + shift[0])
    net.readout.load_state_dict(meta.readout.state_dict())
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class ConvolutionalFamily(ModelFamily):
    """Convolutional networks: probe images ``(n, C, H, W)``, recorded layers as time.

    Members of different depths are aligned by relative depth to :attr:`n_steps` steps
    (:func:`align_depths`); each member's layers are PCA-reduced separately.

    Parameters
    ----------
    **settings
        The recording settings of :class:`ModelFamily` (``spatial`` is checked here).
    """

    name = "cnn"
    probe_rank = 4
    meta_class = ConditionedCNN
    standalone_class = StandaloneCNN
    # An image is one step per layer, so CNNs take more images for their per-layer maps.
    n_search_probes = 128
    n_refine_probes = 32
    # Not measured on CNN populations yet (their fits are the longest): 'auto' adds none.
    auto_augmentation = 0
    # bfloat16 training steps were no faster than float32 on the CPU for the CNN zoo, and
    # a little less faithful (docs/fidelity.md, "Precision").
    auto_bfloat16 = False

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.grid = _check_spatial(self.spatial)

    @classmethod
    def is_member(cls, model):
        return isinstance(model, LayerTrajectories) or is_convolutional(model)

    @classmethod
    def probe_mismatch(cls, index, model, shape):
        hint = (" For single-channel images add the channel axis: images[:, None]."
                if len(shape) == 3 else "")
        return (f"Model {index} ({type(model).__name__}) is convolutional but probe_inputs "
                f"have shape {shape}: convolutional models need probe images of shape "
                f"(n_images, channels, height, width).{hint}")

    def _check_probe_shape(self, probes):
        if probes.ndim != 4:
            hint = (" For single-channel images add the channel axis: images[:, None]."
                    if probes.ndim == 3 else "")
            raise ValueError(f"probe_inputs must be images of shape (n_probes, channels, "
                             f"height, width) for convolutional models; got shape "
                             f"{probes.shape}.{hint}")
        if probes.shape[0] < 2 or min(probes.shape[1:]) < 1:
            raise ValueError(f"probe_inputs needs at least 2 images of at least one channel "
                             f"and pixel; got shape {probes.shape}.")

    def _check_member_probes(self, index, model, probes):
        conv = next(((n, c) for n, c in model.named_modules()
                     if isinstance(c, nn.Conv2d)), None)
        if conv is not None and conv[1].in_channels != probes.shape[1]:
            raise ValueError(
                f"Model {index} ({type(model).__name__}): its first convolution {conv[0]!r} "
                f"takes {conv[1].in_channels} channels, but the probe images have "
                f"{probes.shape[1]} (images of shape (n, channels, height, width)).")

    def default_probes(self, models, rng):
        raise ValueError(
            "probe_inputs=None: convolutional models need probe images. Pass "
            "probe_inputs=, an array of shape (n_images, channels, height, width), "
            "ideally held-out images of the task.")

    def augment_probes(self, probes, n, rng):
        # Noisy, shifted and blended images.
        return augment_images(probes, n, rng)

    def record_member(self, index, model, probes):
        recorder = None if self.recorder == "auto" else self.recorder
        return _record_member(index, model, probes, self.layers, self.spatial, recorder)

    def check_recordings(self, recordings, probes):
        recordings = _check_population(recordings, probes)
        return align_depths(recordings, self.n_steps)

    def representation(self, recording):
        # The last recorded layer: the penultimate features.
        layers = getattr(recording, "layers", None)
        return np.asarray(layers[-1] if layers else recording.hidden[:, -1], dtype=np.float64)

    def check_member(self, index, recording, probes):
        _check_member(index, recording, probes)

    def reduce_member(self, recording, train_idx):
        # Layers are reduced one by one, so reducing before aligning depths (which only
        # picks layers) gives the targets of the aligned recording.
        hidden, mask = reduce_layers(recording.layers, train_idx, self.n_pcs)
        return Bunch(hidden=hidden, mask=mask, outputs=recording.outputs)

    def combine_targets(self, reduced):
        shape = check_output_shapes([r.outputs for r in reduced], unit="image")
        n_steps = _aligned_steps([r.hidden.shape[1] for r in reduced], self.n_steps)
        src = [_relative_depth_index(r.hidden.shape[1], n_steps) for r in reduced]
        hidden, mask = pad_targets([r.hidden[:, s] for r, s in zip(reduced, src)], self.n_pcs,
                                   [r.mask[s] for r, s in zip(reduced, src)])
        return Bunch(hidden=hidden, mask=mask, output_shape=tuple(shape),
                     n_steps=hidden.shape[2])

    def meta_params(self, probes, targets, *, n_components, hidden_size, cell, conditioning):
        return dict(kind=self.meta_class.kind, in_channels=probes.shape[1],
                    n_outputs=targets.output_shape[-1], n_components=n_components,
                    n_steps=targets.n_steps, image_size=probes.shape[2:],
                    hidden_size=hidden_size, grid=self.grid)

    def default_output_loss(self, output_shape):
        # A softmax over one output is constant: single-logit (binary) classifiers are
        # emulated on their raw outputs.
        return "kl" if output_shape[-1] > 1 else "mse"

    def bake(self, meta, theta):
        return bake_cnn(meta, self._theta(meta, theta))

    @classmethod
    def probe_shape(cls, meta):
        return (meta.in_channels, *meta.image_size)

    def n_timesteps(self, x):
        return None
