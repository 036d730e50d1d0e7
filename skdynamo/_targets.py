"""Turning recordings into DYNAMO's training targets (numpy only)."""

import numpy as np
from sklearn.decomposition import PCA

__all__ = ["reduce_hidden", "reduce_layers", "output_variance", "floor_output_scales",
           "pad_targets", "initial_embeddings"]

#: A member's output variance is floored at this fraction of the population's median
#: (:func:`floor_output_scales`).
MIN_RELATIVE_OUTPUT_VARIANCE = 1e-2


def _pca_scores(x, train_idx, n_pcs):
    """Unit-total-variance, sign-fixed PCA scores of ``x`` (..., n_units), fitted on the
    rows ``x[train_idx]`` (indices into the first axis); shape ``x.shape[:-1] + (k,)``.

    Every member of every fit and ``transform`` goes through here once. The scores are
    computed once for all rows, and the sign rule reads the training rows off them (it
    needs only the sign of each component's third moment). The fit itself stays
    scikit-learn's: the targets, and so every fit, must not change by a rounding.
    """
    units = x.shape[-1]
    flat = x.reshape(-1, units).astype(np.float64)
    train = x[train_idx].reshape(-1, units).astype(np.float64)
    k = int(min(n_pcs, units, train.shape[0]))
    # The eigendecomposition of the units' covariance (units << samples) gives the same
    # components as a full SVD of the samples, several times faster.
    with np.errstate(divide="ignore", invalid="ignore"):  # a state that never moves
        pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(train)
    total = float(pca.explained_variance_.sum())
    if total <= 1e-12:
        # A model (or layer) whose state never moves has nothing to emulate: zero targets.
        return np.zeros(x.shape[:-1] + (k,))
    # pca.transform without its input checks (the arrays are ours and finite).
    scores = ((flat - pca.mean_) @ pca.components_.T).reshape(x.shape[:-1] + (k,))
    s = scores[train_idx].reshape(-1, k)
    signs = np.where((s * s * s).sum(0) < 0, -1.0, 1.0)
    return scores * (signs / np.sqrt(total))


def reduce_hidden(hidden, train_idx, n_pcs):
    """PCA-reduce one model's hidden states to ``k = min(n_pcs, n_units)`` components.

    PCA is fitted on the training probes; scores are scaled to unit total variance and
    each component's sign is fixed by its scores (positive third moment), so a model and a
    copy with permuted, sign-flipped or rotated units get the same targets.

    Returns
    -------
    reduced : ndarray of shape (n_probes, n_timesteps, k), float32
    """
    return _pca_scores(hidden, train_idx, n_pcs).astype(np.float32)


def reduce_layers(layers, train_idx, n_pcs):
    """PCA-reduce each layer of a feed-forward model separately (layers as time).

    Layer ``l`` (``(n_probes, n_units_l)``) keeps ``k_l = min(n_pcs, n_units_l)``
    components, scaled to unit total variance per layer and sign-fixed as in
    :func:`reduce_hidden`, so each layer weighs the same in the loss.

    Returns
    -------
    reduced : ndarray of shape (n_probes, n_layers, n_pcs), float32
        Zero beyond a layer's ``k_l`` components.
    mask : ndarray of shape (n_layers, n_pcs), float32
        1 where a layer has that component.
    """
    n_probes = layers[0].shape[0]
    reduced = np.zeros((n_probes, len(layers), n_pcs), dtype=np.float32)
    mask = np.zeros((len(layers), n_pcs), dtype=np.float32)
    for i, a in enumerate(layers):
        scores = _pca_scores(a, train_idx, n_pcs)
        reduced[:, i, : scores.shape[1]] = scores
        mask[i, : scores.shape[1]] = 1.0
    return reduced, mask


def output_variance(outputs, train_idx):
    """Total variance of a model's outputs on the training probes (floored)."""
    y = outputs[train_idx].reshape(-1, outputs.shape[-1]).astype(np.float64)
    return max(float(y.var(0).sum()), 1e-6)


