"""Seeded, cached populations of small convolutional networks on sklearn's digits images.

The images are sklearn's bundled 8x8 digits (:func:`sklearn.datasets.load_digits`, no
download), scaled to ``[0, 1]`` and shaped ``(n, 1, 8, 8)``. One fixed stratified split
(independent of every member's seed) gives the training images and the held-out images;
members differ in *training variant* (what they compute), width, depth and seed. Every
variant writes the same 10 logits, so all members share one output space.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
import time
from functools import partial

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state
from torch import nn

from ._builder import (at_least, build_population, check_grid, check_names, grid, member_seed,
                       train_loop, train_with_retries, with_cache_parameters)

__all__ = ["CNN_VARIANTS", "ConvNetwork", "load_digits_images", "digits_variant_labels",
           "train_conv_network", "make_cnn_population"]

# A fixed derangement of the ten digits (no digit keeps its label).
_PERMUTATION = np.array([7, 4, 9, 0, 2, 8, 1, 5, 3, 6])

#: Training variants: what a member computes from a digit ``d``, always as one of 10 labels.
CNN_VARIANTS = {
    "digits": "the digit itself (labels 0-9)",
    "parity": "the digit's parity (label 0 for even, 1 for odd; logits 2-9 unused)",
    "permuted": "a fixed permutation of the digits "
                f"({', '.join(f'{d}->{p}' for d, p in enumerate(_PERMUTATION))})",
}

N_CLASSES = 10


def digits_variant_labels(digits: np.ndarray, variant: str) -> np.ndarray:
    """Relabel true digits for one training variant of the CNN population.

    ``'digits'`` returns the digits, ``'parity'`` ``digits % 2``, ``'permuted'`` the fixed
    permutation listed in :data:`CNN_VARIANTS`. Every variant uses the labels 0-9 of one
    shared 10-logit output space.

    Parameters
    ----------
    digits : array-like of int
        True digit labels, 0-9.
    variant : {'digits', 'parity', 'permuted'}
        The training variant.

    Returns
    -------
    labels : ndarray of int64
        The variant's labels, shaped like ``digits``.

    Raises
    ------
    ValueError
        If ``variant`` is unknown.

    Examples
    --------
    >>> from skdynamo.datasets import digits_variant_labels
    >>> digits_variant_labels([3, 4, 7], "parity").tolist()
    [1, 0, 1]
    """
    digits = np.asarray(digits, dtype=np.int64)
    if variant == "digits":
        return digits.copy()
    if variant == "parity":
        return digits % 2
    if variant == "permuted":
        return _PERMUTATION[digits]
    raise ValueError(f"Unknown variant {variant!r}; variants are {sorted(CNN_VARIANTS)}.")


def load_digits_images(test_size: float = 0.4, random_state: int | None = 0
                       ) -> list[np.ndarray]:
    """Load scikit-learn's digits as images, split into training and test sets.

    Images have shape ``(n, 1, 8, 8)``, float32 in ``[0, 1]`` (pixel values / 16); labels
    are the true digits. The split is stratified and fixed by ``random_state``.

    Parameters
    ----------
    test_size : float, default=0.4
        Fraction of the 1797 images in the test set.
    random_state : int or None, default=0
        Seed of the split.

    Returns
    -------
    list of ndarray
        ``[X_train, X_test, y_train, y_test]``, as ``train_test_split`` returns them.

    Examples
    --------
    >>> from skdynamo.datasets import load_digits_images
    >>> X_train, X_test, y_train, y_test = load_digits_images()
    >>> X_train.shape, X_test.shape
    ((1078, 1, 8, 8), (719, 1, 8, 8))
    """
    data = load_digits()
    X = (data.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(X, data.target.astype(np.int64), test_size=test_size,
                            stratify=data.target, random_state=random_state)


class ConvNetwork(nn.Module):
    """A small CNN: ``depth`` conv blocks, global average pooling, a linear head.

    Block ``i`` is ``Conv2d(3x3, padding 1) -> ReLU``, followed by a 2x2 max-pool for the
    first two blocks (8x8 -> 4x4 -> 2x2); every block has ``width`` channels. The blocks
    live in ``features`` (``features.<i>.conv``, ``features.<i>.act``), the head is
    ``head`` (its input, the pooled features, is the penultimate layer).

    Parameters
    ----------
    width : int, default=16
        Channels of every conv block.
    depth : int, default=2
        Number of conv blocks.
    n_classes : int, default=10
        Output logits.
    in_channels : int, default=1
        Image channels.
    """

    def __init__(self, width: int = 16, depth: int = 2, n_classes: int = N_CLASSES,
                 in_channels: int = 1) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"width and depth must be >= 1, got {width} and {depth}.")
        self.width, self.depth, self.n_classes = int(width), int(depth), int(n_classes)
        blocks = []
        for i in range(depth):
            block = nn.Sequential()
            block.add_module("conv", nn.Conv2d(in_channels if i == 0 else width, width, 3,
                                               padding=1))
            block.add_module("act", nn.ReLU())
            if i < 2:
                block.add_module("pool", nn.MaxPool2d(2))
            blocks.append(block)
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images to logits.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, channels, height, width)
            Images.

        Returns
        -------
        torch.Tensor of shape (batch, n_classes)
            The logits.
        """
        return self.head(self.pool(self.features(x)).flatten(1))


