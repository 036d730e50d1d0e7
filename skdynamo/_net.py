"""The skorch side of training: dataset, net and callbacks (the loss is in ``_loss.py``).
skorch runs the loop."""

import copy
import numpy as np
import torch
from skorch import NeuralNet
from skorch.hf import AccelerateMixin
from skorch.callbacks import Callback, EarlyStopping
from skorch.utils import to_tensor

from ._guards import check_divergence, held_out_loss

__all__ = ["AcceleratedDynamoNet", "Converged", "DivergenceError", "DynamoNet",
           "EpochProgressBar", "LRWarmup", "PairDataset", "PairSampler", "StepShards",
           "bare_module", "check_accelerator", "held_out_pairs", "keep_batch", "place",
           "training_plan"]


class DivergenceError(RuntimeError):
    """Training diverged: the loss is not finite, or far above its value before training.

    Raised by ``fit`` when the loss becomes infinite or NaN, or when the held-out loss of
    the trained meta-model ends more than ten times above its value before training (and
    above 1). The message names ``lr``: a lower learning rate is the usual remedy.
    """


#: Optimiser steps in one epoch, at most: with more (model, probe) pairs than this many
#: steps cover, an epoch is this many steps and the pairs are spread over epochs.
EPOCH_STEPS = 32
#: Held-out (model, probe) pairs the validation pass runs through, at most.
VALID_PAIRS = 2048
#: An epoch has at least this many steps (a small population must not get a handful of
#: gradient steps per epoch).
MIN_EPOCH_STEPS = 16


def keep_batch(batch):
    """``collate_fn`` of :class:`PairDataset`: its ``__getitems__`` already builds the batch."""
    return batch


class PairDataset(torch.utils.data.Dataset):
    """(model, probe) pairs: one item is one model's recording of one probe.

    The recordings are held once, as ``(n_models, n_probes, ...)`` tensors; an item
    ``i`` is the pair ``pairs[i]`` (``(model, probe)`` indices), or, without ``pairs``,
    ``(i // len(probe_ids), probe_ids[i % len(probe_ids)])``: every model with every
    probe of ``probe_ids``. A batch is built at once (``__getitems__``) as
    ``({'x': probes, 'models': model indices}, (outputs, hidden))``, the targets with a
    probe axis of length 1 (each pair is one model's recording of one probe), so that
    :meth:`skdynamo.nn.DynamoModule.forward` runs each pair at its own model's embedding.

    Parameters
    ----------
    probes : array-like of shape (n_probes, ...)
    outputs : array-like of shape (n_models, n_probes, ...)
    hidden : array-like of shape (n_models, n_probes, n_steps, k)
    probe_ids : array-like of int, default=None
        The probes this dataset pairs every model with (all by default).
    pairs : array-like of shape (n_pairs, 2), default=None
        Explicit ``(model, probe)`` pairs instead (a fixed held-out sample).
    device : str, default='cpu'
        Where the tensors are kept: on the training device when they fit
        (:func:`place`), so batches need no copy.
    """

    def __init__(self, probes, outputs, hidden, *, probe_ids=None, pairs=None, device="cpu"):
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        self.probes, self.outputs, self.hidden = (place(as_t(a), device)
                                                  for a in (probes, outputs, hidden))
        self.n_models = self.outputs.shape[0]
        ids = np.arange(len(self.probes)) if probe_ids is None else np.asarray(probe_ids)
        self.probe_ids = torch.as_tensor(ids, dtype=torch.long)
        self.pairs = None if pairs is None else torch.as_tensor(np.asarray(pairs),
                                                                dtype=torch.long)

    def with_pairs(self, pairs):
        """A dataset of the explicit ``pairs`` sharing these tensors (no copy)."""
        other = copy.copy(self)
        other.pairs = torch.as_tensor(np.asarray(pairs), dtype=torch.long)
        return other

    def __len__(self):
        if self.pairs is not None:
            return len(self.pairs)
        return self.n_models * len(self.probe_ids)

    def pair(self, index):
        """``(model, probe)`` index tensors of the items ``index``."""
        index = torch.as_tensor(index, dtype=torch.long)
        if self.pairs is not None:
            return self.pairs[index, 0], self.pairs[index, 1]
        n_p = len(self.probe_ids)
        return index // n_p, self.probe_ids[index % n_p]

    def __getitems__(self, index):
        model, probe = self.pair(index)
        dev = self.outputs.device
        model, probe = model.to(dev), probe.to(dev)
        X = {"x": self.probes[probe], "models": model}
        return X, (self.outputs[model, probe][:, None], self.hidden[model, probe][:, None])

    def __getitem__(self, i):
        X, (y, h) = self.__getitems__([i])
        return {k: v[0] for k, v in X.items()}, (y[0], h[0])