def floor_output_scales(scales, min_relative=MIN_RELATIVE_OUTPUT_VARIANCE):
    """Floor each member's output variance at ``min_relative`` times the population's.

    The output loss divides each member's squared error by its own output variance (so
    that it reads as 1 - R^2). A member whose outputs barely move on the probes (a
    collapsed training run, a dead readout) would then weigh up to a million times more
    than the others and the shared meta-model would be trained for it alone (measured:
    one member with constant outputs beside 27 trained ones took their held-out output
    R^2 from 0.99 to about 0). Measured populations span 0.14 to 3.2 times their median
    (task and random probes), far above the floor.

    Returns
    -------
    floored : ndarray of shape (n_models,)
    low : ndarray of int
        Indices of the members whose variance was raised.
    """
    scales = np.asarray(scales, dtype=np.float64)
    floor = min_relative * float(np.median(scales))
    low = np.flatnonzero(scales < floor)
    return np.maximum(scales, floor), low


def pad_targets(reduced, n_targets, masks=None):
    """Stack per-model reduced states into (N, P, T, n_targets) with a validity mask.

    The mask is ``(N, n_targets)``, or ``(N, T, n_targets)`` when per-layer ``masks``
    (from :func:`reduce_layers`) are given.
    """
    n = len(reduced)
    p, t, _ = reduced[0].shape
    out = np.zeros((n, p, t, n_targets), dtype=np.float32)
    for i, r in enumerate(reduced):
        out[i, :, :, : r.shape[-1]] = r
    if masks is not None:
        mask = np.zeros((n, t, n_targets), dtype=np.float32)
        for i, m in enumerate(masks):
            mask[i, :, : m.shape[-1]] = m
        return out, mask
    mask = np.zeros((n, n_targets), dtype=np.float32)
    for i, r in enumerate(reduced):
        mask[i, : r.shape[-1]] = 1.0
    return out, mask


def _behaviour_features(outputs, reduced, sample, out_scale):
    """Reparameterisation-invariant description of a model: its outputs on a sample of
    probes and the Gram matrix of its reduced states at a sample of (probe, time) points."""
    y = outputs[sample[0]].reshape(-1) / np.sqrt(out_scale)
    h = reduced[sample[1][0], sample[1][1]]                 # (m, k)
    gram = (h @ h.T)[np.triu_indices(len(h))]
    return y, gram


# Sample of the starting embeddings' features: probes of the output block, (probe, step)
# points of the state Gram block (benchmarks/study_anchor.py measures larger ones).
_INIT_PROBES, _INIT_POINTS = 32, 96


def initial_embeddings(outputs, reduced, out_scales, train_idx, n_components, rng):
    """Starting embeddings: PCA of reparameterisation-invariant behaviour features.

    Functionally identical models get identical starting points; distinct behaviours start
    apart. Scaled to unit root-mean-square norm.
    """
    n = len(outputs)
    probes = rng.choice(train_idx, size=min(_INIT_PROBES, len(train_idx)), replace=False)
    steps = reduced[0].shape[1]
    pts = (rng.choice(train_idx, size=_INIT_POINTS), rng.randint(steps, size=_INIT_POINTS))
    feats_y, feats_h = zip(*(_behaviour_features(o, r, (probes, pts), s)
                             for o, r, s in zip(outputs, reduced, out_scales)))
    blocks = []
    for block in (np.array(feats_y), np.array(feats_h)):
        block = block - block.mean(0)
        norm = np.sqrt((block ** 2).sum() / n)
        blocks.append(block / norm if norm > 1e-12 else block)
    feats = np.concatenate(blocks, axis=1)
    init = np.zeros((n, n_components))
    if n > 1:
        k = min(n_components, n - 1, feats.shape[1])
        with np.errstate(divide="ignore", invalid="ignore"):  # all members alike
            init[:, :k] = PCA(n_components=k, svd_solver="full").fit_transform(feats)
        # Components beyond the data's rank get small noise so no dimension is dead.
        init[:, k:] = 0.01 * rng.standard_normal((n, n_components - k))
        rms = np.sqrt((init ** 2).sum(1).mean())
        init /= max(rms, 1e-12)
    return init.astype(np.float32)
