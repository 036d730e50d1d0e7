"""The skorch side of training: dataset, net and callbacks (the loss is in ``_loss.py``).
skorch runs the loop."""

import copy
import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping

from ._guards import check_divergence, held_out_loss

__all__ = ["Converged", "DivergenceError", "DynamoNet", "EpochProgressBar", "LRWarmup",
           "ProbeDataset"]


class DivergenceError(RuntimeError):
    """Training diverged: the loss is not finite, or far above its value before training.

    Raised by ``fit`` when the loss becomes infinite or NaN, or when the held-out loss of
    the trained meta-model ends more than ten times above its value before training (and
    above 1). The message names ``lr``: a lower learning rate is the usual remedy.
    """


class ProbeDataset(torch.utils.data.Dataset):
    """One item per probe sequence; its targets hold every model's recording of it.

    Batches therefore contain whole probes for *all* models, so every model sees the same
    probes at the same step (one batched meta-model call serves all of them).
    """

    def __init__(self, probes, outputs, hidden):
        self.probes = torch.as_tensor(probes, dtype=torch.float32)
        self.outputs = torch.as_tensor(outputs, dtype=torch.float32)   # (N, P, ...)
        self.hidden = torch.as_tensor(hidden, dtype=torch.float32)     # (N, P, T, k)

    def __len__(self):
        return len(self.probes)

    def __getitem__(self, i):
        return self.probes[i], (self.outputs[:, i], self.hidden[:, i])


class DynamoNet(NeuralNet):
    """skorch net for DYNAMO: the criterion is :class:`~skdynamo._loss.DynamoLoss` (the data
    term); :meth:`get_loss` adds the embedding penalty on top of it, as skorch's
    documentation adds regularisation, and refuses a non-finite loss."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        loss = loss + self.criterion_.embedding_l2 * (self.module_.embeddings ** 2).sum(1).mean()
        if not torch.isfinite(loss):
            epoch = len(self.history)
            raise DivergenceError(
                f"DYNAMO training diverged in epoch {epoch}: the loss became {loss.item()}. "
                f"Lower the learning rate (lr={self.lr}) or check the recorded targets.")
        return loss

    # skorch ends training quietly on KeyboardInterrupt, and a finite but
    # exploding loss passes get_loss; either would hand back a half-trained fit.
    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._interrupted, self._initial_loss = None, held_out_loss(self, X, y)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs, **fit_params)
        except _Stop:
            raise  # convergence: skorch ends the loop quietly, as it should
        except KeyboardInterrupt as exc:
            self._interrupted = exc  # the user's (or a callback's) interrupt: re-raised
            raise

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        super().partial_fit(X, y, classes, **fit_params)
        if self._interrupted is not None:
            raise self._interrupted
        check_divergence(self, X, self._initial_loss, held_out_loss(self, X, y),
                         DivergenceError)
        return self


class _Stop(KeyboardInterrupt):
    """Raised by :class:`Converged` to end skorch's loop (skorch stops on
    ``KeyboardInterrupt``); :class:`DynamoNet` tells it apart from a real interrupt."""


class Converged(EarlyStopping):
    """Stop when the held-out loss has converged; restore the best epoch.

    Convergence is a relative tolerance, as in scikit-learn's iterative estimators: the
    held-out loss has not improved by a fraction ``threshold`` of its value for
    ``patience`` epochs (while the learning rate is reduced on plateaus, so this spans
    several reductions). The weights restored at the end are those of the lowest
    held-out loss seen, improvements smaller than ``threshold`` included.
    ``converged_`` is True after such a stop and False when the epoch cap ended the loop
    first; ``best_epoch_`` is the epoch restored.
    """

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        self.converged_, self.lowest_ = False, np.inf

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1, self.monitor]
        if loss < self.lowest_:
            self.lowest_, self.best_epoch_ = loss, net.history[-1, "epoch"]
            self.best_model_weights_ = copy.deepcopy(net.module_.state_dict())
        if self._is_score_improved(loss):
            self.misses_, self.dynamic_threshold_ = 0, self._calc_new_threshold(loss)
        else:
            self.misses_ += 1
        if self.misses_ >= self.patience:
            self.converged_ = True
            raise _Stop


class LRWarmup(Callback):
    """Linear learning-rate warm-up over the first ``n_steps`` optimiser steps.

    The rate climbs from ``lr / n_steps`` to ``lr``; afterwards the other schedulers
    (reduction on plateaus) act on it undisturbed. Large early steps of Adam, whose
    moment estimates are still poor, are what makes a high learning rate unstable; a short
    warm-up lets training run at a rate a few times higher than it could start at.
    """

    def __init__(self, n_steps=200):
        self.n_steps = n_steps

    def on_train_begin(self, net, **kwargs):
        self.step_ = 0

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training or self.step_ >= self.n_steps:
            return
        self.step_ += 1
        for group in net.optimizer_.param_groups:
            group["lr"] = net.lr * self.step_ / self.n_steps


class EpochProgressBar(Callback):
    """A tqdm bar over epochs showing the training and validation losses."""

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm
        self.bar_ = tqdm(total=net.max_epochs, desc="Fitting DYNAMO", unit="epoch")

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.bar_.set_postfix(train=f"{row['train_loss']:.4f}",
                              valid=f"{row.get('valid_loss', np.nan):.4f}")
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()
