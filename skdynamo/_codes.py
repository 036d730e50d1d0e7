"""Embedding models into a frozen meta-model: optimise theta, solve each V in closed form.

:func:`multi_start_search` is the one multi-start search of the embedding space, shared by
``transform`` (:func:`fit_codes`) and :class:`~skdynamo.DynamoSemiSupervised`.
"""

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.utils import Bunch

__all__ = ["fit_codes", "ridge_maps", "emulation_r2", "multi_start_search", "search_candidates"]


def _augment(g):
    return torch.cat([g, torch.ones_like(g[..., :1])], dim=-1)


def ridge_maps(g, h, ridge=1e-3, per_step=False):
    """Least-squares maps from states ``g`` (..., P, T, H) to targets ``h`` (..., P, T, k).

    One map shared over time, or one per step (``per_step``: CNN layers). Returns
    ``weight (..., H + 1, k)`` (or ``(..., T, H + 1, k)``) acting on states augmented
    with a constant 1.
    """
    if per_step:
        ga, hf = _augment(g).transpose(-3, -2), h.transpose(-3, -2)    # (..., T, P, .)
    else:
        ga, hf = _augment(g).flatten(-3, -2), h.flatten(-3, -2)         # (..., PT, .)
    gram = ga.transpose(-1, -2) @ ga
    eye = torch.eye(gram.shape[-1], dtype=g.dtype, device=g.device)
    rhs = ga.transpose(-1, -2) @ hf
    return torch.linalg.solve(gram + ridge * ga.shape[-2] * eye, rhs)


def _apply_maps(g, weight, per_step=False):
    if per_step:
        return torch.einsum("...pth,...thk->...ptk", _augment(g), weight)
    return _augment(g) @ weight[..., None, :, :]


def _projected_loss(y_hat, g, y, h, scale, *, loss, per_step):
    """Loss of (models x starts) with V solved in closed form. Shapes (M, S, P, T, .)."""
    m, s = y_hat.shape[:2]
    weight = ridge_maps(g, h, per_step=per_step)
    h_hat = _apply_maps(g, weight, per_step)
    flat = lambda a: a.reshape(m * s, *a.shape[2:])  # noqa: E731
    return loss.per_model(flat(y_hat), flat(y), flat(h_hat), flat(h),
                          scale.repeat_interleave(s)).view(m, s)


def _run(meta, probes, theta):
    """Meta-model outputs and states for every theta in (M, S, d) on every probe.

    ``probes`` are sequences (P, T, F) or images (P, C, H, W); returns outputs
    (M, S, P, ...) and states (M, S, P, T, H).
    """
    m, s, d = theta.shape
    p = probes.shape[0]
    x = probes[None].expand(m * s, *probes.shape).reshape(-1, *probes.shape[1:])
    th = theta.reshape(m * s, d).repeat_interleave(p, dim=0)
    y, g = meta(x, th)
    return y.view(m, s, p, *y.shape[1:]), g.view(m, s, p, *g.shape[1:])


def search_candidates(embeddings):
    """Starting points of a search: the embeddings, or 32 k-means centres of many."""
    embeddings = np.asarray(embeddings)
    if len(embeddings) > 64:
        return KMeans(32, n_init=3, random_state=0).fit(embeddings).cluster_centers_
    return embeddings


def multi_start_search(objective, candidates, *, n_starts, max_iter, lr, score_chunk=None):
    """Minimise ``objective`` over embeddings from the best of ``candidates``.

    Every candidate is scored first; the ``n_starts`` best per problem are refined
    together by Adam (cosine-annealed learning rate, ``max_iter`` steps, gradients with
    respect to the embeddings only), and the best refined start wins.

    Parameters
    ----------
    objective : callable
        ``objective(theta)`` with ``theta`` of shape (1 or M, S, d) returns the loss of
        each of ``M`` problems (models) at each of the ``S`` points: (M, S).
    candidates : tensor of shape (C, d)
    n_starts, max_iter : int
    lr : float
    score_chunk : int, default=None
        Candidates scored per call (all at once if None).

    Returns
    -------
    Bunch
        ``theta`` (M, d) and ``loss`` (M,) of the winners, ``starts`` (M, S, d) and the
        final ``losses`` (M, S) of every refined start.
    """
    cand = candidates[None]
    with torch.no_grad():
        if score_chunk is None:
            cand_loss = objective(cand)
        else:
            cand_loss = torch.cat([objective(cand[:, i:i + score_chunk])
                                   for i in range(0, cand.shape[1], score_chunk)], dim=1)
    k = min(n_starts, candidates.shape[0])
    best = torch.topk(-cand_loss, k, dim=1).indices                  # (M, k)
    starts = candidates[best].clone()
    theta = starts.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(max_iter, 1))
    for _ in range(max_iter):
        loss = objective(theta)
        # autograd.grad: gradients w.r.t. theta only, the meta-model is left untouched.
        (grad,) = torch.autograd.grad(loss.sum(), theta)
        theta.grad = grad
        opt.step()
        sched.step()
    with torch.no_grad():
        final = objective(theta)
        pick = final.argmin(1)
        rows = torch.arange(final.shape[0], device=final.device)
        return Bunch(theta=theta[rows, pick].detach(), loss=final[rows, pick],
                     starts=starts, losses=final)


