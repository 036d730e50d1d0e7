"""Guards against silent failures: divergence, devices, huge recordings.

Each helper is called from one line of the estimator or net it protects, so the
training code itself stays as it is.
"""

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from skorch.dataset import get_len

__all__ = ["check_device", "check_divergence", "check_magnitude", "held_out_loss",
           "native_bfloat16", "resolve_precision"]

#: A fit whose held-out loss ends this many times above its value before training (and
#: above 1, worse than emulating each model by its mean) has diverged. A fit that merely
#: did not improve much (a two-epoch doctest) is far below this.
DIVERGENCE_RATIO = 10.0
#: Recorded outputs beyond this magnitude are named in the divergence message.
LARGE_TARGET = 1e3
#: Recordings beyond this magnitude are refused before training: their squared errors
#: overflow float32 and the loss becomes inf/NaN, which would be blamed on ``lr``.
HUGE_TARGET = 1e12


def held_out_loss(net, X, y=None):
    """Mean loss of ``net.module_`` on its validation split of ``X`` (None without one).

    Runs in eval mode without gradients, under :func:`torch.random.fork_rng` so that the
    data loader's seed draw does not shift the training's random stream.
    """
    _, dataset = net.get_split_datasets(X, y)
    if dataset is None or len(dataset) == 0:
        return None
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        for batch in net.get_iterator(dataset, training=False):
            n = get_len(batch[0])
            total += float(net.validation_step(batch)["loss"]) * n
            count += n
    return total / count


def _largest_output(X):
    """(magnitude, model index) of the largest recorded output in a PairDataset."""
    outputs = getattr(X, "outputs", None)
    if outputs is None or outputs.numel() == 0:
        return 0.0, None
    per_model = outputs.abs().reshape(outputs.shape[0], -1).amax(1)
    i = int(per_model.argmax())
    return float(per_model[i]), i


def check_divergence(net, X, initial, final, error=RuntimeError):
    """Raise ``error`` when the held-out loss ended far above where it started (or is not
    finite); warn when it merely ended above it. Both name ``lr``."""
    if initial is None or final is None:
        return
    diverged = not np.isfinite(final) or (final > DIVERGENCE_RATIO * initial and final > 1.0)
    if not diverged and final <= initial:
        return
    msg = (f"the held-out loss of the trained meta-model is {final:.3g}, "
           f"{final / max(initial, 1e-12):.3g} times its value before training "
           f"({initial:.3g}). Lower the learning rate (lr={net.lr}).")
    size, model = _largest_output(X)
    if size > LARGE_TARGET:
        msg += (f" The recorded outputs are also large (up to {size:.3g}, model {model}): "
                "rescale them (e.g. a recorder that divides them) so that they are of order 1.")
    if diverged:
        raise error(f"DYNAMO training diverged: {msg}")
    warnings.warn(f"DYNAMO training made the emulation worse: {msg}", ConvergenceWarning,
                  stacklevel=5)


def check_magnitude(index, what, array, where="on the probe inputs"):
    """Refuse a recording so large that emulating it overflows float32 (names the model)."""
    size = float(np.max(np.abs(array))) if np.size(array) else 0.0
    if size > HUGE_TARGET:
        raise ValueError(
            f"Model {index} produced {what} of magnitude up to {size:.3g} {where}: targets "
            f"this large (above {HUGE_TARGET:.0e}) cannot be emulated in float32, whatever "
            "the learning rate. Rescale the model's outputs/states (e.g. a recorder that "
            "divides them) so that they are of order 1.")


def check_device(device):
    """Resolve ``device`` (``'auto'`` -> cuda when available) to a usable torch device.

    Raises a ValueError naming ``device`` and what this installation offers, instead of
    torch's AssertionError (no CUDA) or RuntimeError (unknown device string) later.
    """
    available = ["cpu"]
    if torch.cuda.is_available():
        available += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        available.append("mps")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    ok = dev is not None and (
        dev.type == "cpu"
        or (dev.type == "cuda" and torch.cuda.is_available()
            and (dev.index is None or dev.index < torch.cuda.device_count()))
        or (dev.type == "mps" and torch.backends.mps.is_available()))
    if not ok:
        raise ValueError(f"device={device!r} is not available in this installation; use one "
                         f"of {available} or 'auto'.")
    return device


#: Values of ``DynamoEmbedder(precision=...)``.
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device):
    """Whether ``device`` is a CPU with bfloat16 instructions (AVX-512 BF16 or AMX, as
    torch's CPU feature probe reports), on which bfloat16 matrix products run faster than
    float32. Any other device, or a torch that cannot tell, is False."""
    if torch.device(device).type != "cpu":
        return False
    try:  # AVX-512 alone does not count: oneDNN emulates bfloat16 there
        return bool(torch.backends.mkldnn.is_available()
                    and (torch.cpu._is_avx512_bf16_supported()
                         or torch.cpu._is_amx_tile_supported()))
    except (AttributeError, RuntimeError):  # an older or different build of torch
        return False


def resolve_precision(precision, device, auto_bfloat16=True):
    """The autocast dtype of training steps for ``precision`` on ``device``, or None for
    float32. ``'auto'``: bfloat16 when the model family takes it (``auto_bfloat16``, its
    attribute of that name) on a CPU where :func:`native_bfloat16` says so (measured in
    ``benchmarks/bench_precision.py``); float32 elsewhere, CUDA included, where the
    bfloat16 path has not been run yet (``'bfloat16'`` asks for it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "float32" or (precision == "auto" and not (
            auto_bfloat16 and native_bfloat16(device))):
        return None
    if torch.device(device).type not in ("cpu", "cuda"):
        raise ValueError(f"precision='bfloat16' needs a CPU or CUDA device, got "
                         f"device={device!r}; use precision='float32'.")
    return torch.bfloat16