def _accuracy(model, X, y):
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(X)).argmax(1).numpy()
    return float(np.mean(pred == y))


def train_conv_network(variant: str = "digits", width: int = 16, depth: int = 2, *,
                       n_steps: int = 1500, batch_size: int = 64, lr: float = 1e-2,
                       random_state: int | np.random.RandomState | None = 0
                       ) -> tuple[ConvNetwork, float]:
    """Train one :class:`ConvNetwork` on a digits variant (Adam, cosine schedule, CPU).

    Parameters
    ----------
    variant : {'digits', 'parity', 'permuted'}, default='digits'
        The labels to learn (:func:`digits_variant_labels`).
    width : int, default=16
        Channels of every conv block.
    depth : int, default=2
        Number of conv blocks.
    n_steps : int, default=1500
        Adam steps.
    batch_size : int, default=64
        Images per step, drawn from the training split of :func:`load_digits_images`.
    lr : float, default=1e-2
        Peak learning rate (cosine schedule).
    random_state : int, RandomState instance or None, default=0
        Seed of the initialisation and the batches.

    Returns
    -------
    model : ConvNetwork
        The trained network, in eval mode.
    accuracy : float
        Test accuracy on the held-out images of :func:`load_digits_images` (labels of the
        variant).
    """
    X_train, X_test, d_train, d_test = load_digits_images()
    y_train = digits_variant_labels(d_train, variant)
    y_test = digits_variant_labels(d_test, variant)
    Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train)

    def batch_loss(model, rng):
        idx = torch.from_numpy(rng.randint(len(Xt), size=batch_size))
        return nn.functional.cross_entropy(model(Xt[idx]), yt[idx])

    model, _ = train_loop(lambda: ConvNetwork(width, depth), batch_loss,
                          check_random_state(random_state), n_steps=n_steps, lr=lr, clip=None)
    return model, _accuracy(model, X_test, y_test)


def _train_member(spec, n_steps, lr, min_accuracy, max_retries):
    def attempt(i):
        model, acc = train_conv_network(
            spec["variant"], spec["width"], spec["depth"], n_steps=n_steps, lr=lr,
            random_state=member_seed(spec["seed"], i, 31))
        return model, {"state_dict": model.state_dict(), "accuracy": float(acc)}, \
            acc >= min_accuracy

    start = time.perf_counter()
    record = train_with_retries(attempt, max_retries)[1]
    return {**record, "train_time": time.perf_counter() - start}


