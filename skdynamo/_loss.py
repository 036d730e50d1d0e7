"""DYNAMO's loss, written once: the skorch net, ``transform``'s search, the averager and the
semi-supervised search all read the output loss (``'mse'`` or ``'kl'``) from here.

``L = mean_n [ l_out(y_hat_n, y_n) + alpha * l_hid(V_n g_n, h_n) ] + lambda * mean_n |theta_n|^2``

:class:`DynamoLoss` is the data term (the skorch ``criterion``); the embedding penalty is
added on top of it in :meth:`skdynamo._net.DynamoNet.get_loss`, as skorch's documentation
adds regularisation. The output term is an :class:`OutputLoss` object, which also says how
the outputs describe a model (raw, or class probabilities) and how emulated outputs are
scored.
"""

import numpy as np
import torch
from scipy.special import softmax
from torch import nn

__all__ = ["OutputLoss", "MSEOutput", "KLOutput", "OUTPUT_LOSSES", "DynamoLoss",
           "hidden_loss", "pooled_r2", "resolve_output_loss"]


def pooled_r2(pred, target):
    """R^2 per model, pooled over channels: ``pred``/``target`` (M, ..., C) tensors -> (M,).

    The total sum of squares is floored per element, so a (near-)constant target does
    not turn R^2 into -1e12.
    """
    m = target.shape[0]
    t = target.reshape(m, -1, target.shape[-1])
    p = pred.reshape(m, -1, pred.shape[-1])
    ss_res = ((p - t) ** 2).sum((1, 2))
    ss_tot = ((t - t.mean(1, keepdim=True)) ** 2).sum((1, 2))
    return 1.0 - ss_res / ss_tot.clamp_min(1e-6 * t.shape[1] * t.shape[2])


def hidden_loss(h_hat, h):
    """Per-model hidden loss (N,): summed squared error over components (1 - R^2)."""
    err = (h_hat - h) ** 2
    return err.reshape(err.shape[0], -1, err.shape[-1]).mean(1).sum(-1)


def reverse_loss(g, h, models, ridge=1e-3):
    """How much of the meta-model's states the members' own states leave unexplained.

    ``g`` (R, T, width) are the meta-model's states of R (model, probe) rows, ``h`` (R, T,
    k) the rows' members' PCA-reduced states and ``models`` (R,) whose they are. For each
    member, the states of its rows are regressed on ``[h, 1]`` (ridge ``ridge`` per sample,
    in closed form from the normal equations, so that the map is the best one for these
    rows, not a learned one); the residual, summed over members and divided by the number
    of state entries, is returned: 0 when what the meta-model does at each member's
    embedding is a linear function of what the member does.
    """
    g, h = g.float(), h.float()
    rows, steps, k = h.shape
    design = torch.cat([h, torch.ones(rows, steps, 1, dtype=h.dtype, device=h.device)], -1)
    ids, inverse = torch.unique(models, return_inverse=True)
    m, width = len(ids), g.shape[-1]

    def per_member(values):
        return torch.zeros(m, *values.shape[1:], dtype=values.dtype,
                           device=values.device).index_add_(0, inverse, values)

    gram = per_member(torch.einsum("rti,rtj->rij", design, design))
    cross = per_member(torch.einsum("rti,rtw->riw", design, g))
    total = per_member((g ** 2).sum((1, 2)))
    n = torch.bincount(inverse, minlength=m).to(g.dtype) * steps   # samples per member
    eye = torch.eye(k + 1, dtype=gram.dtype, device=gram.device)
    coef = torch.linalg.solve(gram + ridge * n[:, None, None] * eye, cross)
    resid = total - 2 * (coef * cross).sum((1, 2)) + (coef * (gram @ coef)).sum((1, 2))
    return resid.clamp_min(0.0).sum() / (n.sum() * width)


BALANCE_DECAY = 0.9
"""Weight of a member's previous running error when a training step folds in its pairs."""
BALANCE_CAP = 10.0
"""Largest ratio of a member's running error to the mean that ``member_balance`` weighs."""