def place(tensor, device):
    """``tensor`` on ``device`` if it takes at most half of the device's free memory
    (CUDA), else left where it is (batches are then copied step by step)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return tensor.to(dev) if dev.type != "cpu" else tensor
    free, _ = torch.cuda.mem_get_info(dev)
    return tensor.to(dev) if tensor.numel() * tensor.element_size() <= free // 2 else tensor


class PairSampler(torch.utils.data.Sampler):
    """Steps of ``models_per_step`` models x ``probes_per_step`` probes; an epoch of
    ``steps`` steps.

    Models and probes are drawn without replacement from running permutations (a new one
    when one is used up; no model or probe twice in a step), so every (model, probe) pair
    of a :class:`PairDataset` without explicit pairs comes up equally often, whatever the
    number of steps per epoch. When
    every model fits in a step, every step holds all of them on the same probes: models
    with identical targets then receive identical updates.

    Parameters
    ----------
    n_models, n_probes : int
        Models and probes of the dataset (``n_probes`` = ``len(probe_ids)``).
    models_per_step, probes_per_step : int
        The cross product of these is one batch (the DataLoader's ``batch_size`` must be
        their product).
    steps : int
        Steps per epoch.
    seed : int
        Seed of the permutations.
    """

    def __init__(self, n_models, n_probes, models_per_step, probes_per_step, steps, seed):
        self.n_models, self.n_probes = int(n_models), int(n_probes)
        self.models_per_step, self.probes_per_step = int(models_per_step), int(probes_per_step)
        self.steps = int(steps)
        self.generator = torch.Generator().manual_seed(int(seed))
        self._queues = {"models": torch.empty(0, dtype=torch.long),
                        "probes": torch.empty(0, dtype=torch.long)}

    def __len__(self):
        return self.steps * self.models_per_step * self.probes_per_step

    def _draw(self, what, total, k):
        if k >= total:
            return torch.arange(total)
        queue = self._queues[what]
        if len(queue) < k:
            # A new permutation, its items still queued moved last: no repeat in a step.
            fresh = torch.randperm(total, generator=self.generator)
            again = torch.isin(fresh, queue)
            queue = torch.cat([queue, fresh[~again], fresh[again]])
        self._queues[what] = queue[k:]
        return queue[:k]

    def __iter__(self):
        for _ in range(self.steps):
            models = self._draw("models", self.n_models, self.models_per_step)
            probes = self._draw("probes", self.n_probes, self.probes_per_step)
            yield from (models[:, None] * self.n_probes + probes[None]).reshape(-1).tolist()


def training_plan(n_models, n_probes, batch_size):
    """How training batches are made: ``(models_per_step, probes_per_step, steps_per_epoch)``.

    A step holds at most ``batch_size`` (model, probe) pairs: ``probes_per_step`` probes
    for each of ``models_per_step`` models. All models go into every step while
    ``batch_size`` allows one probe each, with as many probes as fit (fewer when needed
    for an epoch to have ``MIN_EPOCH_STEPS`` steps); beyond ``batch_size`` models, each
    step draws ``batch_size`` of them, one probe each. An epoch is one pass over all the
    pairs, or ``EPOCH_STEPS`` steps if that is less: the cost of a step and of an epoch
    do not grow with the number of models.
    """
    models = min(n_models, batch_size)
    probes = max(1, min(batch_size // models, -(-n_probes // MIN_EPOCH_STEPS)))
    one_pass = -(-n_models // models) * -(-n_probes // probes)
    return models, probes, min(one_pass, EPOCH_STEPS)


def held_out_pairs(n_models, probe_ids, rng, limit=VALID_PAIRS):
    """Fixed held-out (model, probe) pairs: all of them, or ``limit`` spread over models.

    With more than ``limit`` pairs, each model keeps ``max(1, limit // n_models)``
    probes drawn by ``rng`` (a sample of ``limit`` models when even one each is too
    many), so the validation pass does not grow with the population.
    """
    probe_ids = np.asarray(probe_ids)
    n_p = len(probe_ids)
    if n_models * n_p <= limit:
        return np.array([(m, p) for m in range(n_models) for p in probe_ids])
    models = (np.arange(n_models) if n_models <= limit
              else np.sort(rng.choice(n_models, size=limit, replace=False)))
    per = max(1, min(n_p, limit // len(models)))
    return np.array([(m, p) for m in models
                     for p in np.sort(rng.choice(probe_ids, size=per, replace=False))])


class DynamoNet(NeuralNet):
    """skorch net for DYNAMO: the criterion is :class:`~skdynamo._loss.DynamoLoss` (the data
    term, per (model, probe) pair of a :class:`PairDataset` batch); :meth:`get_loss` adds
    the embedding penalty on top of it, as skorch's documentation adds regularisation, and
    refuses a non-finite loss. ``train_dtype=torch.bfloat16`` runs the training steps'
    forward pass under autocast (:meth:`infer`)."""

    def __init__(self, *args, train_dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_dtype = train_dtype

    def infer(self, x, **fit_params):
        """The module's forward pass; training steps under autocast to ``train_dtype``
        (None: float32) with the outputs cast back to float32, so the loss, the
        gradients' accumulation and the optimiser stay in float32. The held-out pass
        (the module in eval mode) always runs in float32."""
        if self.train_dtype is None or not self.module_.training:
            return super().infer(x, **fit_params)
        with torch.autocast(torch.device(self.device).type, dtype=self.train_dtype):
            y_pred = super().infer(x, **fit_params)
        return tuple(t.float() for t in y_pred)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        # The batch's pairs: the data term is per pair, the penalty on the embeddings of
        # the pairs' models (every model of a step weighs as many pairs as it has).
        models = to_tensor(X["models"], device=self.device)
        loss = self.criterion_(y_pred, to_tensor(y_true, device=self.device), models,
                               training=training)
        theta = bare_module(self).embeddings[models]
        loss = loss + self.criterion_.embedding_l2 * (theta ** 2).sum(1).mean()
        return self._checked(loss, len(models), training)

    def _checked(self, loss, n_pairs, training):
        """``loss``, refused when it is not finite (:class:`DivergenceError`)."""
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

    Convergence is a relative tolerance, as in scikit-learn's iterative estimators, with
    an absolute floor: the held-out loss has not fallen by more than a fraction
    ``threshold`` of its value and by more than ``floor`` for ``patience`` epochs, *and*
    a reduction of the learning rate inside those epochs did not help. When the window
    runs out at a rate that was not reduced in it (a loss still falling, but slowly,
    never triggers the plateau scheduler), the rate is multiplied by ``factor`` and the
    window starts again: a slow stretch at a high rate is a reason to anneal, not proof
    of a minimum. The weights restored at the end are those of the lowest held-out loss
    seen, improvements too small to count included. ``converged_`` is True after such a
    stop and False when the epoch cap ended the loop first; ``best_epoch_`` is the epoch
    restored; ``n_annealed_`` counts the reductions made instead of a stop.
    """

    def __init__(self, *args, factor=0.5, floor=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.factor, self.floor = factor, floor

    def _calc_new_threshold(self, score):
        # An improvement must exceed both the relative threshold and ``floor``, in the
        # direction the monitored score improves.
        new = super()._calc_new_threshold(score)
        if self.lower_is_better:
            return min(new, score - self.floor)
        return max(new, score + self.floor)

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        self.converged_, self.lowest_, self.n_annealed_ = False, np.inf, 0
        self.rates_ = []

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1, self.monitor]
        groups = net.optimizer_.param_groups
        self.rates_.append(groups[0]["lr"])
        if loss < self.lowest_:
            self.lowest_, self.best_epoch_ = loss, net.history[-1, "epoch"]
            self.best_model_weights_ = copy.deepcopy(bare_module(net).state_dict())
        if self._is_score_improved(loss):
            self.misses_, self.dynamic_threshold_ = 0, self._calc_new_threshold(loss)
        else:
            self.misses_ += 1
        if self.misses_ < self.patience:
            return
        # Rates the epochs trained at (each epoch's is the one set at the end of the
        # previous): the last improving epoch's, then those of the missed epochs.
        window = self.rates_[-self.patience - 2:-1]
        if min(window[1:]) < window[0]:
            self.converged_ = True
            raise _Stop
        for group in groups:
            group["lr"] *= self.factor
        self.misses_, self.n_annealed_ = 0, self.n_annealed_ + 1


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
        main = getattr(getattr(net, "accelerator", None), "is_main_process", True)
        self.bar_ = tqdm(total=net.max_epochs, desc="Fitting DYNAMO", unit="epoch",
                         disable=not main)  # one bar, on the main process

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.bar_.set_postfix(train=f"{row['train_loss']:.4f}",
                              valid=f"{row.get('valid_loss', np.nan):.4f}")
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


# ------------------------------------------------------------------ several processes
def bare_module(net):
    """``net.module_`` itself, or, while an accelerator has wrapped it (DDP), the module
    inside (whose attributes, such as ``embeddings``, and state-dict keys are the
    plain module's)."""
    accelerator = getattr(net, "accelerator", None)
    if accelerator is None:
        return net.module_
    return accelerator.unwrap_model(net.module_, keep_fp32_wrapper=False)


def check_accelerator(accelerator):
    """The device an ``accelerate.Accelerator`` trains on, after refusing what training
    through it does not support. Errors name the ``accelerator`` parameter."""
    try:
        from accelerate import Accelerator
    except ImportError as exc:
        raise ImportError("accelerator= needs the accelerate package: "
                          "pip install 'skdynamo[accelerate]'.") from exc
    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"accelerator must be an accelerate.Accelerator or None; got "
                        f"{type(accelerator).__name__}.")
    for name in ("split_batches", "dispatch_batches"):
        if getattr(accelerator, name, False):
            raise ValueError(f"accelerator has {name}=True; skdynamo splits each step "
                             "across the processes itself: use the default "
                             "DataLoaderConfiguration.")
    if accelerator.mixed_precision == "fp16":
        raise ValueError("accelerator has mixed_precision='fp16', whose scaled gradients "
                         "the gradient clipping of training would clip at the wrong norm; "
                         "use mixed_precision='no' or 'bf16'.")
    if accelerator.gradient_accumulation_steps != 1:
        raise ValueError("accelerator has gradient_accumulation_steps="
                         f"{accelerator.gradient_accumulation_steps}; a step of "
                         "batch_size pairs is already split across the processes: use 1 "
                         "(and raise batch_size for larger steps).")
    return str(accelerator.device)