def fit_codes(meta, probes, outputs, hidden, scale, candidates, *, loss, n_starts=3,
              max_iter=100, lr=0.05, chunk=16):
    """Find each model's embedding with the meta-model frozen.

    Every candidate (training embeddings or their cluster centres) is scored first; the
    ``n_starts`` best per model are refined together by Adam, with each model's map ``V``
    re-solved in closed form at every step (variable projection). The best start wins
    (:func:`multi_start_search`).

    Parameters
    ----------
    probes : tensor (P, T, F); outputs : tensor (M, P, ...); hidden : tensor (M, P, T, k)
    scale : tensor (M,); candidates : tensor (C, d)
    loss : DynamoLoss

    Returns
    -------
    theta : ndarray (M, d); loss : ndarray (M,)
    """
    for p in meta.parameters():
        p.requires_grad_(False)
    per_step = meta.per_step_maps
    n_models = outputs.shape[0]
    expand = lambda a, s: a[:, None].expand(a.shape[0], s, *a.shape[1:])  # noqa: E731
    thetas, losses = [], []
    for start in range(0, n_models, chunk):
        sl = slice(start, start + chunk)
        y_m, h_m, s_m = outputs[sl], hidden[sl], scale[sl]
        m = y_m.shape[0]

        def objective(theta, y_m=y_m, h_m=h_m, s_m=s_m, m=m):
            y_hat, g = _run(meta, probes, theta)                 # (1 or m, S, P, T, .)
            s = theta.shape[1]
            value = _projected_loss(
                y_hat.expand(m, *y_hat.shape[1:]), g.expand(m, *g.shape[1:]),
                expand(y_m, s), expand(h_m, s), s_m, loss=loss, per_step=per_step)
            return value + loss.penalty(theta)

        found = multi_start_search(objective, candidates, n_starts=n_starts,
                                   max_iter=max_iter, lr=lr)
        thetas.append(found.theta.cpu().numpy())
        losses.append(found.loss.cpu().numpy())
    return np.concatenate(thetas), np.concatenate(losses)


@torch.no_grad()
def emulation_r2(meta, theta, train, valid, *, loss, maps=None):
    """Output and hidden R^2 on held-out probes for models at embeddings ``theta`` (M, d).

    ``train``/``valid`` are ``(probes, outputs, hidden)`` tuples. ``maps`` are learned
    ``(weight, bias)``; without them ``V`` is fitted by ridge on ``train``. ``loss`` (a
    :class:`~skdynamo._loss.DynamoLoss`) scores the outputs: for classifiers the output
    R^2 compares softmax probabilities and the argmax agreement is returned too.

    Returns
    -------
    output_r2, hidden_r2 : ndarray of shape (M,)
    agreement : ndarray of shape (M,) or None
        Fraction of held-out probes (and steps) on which the emulation's argmax matches
        the model's (classifiers only).
    """
    per_step = meta.per_step_maps
    th = theta[:, None]
    yv, gv = _run(meta, valid[0], th)
    yv, gv = yv[:, 0], gv[:, 0]
    if maps is None:
        _, gt = _run(meta, train[0], th)
        weight = ridge_maps(gt[:, 0], train[2], per_step=per_step)
        h_hat = _apply_maps(gv, weight, per_step)
    else:
        weight, bias = maps
        if per_step:
            h_hat = torch.einsum("nbth,ntkh->nbtk", gv, weight) + bias[:, None]
        else:
            h_hat = torch.einsum("nbth,nkh->nbtk", gv, weight) + bias[:, None, None]
    return loss.scores(yv, valid[1], h_hat, valid[2])