class OutputLoss:
    """How emulated outputs are compared with a model's: one subclass per ``output_loss``.

    ``name`` is the value of the ``output_loss`` parameter; ``classifies`` says whether
    outputs are class scores (compared by their argmax where a score is asked for).
    """

    name = None
    classifies = False

    def __call__(self, y_hat, y, scale):
        """Per-model loss (N,) of ``y_hat`` against ``y`` (N, ..., O); ``scale`` (N,)."""
        raise NotImplementedError

    def behaviour(self, outputs):
        """What describes a model's outputs (numpy; for the starting embeddings)."""
        return outputs

    def scores(self, y_hat, y):
        """``(output R^2 (M,), agreement (M,) or None)`` of emulated outputs (tensors)."""
        return pooled_r2(y_hat, y).cpu().numpy(), None

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSEOutput(OutputLoss):
    """Squared error normalised by each model's output variance (1 - R^2)."""

    name = "mse"

    def __call__(self, y_hat, y, scale):
        err = ((y_hat - y) ** 2).reshape(y.shape[0], -1, y.shape[-1]).mean(1).sum(-1)
        return err / scale


class KLOutput(OutputLoss):
    """KL divergence between the model's and the emulation's softmax outputs (classifiers).

    Classifiers are described by their class probabilities, and scored by the R^2 of
    their probabilities and by argmax agreement.
    """

    name = "kl"
    classifies = True

    def __call__(self, y_hat, y, scale):
        logp = torch.log_softmax(y_hat, dim=-1)
        logq = torch.log_softmax(y, dim=-1)
        per = (logq.exp() * (logq - logp)).sum(-1)
        return per.reshape(per.shape[0], -1).mean(1)

    def behaviour(self, outputs):
        return softmax(outputs, axis=-1)

    def scores(self, y_hat, y):
        agreement = (y_hat.argmax(-1) == y.argmax(-1)).float()
        agreement = agreement.reshape(agreement.shape[0], -1).mean(1).cpu().numpy()
        r2 = pooled_r2(torch.softmax(y_hat, -1), torch.softmax(y, -1))
        return r2.cpu().numpy(), agreement


OUTPUT_LOSSES = {cls.name: cls for cls in (MSEOutput, KLOutput)}


def resolve_output_loss(output_loss, family, output_shape):
    """The :class:`OutputLoss` for the ``output_loss`` parameter and the models' outputs.

    ``'auto'`` is the family's default; ``'kl'`` needs at least two outputs.
    """
    if output_loss == "auto":
        return OUTPUT_LOSSES[family.default_output_loss(output_shape)]()
    if output_loss == "kl" and output_shape[-1] < 2:
        raise ValueError(
            f"output_loss='kl' compares softmax outputs, but the models have "
            f"{output_shape[-1]} output: a softmax over one output is constant. Use "
            "output_loss='mse' (or 'auto') for single-logit classifiers and regressors.")
    return OUTPUT_LOSSES[output_loss]()


