"""Embedding models into a frozen meta-model: optimise theta, solve each V in closed form."""

import numpy as np
import torch

from ._net import hidden_loss, output_loss

__all__ = ["fit_codes", "ridge_maps", "emulation_r2"]


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


def _projected_loss(y_hat, g, y, h, scale, *, hidden_weight, kind, last_only, per_step):
    """Loss of (models x starts) with V solved in closed form. Shapes (M, S, P, T, .)."""
    m, s = y_hat.shape[:2]
    weight = ridge_maps(g, h, per_step=per_step)
    h_hat = _apply_maps(g, weight, per_step)
    flat = lambda a: a.reshape(m * s, *a.shape[2:])  # noqa: E731
    out = output_loss(flat(y_hat), flat(y), scale.repeat_interleave(s), kind, last_only)
    hid = hidden_loss(flat(h_hat), flat(h))
    return (out + hidden_weight * hid).view(m, s)


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


def fit_codes(meta, probes, outputs, hidden, scale, candidates, *, n_starts=3, max_iter=100,
              lr=0.05, hidden_weight=1.0, embedding_l2=1e-3, kind="mse", last_only=False,
              chunk=16):
    """Find each model's embedding with the meta-model frozen.

    Every candidate (training embeddings or their cluster centres) is scored first; the
    ``n_starts`` best per model are refined together by Adam, with each model's map ``V``
    re-solved in closed form at every step (variable projection). The best start wins.

    Parameters
    ----------
    probes : tensor (P, T, F); outputs : tensor (M, P, ...); hidden : tensor (M, P, T, k)
    scale : tensor (M,); candidates : tensor (C, d)

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
        with torch.no_grad():
            y_c, g_c = _run(meta, probes, candidates[None])        # (1, C, P, T, .)
            c = candidates.shape[0]
            cand_loss = _projected_loss(
                y_c.expand(m, *y_c.shape[1:]), g_c.expand(m, *g_c.shape[1:]),
                expand(y_m, c), expand(h_m, c), s_m, hidden_weight=hidden_weight, kind=kind,
                last_only=last_only, per_step=per_step)
            cand_loss = cand_loss + embedding_l2 * (candidates ** 2).sum(1)[None]
        k = min(n_starts, c)
        best = torch.topk(-cand_loss, k, dim=1).indices              # (m, k)
        theta = candidates[best].clone().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(max_iter, 1))
        y_s, h_s = expand(y_m, k), expand(h_m, k)
        for _ in range(max_iter):
            y_hat, g = _run(meta, probes, theta)
            loss = _projected_loss(y_hat, g, y_s, h_s, s_m, hidden_weight=hidden_weight,
                                   kind=kind, last_only=last_only, per_step=per_step)
            loss = loss + embedding_l2 * (theta ** 2).sum(-1)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            y_hat, g = _run(meta, probes, theta)
            loss = _projected_loss(y_hat, g, y_s, h_s, s_m, hidden_weight=hidden_weight,
                                   kind=kind, last_only=last_only, per_step=per_step)
            loss = loss + embedding_l2 * (theta ** 2).sum(-1)
            # Keep a refined start only if it beats the best raw candidate.
            pick = loss.argmin(1)
            final = theta[torch.arange(m), pick]
            final_loss = loss[torch.arange(m), pick]
        thetas.append(final.detach().cpu().numpy())
        losses.append(final_loss.cpu().numpy())
    return np.concatenate(thetas), np.concatenate(losses)


def _r2(pred, target):
    """R^2 per model, pooled over channels: pred/target (M, ..., C)."""
    m = target.shape[0]
    t = target.reshape(m, -1, target.shape[-1])
    p = pred.reshape(m, -1, pred.shape[-1])
    ss_res = ((p - t) ** 2).sum((1, 2))
    ss_tot = ((t - t.mean(1, keepdim=True)) ** 2).sum((1, 2))
    # Floor per element: a (near-)constant target must not turn R^2 into -1e12.
    return 1.0 - ss_res / ss_tot.clamp_min(1e-6 * t.shape[1] * t.shape[2])


@torch.no_grad()
def emulation_r2(meta, theta, train, valid, *, maps=None, last_only=False, kind="mse"):
    """Output and hidden R^2 on held-out probes for models at embeddings ``theta`` (M, d).

    ``train``/``valid`` are ``(probes, outputs, hidden)`` tuples. ``maps`` are learned
    ``(weight, bias)``; without them ``V`` is fitted by ridge on ``train``. With
    ``kind='kl'`` (classifiers) the output R^2 compares softmax probabilities and the
    argmax agreement is returned too.

    Returns
    -------
    output_r2, hidden_r2 : ndarray of shape (M,)
    agreement : ndarray of shape (M,) or None
        Fraction of held-out probes (and steps) on which the emulation's argmax matches
        the model's (``kind='kl'`` only).
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
    if last_only:
        yv = yv[:, :, -1]
    target = valid[1]
    agreement = None
    if kind == "kl":
        agreement = (yv.argmax(-1) == target.argmax(-1)).float()
        agreement = agreement.reshape(agreement.shape[0], -1).mean(1).cpu().numpy()
        yv, target = torch.softmax(yv, -1), torch.softmax(target, -1)
    out_r2 = _r2(yv, target)
    hid_r2 = _r2(h_hat, valid[2])
    return out_r2.cpu().numpy(), hid_r2.cpu().numpy(), agreement
