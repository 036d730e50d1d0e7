"""Turning recordings into DYNAMO's training targets (numpy only)."""

import numpy as np
from sklearn.decomposition import PCA

__all__ = ["reduce_hidden", "output_variance", "pad_targets", "initial_embeddings"]


def reduce_hidden(hidden, train_idx, n_pcs):
    """PCA-reduce one model's hidden states to ``k = min(n_pcs, n_units)`` components.

    PCA is fitted on the training probes; scores are scaled to unit total variance and
    each component's sign is fixed by its scores (positive third moment), so a model and a
    copy with permuted, sign-flipped or rotated units get the same targets.

    Returns
    -------
    reduced : ndarray of shape (n_probes, n_timesteps, k), float32
    """
    n_probes, steps, units = hidden.shape
    flat = hidden.reshape(-1, units).astype(np.float64)
    train = hidden[train_idx].reshape(-1, units).astype(np.float64)
    k = int(min(n_pcs, units, train.shape[0]))
    pca = PCA(n_components=k, svd_solver="full").fit(train)
    total = float(pca.explained_variance_.sum())
    if total <= 1e-12:
        # A model whose hidden state never moves has nothing to emulate: zero targets.
        return np.zeros((n_probes, steps, k), dtype=np.float32)
    scores = pca.transform(flat) / np.sqrt(total)
    train_scores = pca.transform(train)
    signs = np.where((train_scores ** 3).sum(0) < 0, -1.0, 1.0)
    return (scores * signs).reshape(n_probes, steps, k).astype(np.float32)


def output_variance(outputs, train_idx):
    """Total variance of a model's outputs on the training probes (floored)."""
    y = outputs[train_idx].reshape(-1, outputs.shape[-1]).astype(np.float64)
    return max(float(y.var(0).sum()), 1e-6)


def pad_targets(reduced, n_targets):
    """Stack per-model reduced states into (N, P, T, n_targets) with a validity mask."""
    n = len(reduced)
    p, t, _ = reduced[0].shape
    out = np.zeros((n, p, t, n_targets), dtype=np.float32)
    mask = np.zeros((n, n_targets), dtype=np.float32)
    for i, r in enumerate(reduced):
        out[i, :, :, : r.shape[-1]] = r
        mask[i, : r.shape[-1]] = 1.0
    return out, mask


def _behaviour_features(outputs, reduced, sample, out_scale):
    """Reparameterisation-invariant description of a model: its outputs on a sample of
    probes and the Gram matrix of its reduced states at a sample of (probe, time) points."""
    y = outputs[sample[0]].reshape(-1) / np.sqrt(out_scale)
    h = reduced[sample[1][0], sample[1][1]]                 # (m, k)
    gram = (h @ h.T)[np.triu_indices(len(h))]
    return y, gram


def initial_embeddings(outputs, reduced, out_scales, train_idx, n_components, rng):
    """Starting embeddings: PCA of reparameterisation-invariant behaviour features.

    Functionally identical models get identical starting points; distinct behaviours start
    apart. Scaled to unit root-mean-square norm.
    """
    n = len(outputs)
    probes = rng.choice(train_idx, size=min(32, len(train_idx)), replace=False)
    steps = reduced[0].shape[1]
    pts = (rng.choice(train_idx, size=96), rng.randint(steps, size=96))
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
        init[:, :k] = PCA(n_components=k, svd_solver="full").fit_transform(feats)
        # Components beyond the data's rank get small noise so no dimension is dead.
        init[:, k:] = 0.01 * rng.standard_normal((n, n_components - k))
        rms = np.sqrt((init ** 2).sum(1).mean())
        init /= max(rms, 1e-12)
    return init.astype(np.float32)