class DynamoLoss(nn.Module):
    """The data term of DYNAMO's objective, per model or averaged (a skorch criterion).

    Parameters
    ----------
    output : {'mse', 'kl'} or OutputLoss, default='mse'
        The output loss.
    hidden_weight : float, default=1.0
        Weight ``alpha`` of the hidden-state term.
    embedding_l2 : float, default=1e-3
        Weight ``lambda`` of the penalty on embedding norms (:meth:`penalty`; not part of
        :meth:`forward`, which skorch's ``get_loss`` adds it to).
    last_only : bool, default=False
        The models' outputs are their last step only (sequence classifiers): the
        emulation's last step is compared.
    output_scale : array-like of shape (n_models,), default=None
        Each model's output variance (normalises the MSE output loss) for :meth:`forward`.
    reverse_weight : float, default=0.0
        Weight of :func:`reverse_loss` in :meth:`forward` (the module then returns the
        meta-model's states as a third output).
    member_balance : float, default=0.0
        Exponent ``gamma`` of the members' weights in training steps (:meth:`forward` with
        ``training=True``): each member's output and hidden terms are weighted by
        ``(e_n / mean_m e_m) ** gamma``, ``e_n`` a running mean of that member's term
        (:attr:`member_errors`), capped at :data:`BALANCE_CAP` and normalised to mean 1
        over the step's pairs. 0: every member weighs the same. Needs ``n_models``.
    n_models : int, default=None
        Members of the population (the rows of :attr:`member_errors`).
    """

    def __init__(self, output="mse", *, hidden_weight=1.0, embedding_l2=1e-3, last_only=False,
                 output_scale=None, reverse_weight=0.0, member_balance=0.0, n_models=None):
        super().__init__()
        self.member_balance = float(member_balance)
        # Running mean of each member's output and hidden term in training steps.
        self.register_buffer("member_errors", torch.ones(
            n_models if member_balance else 0, 2))
        self.output = OUTPUT_LOSSES[output]() if isinstance(output, str) else output
        self.hidden_weight, self.embedding_l2 = hidden_weight, embedding_l2
        self.reverse_weight = reverse_weight
        self.last_only = bool(last_only)
        scale = (torch.ones(1) if output_scale is None
                 else torch.as_tensor(output_scale, dtype=torch.float32))
        self.register_buffer("output_scale", scale)

    @property
    def classifies(self):
        """Whether the outputs are class scores (``output='kl'``)."""
        return self.output.classifies

    def emulated_outputs(self, y_hat):
        """The emulation's outputs comparable with the models' (last step if ``last_only``)."""
        return y_hat[:, :, -1] if self.last_only else y_hat

    def per_model(self, y_hat, y, h_hat, h, scale):
        """``l_out + alpha * l_hid`` per model (N,): ``y_hat`` (N, B, ...), ``h`` (N, B, T, k)."""
        out = self.output(self.emulated_outputs(y_hat), y, scale)
        return out + self.hidden_weight * hidden_loss(h_hat, h)

    def penalty(self, theta):
        """``lambda * |theta|^2`` per embedding (``theta`` (..., d) -> (...))."""
        return self.embedding_l2 * (theta ** 2).sum(-1)

    def fold_errors(self, out, hid, models):
        """Fold a training step's per-row terms ``out``, ``hid`` (R,) of members ``models``
        (R,) into :attr:`member_errors` (running means, ``member_balance``)."""
        terms = torch.stack([out.detach(), hid.detach()], 1).float()
        ids, inverse = torch.unique(models, return_inverse=True)
        sums = torch.zeros(len(ids), 2, device=terms.device).index_add_(0, inverse, terms)
        counts = torch.bincount(inverse, minlength=len(ids)).to(terms.dtype)[:, None]
        errors = self.member_errors
        errors[ids] = BALANCE_DECAY * errors[ids] + (1 - BALANCE_DECAY) * sums / counts

    def member_weights(self, models):
        """Per-row weights ``(w_out, w_hid)`` of a training step's rows of members
        ``models`` (``member_balance``), each with mean 1 over the rows."""
        relative = self.member_errors[models] / self.member_errors.mean(0).clamp_min(1e-12)
        w = relative.clamp(max=BALANCE_CAP) ** self.member_balance
        w = w / w.mean(0)
        return w[:, 0], w[:, 1]

    def forward(self, y_pred, y_true, models=None, training=False):
        """Mean data loss of a batch, models first: ``y_hat`` (M, B, ...) against ``y``.

        ``models`` (M,) says whose output scale normalises each row (a
        :class:`~skdynamo._net.PairDataset` batch: one row per (model, probe) pair, B = 1);
        without it the rows are all the models, in order. ``training``: a training step
        (members weighted by ``member_balance``).
        """
        y_hat, h_hat, *states = y_pred
        y, h = y_true
        scale = self.output_scale if models is None else self.output_scale[models]
        out = self.output(self.emulated_outputs(y_hat), y, scale)
        hid = hidden_loss(h_hat, h)
        if training and self.member_balance and models is not None:
            self.fold_errors(out, hid, models)
            w_out, w_hid = self.member_weights(models)
            out, hid = out * w_out, hid * w_hid
        loss = out.mean() + self.hidden_weight * hid.mean()
        if self.reverse_weight and states:
            # Rows are (model, probe) pairs, one probe each: (R, 1, T, .) -> (R, T, .).
            loss = loss + self.reverse_weight * reverse_loss(
                states[0].flatten(0, 1), h.flatten(0, 1), models)
        return loss

    def extra_repr(self):
        return (f"output={self.output.name!r}, hidden_weight={self.hidden_weight}, "
                f"embedding_l2={self.embedding_l2}, last_only={self.last_only}")

    def scores(self, y_hat, y, h_hat, h):
        """Emulation scores: ``(output R^2, hidden R^2, agreement or None)``, each (M,)."""
        out_r2, agreement = self.output.scores(self.emulated_outputs(y_hat), y)
        return out_r2, pooled_r2(h_hat, h).cpu().numpy(), agreement


def as_numpy_r2(pred, target):
    """:func:`pooled_r2` of one model's numpy arrays (float64), as a float."""
    t = torch.as_tensor(np.asarray(target, dtype=np.float64))[None]
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64))[None]
    return float(pooled_r2(p, t)[0])
