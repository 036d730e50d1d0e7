"""Probe augmentation: perturbed and denser versions of the user's probes (numpy only).

Probe coverage is the largest lever found on fidelity: a meta-model trained on more, and
more varied, inputs emulates its members better on inputs it has not seen. The families
call :func:`augment_sequences` or :func:`augment_images` on the *training* probes of a
fit; the augmented probes are recorded and trained on, never held out, so the held-out
scores (``emulation_scores_``) stay measured on the user's own probes.
:func:`n_augmented` resolves ``DynamoEmbedder(probe_augmentation=...)`` to a number.
"""

from numbers import Integral

import numpy as np
from torch import nn

__all__ = ["n_augmented", "augment_sequences", "augment_images"]

#: Noise added by the noise perturbation, as a fraction of each feature's spread.
NOISE_SCALE = 0.2


def n_augmented(probe_augmentation, n_train, models, family):
    """Number of augmented probes a fit adds to its ``n_train`` training probes.

    ``'auto'`` adds ``family.auto_augmentation`` per training probe when every member
    is a module (recordings cannot be run on new probes, so a population with a
    ``Trajectories`` member is not augmented); an int is that number (0: none), and a
    ValueError names the first recorded member when one cannot be run on them.
    """
    recorded = next((i for i, m in enumerate(models) if not isinstance(m, nn.Module)), None)
    if probe_augmentation == "auto":
        return 0 if recorded is not None else int(family.auto_augmentation * n_train)
    n = int(probe_augmentation)
    if n > 0 and recorded is not None:
        raise ValueError(
            f"probe_augmentation={probe_augmentation!r}: model {recorded} is a "
            f"{type(models[recorded]).__name__} (a recording), which cannot be run on "
            "augmented probes; pass probe_augmentation=0 (or 'auto', which skips "
            "augmentation for recorded members), or pass the modules.")
    return n


def _check(probes, n, rank):
    probes = np.asarray(probes, dtype=np.float32)
    if probes.ndim != rank or len(probes) < 1:
        raise ValueError(f"augmentation needs at least one probe of rank {rank}; got shape "
                         f"{probes.shape}.")
    if not isinstance(n, Integral) or n < 0:
        raise ValueError(f"the number of augmented probes must be a non-negative int; got "
                         f"{n!r}.")
    return probes


def augment_sequences(probes, n, rng):
    """``n`` perturbed or denser versions of probe sequences ``(n_probes, T, F)``.

    Each augmented probe is made from randomly drawn probes by one of four perturbations,
    in equal shares: **noise** (Gaussian, :data:`NOISE_SCALE` times each feature's standard
    deviation over the probes), **dense** (a probe plus another probe rolled in time,
    minus the mean: twice the events, the same baseline), **splice** (one probe up to a
    random step, another after it: new orderings of events) and **scale** (a probe's
    deviations from the mean multiplied by a factor drawn log-uniformly in [0.5, 2]).

    Parameters
    ----------
    probes : ndarray of shape (n_probes, n_timesteps, n_features)
        The probes to perturb (a fit's training probes).
    n : int
        Number of augmented probes.
    rng : numpy.random.RandomState
        Seeds every draw.

    Returns
    -------
    ndarray of shape (n, n_timesteps, n_features), float32
    """
    x = _check(probes, n, 3)
    P, T, F = x.shape
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1))
    i, j = rng.randint(P, size=n), rng.randint(P, size=n)
    kind = rng.permutation(np.arange(n) % 4)
    out = x[i].copy()
    noise = kind == 0
    out[noise] += (NOISE_SCALE * std * rng.standard_normal((int(noise.sum()), T, F))
                   ).astype(np.float32)
    for a in np.flatnonzero(kind == 1):
        out[a] += np.roll(x[j[a]], rng.randint(T), axis=0) - mean
    for a in np.flatnonzero(kind == 2):
        cut = rng.randint(1, T) if T > 1 else 0
        out[a, cut:] = x[j[a], cut:]
    scale = kind == 3
    factor = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=int(scale.sum())))
    out[scale] = mean + (out[scale] - mean) * factor[:, None, None].astype(np.float32)
    return out.astype(np.float32)


def augment_images(probes, n, rng):
    """``n`` perturbed versions of probe images ``(n_probes, C, H, W)``.

    In equal shares: **noise** (Gaussian, :data:`NOISE_SCALE` times each channel's standard
    deviation), **shift** (by up to an eighth of the image, at least one pixel, in each
    direction, the border repeated) and **mix** (a convex blend ``w a + (1 - w) b`` of two
    images, ``w`` uniform in [0.5, 1]).

    Parameters
    ----------
    probes : ndarray of shape (n_probes, channels, height, width)
        The images to perturb (a fit's training probes).
    n : int
        Number of augmented images.
    rng : numpy.random.RandomState
        Seeds every draw.

    Returns
    -------
    ndarray of shape (n, channels, height, width), float32
    """
    x = _check(probes, n, 4)
    P, C, H, W = x.shape
    std = x.std(axis=(0, 2, 3))[:, None, None]
    i, j = rng.randint(P, size=n), rng.randint(P, size=n)
    kind = rng.permutation(np.arange(n) % 3)
    out = x[i].copy()
    noise = kind == 0
    out[noise] += (NOISE_SCALE * std * rng.standard_normal((int(noise.sum()), C, H, W))
                   ).astype(np.float32)
    mh, mw = max(1, H // 8), max(1, W // 8)
    padded = np.pad(x, ((0, 0), (0, 0), (mh, mh), (mw, mw)), mode="edge")
    for a in np.flatnonzero(kind == 1):
        dh, dw = rng.randint(-mh, mh + 1), rng.randint(-mw, mw + 1)
        out[a] = padded[i[a], :, mh + dh:mh + dh + H, mw + dw:mw + dw + W]
    mix = kind == 2
    w = rng.uniform(0.5, 1.0, size=int(mix.sum()))[:, None, None, None].astype(np.float32)
    out[mix] = w * out[mix] + (1 - w) * x[j[mix]]
    return out.astype(np.float32)
