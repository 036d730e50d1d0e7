"""The model-family protocol: everything that depends on what kind of network a member is.

The estimators never ask which family a population belongs to. ``DynamoEmbedder.fit``
resolves it once (:func:`skdynamo.families.resolve_family`) and then runs one pipeline
through the family object it stores as ``family_``::

    probes = family.check_probes(probe_inputs, models)   # or family.default_probes(...)
    targets = family.record_targets(models, probes, train_idx)
        # = family.record_member + check_member + reduce_member per member, in one
        #   loop (raw recordings never all held), then family.combine_targets
    meta_params = family.meta_params(probes, targets, ...)  # the conditioned meta-model
    output_loss = family.default_output_loss(targets.output_shape)   # for 'auto'
    ...
    net = family.bake(meta_model, theta)                # a standalone module at one theta

A new family is one module defining a subclass of :class:`ModelFamily` and one entry in
``skdynamo.families.FAMILIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from abc import ABC, abstractmethod
from functools import partial

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from .._recording import record_each
from .._targets import output_variance

__all__ = ["ModelFamily", "check_output_shapes"]


def check_output_shapes(outputs, offset=0, unit="probe"):
    """The shared output shape per probe of members' ``outputs`` arrays (errors name the
    first member whose shape differs from model 0's; ``unit`` names a probe in them)."""
    out_shape = outputs[0].shape[1:]
    for i, o in enumerate(outputs):
        if o.shape[1:] != out_shape:
            raise ValueError(f"Model {i + offset} has outputs of shape {o.shape[1:]} per "
                             f"{unit} but model 0 has {out_shape}: all models of a "
                             "population must share the output space.")
    return out_shape