class StepShards(torch.utils.data.Sampler):
    """The steps of a :class:`PairSampler`, each cut into ``n_shards`` consecutive parts.

    Accelerate gives process ``i`` of ``n`` the batches ``i, i + n, ...`` of a data
    loader, so with ``n_shards = n`` the processes together run each step of
    ``pair_sampler`` (parts as equal as possible, contiguous in the step): the global
    step, the steps per epoch and the warm-up are those of one process.
    ``step_pairs`` is the size of a whole step.

    Parameters
    ----------
    pair_sampler : PairSampler
    n_shards : int
    """

    def __init__(self, pair_sampler, n_shards):
        self.pairs, self.n_shards = pair_sampler, int(n_shards)
        self.step_pairs = pair_sampler.models_per_step * pair_sampler.probes_per_step
        if self.step_pairs < self.n_shards:
            raise ValueError(f"a training step has {self.step_pairs} (model, probe) pairs, "
                             f"fewer than the {self.n_shards} processes of accelerator; "
                             "raise batch_size or use fewer processes.")

    def __len__(self):
        return self.pairs.steps * self.n_shards

    def __iter__(self):
        pairs = iter(self.pairs)
        for _ in range(self.pairs.steps):
            step = np.fromiter(pairs, dtype=np.int64, count=self.step_pairs)
            yield from (part.tolist() for part in np.array_split(step, self.n_shards))