@with_cache_parameters
def make_cnn_population(variants: Sequence[str] = ("digits", "parity", "permuted"),
                        widths: Sequence[int] = (8, 16), depths: Sequence[int] = (2, 3),
                        n_seeds: int = 3, *, seed_offset: int = 0, n_steps: int = 1500,
                        lr: float = 1e-2, n_probes: int = 256, min_accuracy: float = 0.85,
                        max_retries: int = 2, data_home: str | PathLike | None = None,
                        download_if_missing: bool = True, n_jobs: int | None = None,
                        verbose: bool = False) -> Bunch:
    """Train (or load from the cache) a seeded population of small CNNs on digits images.

    The population is the full grid ``variants x widths x depths x seeds`` of
    :class:`ConvNetwork` members. Variants change the computation, not the interface: every
    member reads ``(n, 1, 8, 8)`` images and writes 10 logits (see :data:`CNN_VARIANTS`;
    parity uses labels 0/1 of the same 10 logits). Members are trained on one thread each
    (joblib workers) and cached weights-only, like :func:`make_rnn_population`.

    A member whose test accuracy stays below ``min_accuracy`` is retrained from a new seed
    up to ``max_retries`` times; if it still fails it is kept but reported by a warning and
    by ``learned=False`` in the result, never silently.

    Parameters
    ----------
    variants : sequence of str, default=('digits', 'parity', 'permuted')
        Training variants (keys of :data:`CNN_VARIANTS`).
    widths : sequence of int, default=(8, 16)
        Channels per conv block.
    depths : sequence of int, default=(2, 3)
        Conv blocks.
    n_seeds : int, default=3
        Seeds per (variant, width, depth).
    seed_offset : int, default=0
        First seed; use it to draw held-out members (``seed_offset=100``).
    n_steps : int, default=1500
        Adam steps per member (batches of 64 training images).
    lr : float, default=1e-2
        Adam learning rate (cosine-annealed).
    n_probes : int, default=256
        Number of probe images: the first ``n_probes`` held-out images.
    min_accuracy : float, default=0.85
        Test accuracy a member must reach to count as learned.
    max_retries : int, default=2
        Retraining attempts for a member below ``min_accuracy``.
    {cache_parameters}

    Returns
    -------
    population : :class:`~sklearn.utils.Bunch`
        ``models`` (list of :class:`ConvNetwork`, eval mode), ``variant``, ``width``,
        ``depth``, ``seed`` (arrays, one entry per model), ``accuracy`` (test accuracy of
        each model on its variant), ``learned`` (bool array), ``train_time`` (seconds spent
        training each member, retries included, as measured when it was trained),
        ``probe_inputs`` (ndarray ``(n_probes, 1, 8, 8)``: the first ``n_probes`` held-out
        images), ``test_images`` (all held-out images, ``(n_test, 1, 8, 8)``; those after
        the first ``n_probes`` were never probes), ``test_digits`` (their true digits; use
        :func:`digits_variant_labels` for a variant's labels) and ``DESCR``.
    """
    variants, widths, depths = list(variants), list(widths), list(depths)
    check_grid(n_seeds, variants=variants, widths=widths, depths=depths)
    check_names(variants=(variants, CNN_VARIANTS))
    specs = grid(n_seeds, seed_offset, variant=variants, width=[int(w) for w in widths],
                 depth=[int(d) for d in depths])
    common = dict(n_steps=n_steps, lr=lr, min_accuracy=min_accuracy, max_retries=max_retries)
    pop = build_population(
        "cnn_population", specs, common, partial(_train_member, **common),
        lambda s: ConvNetwork(s["width"], s["depth"]),
        columns=("variant", "width", "depth", "seed", "accuracy", "learned", "train_time"),
        **at_least("accuracy", min_accuracy=min_accuracy),
        label=lambda s, r: (f"{s['variant']}/width {s['width']}/depth {s['depth']}/seed "
                            f"{s['seed']}: accuracy={r['accuracy']:.3f}"),
        max_retries=max_retries,
        data_home=data_home, download_if_missing=download_if_missing, n_jobs=n_jobs,
        verbose=verbose)
    _, X_test, _, d_test = load_digits_images()
    pop.update(
        probe_inputs=X_test[:n_probes].copy(), test_images=X_test, test_digits=d_test,
        DESCR=(f"{len(specs)} convolutional networks on sklearn's 8x8 digits: "
               f"variants={variants}, widths={widths}, depths={depths}, "
               f"seeds={seed_offset}..{seed_offset + n_seeds - 1}, {n_steps} Adam steps, "
               f"10 shared output logits; probes are the first {min(n_probes, len(X_test))} "
               f"of {len(X_test)} held-out images."))
    return pop