class ModelFamily(ABC):
    """What DYNAMO needs to know about one family of networks (recurrent, convolutional...).

    An instance carries the embedder's recording settings; ``DynamoEmbedder.fit`` creates
    one per fit and keeps it as ``family_`` (after the fit, :attr:`n_steps` holds the
    number of recorded steps members are aligned to).

    Parameters
    ----------
    recorder : 'auto' or callable, default='auto'
        How members are recorded (``DynamoEmbedder``'s ``recorder``).
    n_pcs : int, default=10
        Principal components kept per member (per layer).
    layers, spatial : default='auto', 'pool'
        Settings of families that record chosen layers (see ``DynamoEmbedder``).
    n_jobs : int, default=None
        Members recorded in parallel (joblib threads).
    n_steps : 'max' or int, default='max'
        Steps members are aligned to (families whose members differ in depth).

    Attributes
    ----------
    name : str
        The family's value of ``DynamoEmbedder(meta_model=...)``.
    probe_rank : int
        Rank of its probe inputs (3: sequences ``(n, T, F)``; 4: images ``(n, C, H, W)``).
    meta_class : type
        The conditioned meta-model (``forward(x, theta) -> (outputs, states)``, with
        ``n_inputs``, ``n_outputs``, ``n_components``, ``state_size``, ``per_step_maps``
        and ``config``).
    standalone_class : type
        What :meth:`bake` returns (a plain ``nn.Module`` with ``config``).
    n_search_probes : int
        Training probes used by ``transform``'s embedding search (candidates scored and
        the winner chosen on all of them).
    n_refine_probes : int
        The first of those on which ``transform`` refines its best starts by gradient
        steps.
    auto_augmentation : float
        Augmented probes per training probe that ``probe_augmentation='auto'`` adds
        (:meth:`augment_probes`); 0 where augmentation has not been measured to help.
    auto_bfloat16 : bool
        Whether ``precision='auto'`` trains this family's meta-model in bfloat16 on a CPU
        that computes it natively; False where that has not been measured to pay.
    """

    name = None
    probe_rank = None
    meta_class = None
    standalone_class = None
    n_search_probes = 32
    n_refine_probes = 8
    auto_augmentation = 0
    auto_bfloat16 = False

    def __init__(self, *, recorder: str | Callable = "auto", n_pcs: int = 10, layers: Any = "auto",
                 spatial: str | int | tuple[int, int] = "pool", n_jobs: int | None = None,
                 n_steps: str | int = "max") -> None:
        self.recorder, self.n_pcs, self.n_jobs = recorder, n_pcs, n_jobs
        self.layers, self.spatial, self.n_steps = layers, spatial, n_steps

    def __repr__(self):
        return f"{type(self).__name__}(n_steps={self.n_steps!r})"

    # ------------------------------------------------------------------ members, probes
    @classmethod
    @abstractmethod
    def is_member(cls, model):
        """Whether ``model`` (a module or a recording) belongs to this family."""

    @classmethod
    def probe_mismatch(cls, index, model, shape):
        """Error message for member ``index`` of this family given probes of ``shape``
        that belong to another family."""
        return (f"Model {index} ({type(model).__name__}) is a {cls.name} member but "
                f"probe_inputs have shape {shape}.")

    def check_probes(self, probe_inputs, models):
        """Validate probe inputs against the members; returns a float32 copy."""
        from ..utils.validation import as_probe_array
        probes = as_probe_array(probe_inputs)
        self._check_probe_shape(probes)
        if not np.all(np.isfinite(probes)):
            raise ValueError("probe_inputs contains NaN or infinite values.")
        for i, m in enumerate(models):
            if isinstance(m, nn.Module):
                self._check_member_probes(i, m, probes)
            elif m.hidden.shape[0] != probes.shape[0]:
                raise ValueError(f"Model {i} is a Trajectories recorded on {m.hidden.shape[0]} "
                                 f"probes, but probe_inputs has {probes.shape[0]}.")
        return probes

    @abstractmethod
    def _check_probe_shape(self, probes):
        """Raise a ValueError unless ``probes`` have this family's shape."""

    def _check_member_probes(self, index, model, probes):  # noqa: B027 - optional hook
        """Raise a ValueError if member ``index`` (a module) cannot take ``probes``."""

    def default_probes(self, models, rng):
        """Probes for ``probe_inputs=None`` (seeded by ``rng``), or a ValueError saying
        what to pass."""
        raise ValueError(f"probe_inputs=None: {self.name} models need probe inputs; pass "
                         "probe_inputs=, ideally the task's own inputs.")

    def augment_probes(self, probes, n, rng):
        """``n`` perturbed or denser versions of ``probes`` (a fit's training probes),
        recorded and trained on beside them (``DynamoEmbedder(probe_augmentation=...)``),
        seeded by ``rng``. A family without a rule raises a ValueError."""
        raise ValueError(f"probe_augmentation: {self.name} models have no probe "
                         "augmentation; pass probe_augmentation=0.")

    # ------------------------------------------------------------------ recording, targets
    @abstractmethod
    def record_member(self, index, model, probes):
        """Record one member (an ``nn.Module``) on the probes: a ``Trajectories``."""

    def check_member(self, index, recording, probes):  # noqa: B027 - optional hook
        """Validate one member's recording against the probes (errors name ``index``)."""

    def check_recordings(self, recordings, probes):
        """Validate the population's recordings against each other; may align them.
        Returns the recordings."""
        return recordings

    def record(self, models, probes):
        """Record every member on the probes (``Trajectories`` pass through), in joblib
        workers (threads unless a ``joblib.parallel_config`` says otherwise), with the one
        population loop of :func:`skdynamo._recording.record_each`."""
        recorded = record_each(models, self.record_member, probes, self.n_jobs)
        return self.check_recordings(recorded, probes)

    @abstractmethod
    def reduce_member(self, recording, train_idx):
        """One member's recording reduced to its training targets (numpy, float32): a
        Bunch with ``hidden`` (P, T, k) (PCA via :mod:`skdynamo._targets`) and
        ``outputs``, plus what :meth:`combine_targets` needs."""

    @abstractmethod
    def combine_targets(self, reduced):
        """The members' reduced targets (:meth:`reduce_member`) as one population: checks
        across members, alignment, padding. Returns a Bunch with ``hidden`` (N, P, T, k),
        ``mask``, ``output_shape`` (per probe) and ``n_steps`` (T)."""

    def targets(self, recordings, probes, train_idx):
        """Reduce recordings (all in memory) to training targets, as
        :meth:`record_targets` does member by member. Returns the
        :meth:`combine_targets` Bunch."""
        reduced = []
        for i, t in enumerate(recordings):
            self.check_member(i, t, probes)
            reduced.append(self.reduce_member(t, train_idx))
        return self.combine_targets(reduced)

    def representation(self, recording):
        """A member's recorded hidden states as one (n_samples, n_units) float64 matrix
        (representation-similarity baselines such as CKA): every step of every probe."""
        h = np.asarray(recording.hidden, dtype=np.float64)
        return h.reshape(-1, h.shape[-1])

    def record_targets(self, models, probes, train_idx, *, output_shape=None):
        """Record members and reduce each to its targets as soon as it is recorded.

        Each worker of the recording loop (:func:`skdynamo._recording.record_each`)
        checks its member's recording (:meth:`check_member`) and reduces it
        (:meth:`reduce_member`) before taking the next, so the raw recordings of the
        population are never held at once: memory is set by the reduced targets.
        Returns the :meth:`combine_targets` Bunch with ``outputs`` (N, P, ...) and
        ``scales`` (N,: each member's output variance on the training probes) added.
        ``output_shape``, when given, is the shape the outputs must have (a fitted
        embedder's).
        """
        # numpy/scipy (the PCA targets) at one BLAS thread: OpenBLAS's threads beside
        # torch's own pool made fit and transform slower at two threads on a 2-core CPU
        # (docs/transform.md, "Two threads and BLAS"); the caller's setting comes back.
        with threadpool_limits(limits=1, user_api="blas"):
            reduced = record_each(models, self.record_member, probes, self.n_jobs,
                                  then=partial(self._check_and_reduce, probes=probes,
                                               train_idx=train_idx))
            rec = self.combine_targets(reduced)
        if output_shape is not None and rec.output_shape != tuple(output_shape):
            raise ValueError(f"Models have outputs of shape {rec.output_shape} per probe, but "
                             f"the embedder was fitted on outputs of shape "
                             f"{tuple(output_shape)}.")
        rec.outputs = np.stack([r.outputs for r in reduced])
        rec.scales = np.array([output_variance(o, train_idx) for o in rec.outputs])
        return rec

    def _check_and_reduce(self, index, recording, *, probes, train_idx):
        """:meth:`check_member`, then :meth:`reduce_member`: what each worker of
        :meth:`record_targets` does with a recording (a bound method, picklable for
        process backends)."""
        self.check_member(index, recording, probes)
        return self.reduce_member(recording, train_idx)

    # ------------------------------------------------------------------ meta-model, loss
    @abstractmethod
    def meta_params(self, probes, targets, *, n_components, hidden_size, cell, conditioning):
        """Constructor arguments of the conditioned meta-model, with its ``kind``."""

    def default_output_loss(self, output_shape):
        """The ``output_loss`` that ``'auto'`` means: ``'mse'`` or ``'kl'``."""
        return "mse"

    def last_only(self, output_shape):
        """Whether the members' outputs are the last step only (sequence classifiers)."""
        return False

    # ------------------------------------------------------------------ baking, persistence
    @abstractmethod
    def bake(self, meta, theta):
        """The meta-model at embedding ``theta`` as a standalone ``nn.Module``."""

    @classmethod
    def probe_shape(cls, meta):
        """Trailing shape of the probes ``meta`` takes (checks of stored probes)."""
        return (meta.n_inputs,)

    def n_timesteps(self, x):
        """Time steps of data ``x`` for this family's networks (None: no time axis)."""
        return x.shape[1]

    @staticmethod
    def _theta(meta, theta):
        ref = next(meta.parameters())
        return torch.as_tensor(theta, dtype=ref.dtype, device=ref.device).reshape(-1)