def _quiet(*args, **kwargs):
    """A print sink that prints nothing."""


class AcceleratedDynamoNet(AccelerateMixin, DynamoNet):
    """:class:`DynamoNet` trained through skorch's ``AccelerateMixin`` (HuggingFace
    Accelerate), e.g. on several processes or GPUs.

    Each process runs its part of every step (:class:`StepShards`, as the training
    iterator's ``batch_sampler``); DDP averages the gradients, each part's loss weighed
    by its share of the step, so a step is the mean over its pairs as on one process.
    What differs from ``AccelerateMixin``:

    - the criterion is moved to the accelerator's device, not prepared (it has no
      parameters, which DDP refuses), and nothing but the module and optimiser is
      prepared (skorch builds the plateau scheduler at the start of training and steps
      it once per epoch);
    - the held-out pass is not sharded: every process runs all held-out pairs with the
      same weights, so every process sees the same held-out loss and takes the same
      convergence and learning-rate decisions without communication;
    - the training loss is averaged over the processes every step (one all-reduce of a
      scalar): the history is the same on every process, and a non-finite loss raises
      :class:`DivergenceError` on all of them together rather than leaving the others
      waiting in the gradient all-reduce.
    """

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        device = self.accelerator.device
        for name in self._criteria:
            getattr(self, name + "_").to(device)
        for name in self._modules:
            setattr(self, name + "_",
                    self.accelerator.prepare(getattr(self, name + "_").to(device)))
        for name in self._optimizers:
            setattr(self, name + "_", self.accelerator.prepare(getattr(self, name + "_")))
        self._wrapped_with_accelerator = True
        return self

    def _initialize_callbacks(self):
        # AccelerateMixin's 'auto' sink (accelerator.print) prints whatever ``verbose``
        # says; here the main process prints the table only at verbose=1, as skorch does.
        if self.callbacks__print_log__sink == "auto":
            self.callbacks__print_log__sink = (self.accelerator.print if self.verbose
                                               else _quiet)
        return super()._initialize_callbacks()

    def get_iterator(self, dataset, training=False):
        if training:
            return super().get_iterator(dataset, training=True)
        return DynamoNet.get_iterator(self, dataset, training=False)

    def _checked(self, loss, n_pairs, training):
        if not training:
            return super()._checked(loss, n_pairs, training)
        acc = self.accelerator
        loss = loss * (acc.num_processes * n_pairs
                       / self.get_params_for("iterator_train")["batch_sampler"].step_pairs)
        self._step_loss = acc.reduce(loss.detach().clone(), reduction="mean")
        super()._checked(self._step_loss, n_pairs, training)
        return loss

    def train_step_single(self, batch, **fit_params):
        step = super().train_step_single(batch, **fit_params)
        step["loss"] = self._step_loss  # the step's mean over all processes
        return step
