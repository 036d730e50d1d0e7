"""Embedding models into a frozen meta-model: optimise theta, solve each V in closed form.

:func:`multi_start_search` is the one multi-start search of the embedding space, shared by
``transform`` (:func:`fit_codes`) and :class:`~skdynamo.DynamoSemiSupervised`.
``transform`` runs the meta-model at the candidates once per call
(:func:`candidate_states`), scores every candidate for every model in one batched
closed-form call (:func:`candidate_scores`), refines the best few steps
(:func:`embed_chunk`) and runs its chunks of models through joblib (:func:`fit_codes`).
"""

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.cluster import KMeans
from sklearn.utils import Bunch

__all__ = ["fit_codes", "embed_chunk", "candidate_scores", "ridge_maps", "emulation_r2",
           "multi_start_search", "search_candidates", "candidate_states"]


#: Adam learning rate of ``transform``'s refinement: steps of about 1% of the spread of
#: unit-RMS embeddings, small enough that a few steps refine a good candidate.
SEARCH_LR = 0.01


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


def multi_start_search(objective, candidates, *, n_starts, max_iter, lr, score_chunk=None,
                       scores=None, final_objective=None):
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
    scores : tensor of shape (M, C), default=None
        The candidates' losses, when already computed (then ``objective`` is not called
        on the candidates).
    final_objective : callable, default=None
        Scores the refined starts to pick each problem's winner (``objective`` if None:
        for example the loss on all probes after refining on a few).

    Returns
    -------
    Bunch
        ``theta`` (M, d) and ``loss`` (M,) of the winners (by ``final_objective``),
        ``starts`` (M, S, d), the refined starts ``starts_refined`` (M, S, d) and their
        final ``losses`` (M, S).
    """
    cand = candidates[None]
    with torch.no_grad():
        if scores is not None:
            cand_loss = scores
        elif score_chunk is None:
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
        final = (objective if final_objective is None else final_objective)(theta)
        pick = final.argmin(1)
        rows = torch.arange(final.shape[0], device=final.device)
        return Bunch(theta=theta[rows, pick].detach(), loss=final[rows, pick],
                     starts=starts, starts_refined=theta.detach(), losses=final)


def candidate_states(meta, probes, candidates, *, ridge=1e-3):
    """What scoring models at ``candidates`` needs that does not depend on the models.

    The meta-model runs once at each candidate (C, d) on ``probes``; its states are
    augmented with a constant 1 and the Cholesky factor of each candidate's ridge normal
    matrix ``G^T G + mu I`` is taken (in float64), so :func:`candidate_scores` costs
    only products with the models' targets. Computed once per ``transform`` call and
    shared by all chunks of models.

    Returns
    -------
    Bunch
        Emulated ``outputs`` (C, P, ...), augmented ``states`` (C, N, J) or, with
        per-step maps, (C, T, P, J), ``cholesky`` (C, [T,] J, J) and ``mu``.
    """
    with torch.no_grad():
        y_c, g_c = _run(meta, probes, candidates[None])
        y_c, g_c = y_c[0], g_c[0]                                   # (C, P, ...), (C, P, T, H)
        ga = (_augment(g_c).transpose(1, 2) if meta.per_step_maps   # (C, T, P, J)
              else _augment(g_c).flatten(1, 2))                     # (C, N, J)
        mu = ridge * ga.shape[-2]
        ga64 = ga.double()
        eye = torch.eye(ga.shape[-1], dtype=torch.float64, device=ga.device)
        chol = torch.linalg.cholesky(ga64.transpose(-1, -2) @ ga64 + mu * eye)
    return Bunch(outputs=y_c, states=ga, cholesky=chol, mu=mu,
                 per_step=bool(meta.per_step_maps))


def candidate_scores(meta, probes, candidates, outputs, hidden, scale, *, loss,
                     ridge=1e-3, states=None):
    """Loss of every model at every candidate embedding, in one batched call: (M, C).

    The meta-model runs once at each candidate on ``probes`` (model-independent,
    :func:`candidate_states`); each model's map ``V`` is then solved in closed form
    against the candidate's states, and its hidden residual is read off the normal
    equations without forming the reconstruction: with ``A = G^T G + mu I``,
    ``b = G^T h`` and ``W = A^-1 b``, ``|h - G W|^2 = |h|^2 - <W, b> - mu |W|^2``. Equal
    to the search's objective (:func:`ridge_maps`, ``loss.per_model`` and the penalty)
    at each candidate.

    Parameters
    ----------
    meta : nn.Module
        The frozen meta-model.
    probes : tensor (P, ...)
    candidates : tensor (C, d)
    outputs : tensor (M, P, ...); hidden : tensor (M, P, T, k); scale : tensor (M,)
    loss : DynamoLoss
    ridge : float, default=1e-3
        Ridge of the maps, as in :func:`ridge_maps`.
    states : Bunch, default=None
        :func:`candidate_states` of these ``meta``, ``probes``, ``candidates`` and
        ``ridge``, when already computed.

    Returns
    -------
    tensor of shape (M, C)
    """
    if states is None:
        states = candidate_states(meta, probes, candidates, ridge=ridge)
    with torch.no_grad():
        y_c, ga, chol, mu = states.outputs, states.states, states.cholesky, states.mu
        m, c = outputs.shape[0], candidates.shape[0]
        y_hat = loss.emulated_outputs(y_c)              # candidates as models: (C, P, ...)
        y_hat = y_hat[None].expand(m, *y_hat.shape).reshape(m * c, *y_hat.shape[1:])
        y = outputs[:, None].expand(m, c, *outputs.shape[1:]).reshape(m * c, *outputs.shape[1:])
        out = loss.output(y_hat, y, scale.repeat_interleave(c)).view(m, c)
        # One normal-equation system per candidate (and per step for per-step maps),
        # solved for every model at once: b is (C, [T,] J, M * k).
        if states.per_step:
            hf = hidden.transpose(1, 2)                                     # (M, T, P, k)
            b = torch.einsum("ctpj,mtpk->ctjmk", ga, hf)
        else:
            hf = hidden.flatten(1, 2)                                       # (M, N, k)
            b = torch.einsum("cnj,mnk->cjmk", ga, hf)
        # The residual is a difference of near-equal sums: solved and summed in float64.
        shape = b.shape
        b = b.double().flatten(-2)
        w = torch.cholesky_solve(b, chol)
        fit = ((w * b) + mu * w ** 2).view(shape).sum((-3, -1))            # (C, [T,] M)
        fit = fit.movedim(-1, 0).reshape(m, c, -1)
        resid = (hf.double() ** 2).sum((-2, -1)).view(m, 1, -1) - fit
        n_points = hidden.shape[1] * hidden.shape[2]
        hid = (resid.sum(-1).clamp_min(0.0) / n_points).to(out.dtype)
        return out + loss.hidden_weight * hid + loss.penalty(candidates)[None]


def _chunk_objective(meta, probes, y_m, h_m, s_m, loss):
    """The search objective of ``m`` models on ``probes``: theta (1 or m, S, d) -> (m, S)."""
    per_step = meta.per_step_maps
    m = y_m.shape[0]
    expand = lambda a, s: a[:, None].expand(a.shape[0], s, *a.shape[1:])  # noqa: E731

    def objective(theta):
        y_hat, g = _run(meta, probes, theta)                 # (1 or m, S, P, T, .)
        s = theta.shape[1]
        value = _projected_loss(
            y_hat.expand(m, *y_hat.shape[1:]), g.expand(m, *g.shape[1:]),
            expand(y_m, s), expand(h_m, s), s_m, loss=loss, per_step=per_step)
        return value + loss.penalty(theta)
    return objective


def embed_chunk(meta, probes, outputs, hidden, scale, candidates, *, loss, n_starts,
                max_iter, lr, n_refine, states=None):
    """Embeddings of one chunk of models: candidates scored, best starts refined.

    Every candidate is scored on all ``probes`` in one call (:func:`candidate_scores`,
    from ``states`` when given); the ``n_starts`` best per model are refined together by
    Adam for ``max_iter`` steps on ``n_refine`` evenly spaced probes
    (:func:`multi_start_search`), and each refined start is re-scored on all ``probes``;
    the lowest loss wins, the best candidate included, so refinement on fewer probes can
    only improve the result on all of them.

    Returns
    -------
    theta : ndarray (M, d); loss : ndarray (M,)
        Loss on all ``probes``.
    """
    scores = candidate_scores(meta, probes, candidates, outputs, hidden, scale, loss=loss,
                              states=states)
    best = scores.argmin(1)
    theta, value = candidates[best], scores.gather(1, best[:, None])[:, 0]
    if max_iter > 0:
        step = max(1, len(probes) // max(1, n_refine))      # n_refine probes, spread out
        sub = slice(0, step * n_refine, step)
        found = multi_start_search(
            _chunk_objective(meta, probes[sub], outputs[:, sub], hidden[:, sub], scale,
                             loss),
            candidates, n_starts=n_starts, max_iter=max_iter, lr=lr, scores=scores,
            final_objective=_chunk_objective(meta, probes, outputs, hidden, scale, loss))
        better = found.loss < value
        theta = torch.where(better[:, None], found.theta, theta)
        value = torch.where(better, found.loss, value)
    return theta.cpu().numpy(), value.cpu().numpy()


def fit_codes(meta, probes, outputs, hidden, scale, candidates, *, loss, n_starts=1,
              max_iter=3, lr=SEARCH_LR, n_refine=8, chunk=None, n_jobs=None, states=None):
    """Find each model's embedding with the meta-model frozen, in chunks of models.

    Each chunk of models is embedded by :func:`embed_chunk` (candidates scored
    in closed form on all ``probes``, the ``n_starts`` best refined by ``max_iter`` Adam
    steps on ``n_refine`` of them, each model's map ``V`` re-solved in closed form at
    every step: variable projection). Chunks run through joblib (threads by default,
    ``n_jobs`` workers), so a ``joblib.parallel_config`` backend can spread them.

    Parameters
    ----------
    probes : tensor (P, T, F); outputs : tensor (M, P, ...); hidden : tensor (M, P, T, k)
    scale : tensor (M,); candidates : tensor (C, d)
    loss : DynamoLoss
    chunk : int, default=None
        Models per chunk; ``None``: at most 64, and at least one chunk per joblib worker.
    states : Bunch, default=None
        :func:`candidate_states` of ``meta``, ``probes`` and ``candidates``; computed
        here (once for all chunks) when None.

    Returns
    -------
    theta : ndarray (M, d); loss : ndarray (M,)
    """
    for p in meta.parameters():
        p.requires_grad_(False)
    if states is None:
        states = candidate_states(meta, probes, candidates)
    n_models = outputs.shape[0]
    if chunk is None:
        chunk = max(1, min(64, -(-n_models // effective_n_jobs(n_jobs))))
    parts = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(embed_chunk)(meta, probes, outputs[i:i + chunk], hidden[i:i + chunk],
                             scale[i:i + chunk], candidates, loss=loss, n_starts=n_starts,
                             max_iter=max_iter, lr=lr, n_refine=n_refine, states=states)
        for i in range(0, n_models, chunk))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


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
