"""DynamoEmbedder: the scikit-learn face of DYNAMO (sklearn logic only)."""

import warnings
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from sklearn.exceptions import ConvergenceWarning
from skorch.callbacks import GradientNormClipping, LRScheduler
from skorch.helper import predefined_split

from ._augment import n_augmented
from ._codes import candidate_states, emulation_r2, fit_codes, search_candidates
from ._guards import PRECISIONS, check_device, resolve_precision
from ._loss import DynamoLoss, resolve_output_loss
from ._net import (AcceleratedDynamoNet, Converged, DynamoNet, EpochProgressBar, LRWarmup,
                   PairDataset, PairSampler, StepShards, check_accelerator, keep_batch,
                   held_out_pairs, training_plan)
from ._recording import Trajectories
from ._stability import _models_of, _pairs_of, _residual_table, embedding_disagreement
from ._targets import (MIN_RELATIVE_OUTPUT_VARIANCE, floor_output_scales, initial_embeddings,
                       output_variance)
from .families import FAMILIES, resolve_family
from .nn import DynamoModule, EmulatedNetwork
from .utils.validation import check_models

__all__ = ["DynamoEmbedder"]

Models = Sequence[torch.nn.Module | Trajectories]

_MAX_SEED = np.iinfo(np.int32).max
#: Optimiser steps of linear learning-rate warm-up at the start of a fit (at most).
_WARMUP_STEPS = 200
#: Factor the learning rate is multiplied by on a plateau, or when a patience window
#: ran at one rate (``Converged``).
_LR_FACTOR = 0.5
#: Absolute fall of the held-out loss (normalised per member, about 1 - R^2 per term) an
#: epoch needs, besides the relative ``tol``, to count as an improvement for convergence.
_MIN_IMPROVEMENT = 1e-4
#: (model, probe) pairs per batch of the validation pass and of the final scores.
_VALID_BATCH = 1024
#: Models scored together on the held-out probes at the end of a fit.
_SCORE_MODELS = 64
#: ``reverse_weight='auto'`` for recurrent meta-models (convolutional ones: 0). Chosen on
#: the fidelity page ("A reverse hidden term"): 0.3 and 1.0 both kept members that differ by
#: a removed head apart at every seed; 0.3 costs the classifier agents less output R^2.
_AUTO_REVERSE_WEIGHT = 0.3


def _as_tensor(a, device):
    return torch.as_tensor(a, dtype=torch.float32, device=device)


#: A member whose held-out output or hidden R^2 is below ``_LAGGING_R2`` while the
#: population's median of the same score is at least ``_LAGGING_MEDIAN`` is reported
#: after a fit (:func:`_lagging_message`): the meta-model works for the others, not for it.
_LAGGING_R2, _LAGGING_MEDIAN = 0.9, 0.97


def _lagging_message(scores, member_balance):
    """The warning for members emulated far worse than the rest, or None.

    ``scores`` maps a score's name to its per-member values (``emulation_scores_``)."""
    parts, idx = [], set()
    for name in ("output_r2", "hidden_r2"):
        values = np.asarray(scores[name])
        median = float(np.median(values))
        low = np.flatnonzero(values < _LAGGING_R2)
        if median < _LAGGING_MEDIAN or not len(low):
            continue
        idx.update(low.tolist())
        listed = ", ".join(f"{i}: {values[i]:.3f}" for i in low[:5])
        parts.append(f"{name.replace('_r2', '')} R^2 {listed}{' ...' if len(low) > 5 else ''}"
                     f" (median {median:.3f})")
    if not parts:
        return None
    advice = ("Try member_balance=0.5 (or 1.0), which weighs the members emulated worst "
              "more in training (the fidelity page, 'Weighing the members emulated worst')"
              if not member_balance else
              "A larger hidden_size, or probe inputs that drive those models' hidden "
              "dynamics, may help")
    return (f"The meta-model emulates model(s) {sorted(idx)} far worse than the rest of the "
            f"population (held-out {'; '.join(parts)}): their embeddings, model_at and "
            f"averages that include them are less faithful. {advice}.")


def _scores(out_r2, hid_r2, agreement):
    scores = Bunch(output_r2=out_r2, hidden_r2=hid_r2)
    if agreement is not None:
        scores["agreement"] = agreement
    return scores


def reduce_behaviour(features, pca=None, max_components=10):
    """PCA of :meth:`DynamoEmbedder.behaviour` features to at most ``max_components``
    (fitted when ``pca`` is None). Returns ``(reduced, pca)``."""
    if pca is None:
        n = min(max_components, features.shape[1], max(1, len(features) - 1))
        pca = PCA(n_components=n, svd_solver="full").fit(features)
    return pca.transform(features), pca


def state_geometry(states, n_points=128):
    """The geometry of each point's meta-model states: ``(n_points_map, m (m + 1) / 2)``.

    ``states`` is ``(n, samples, width)``: one point's states at every (probe, step).
    At ``m`` evenly spaced samples, the Gram matrix of the centred states is
    double-centred and scaled to unit Frobenius norm; its upper triangle is the feature
    vector. Half the squared distance between two points' features is one minus the
    linear CKA of their states: a comparison of what the states represent that does not
    depend on how strongly they vary along each direction.
    """
    n, samples, _ = states.shape
    m = min(n_points, samples)
    g = states[:, np.linspace(0, samples - 1, m).astype(int)]
    g = g - g.mean(1, keepdims=True)
    gram = np.einsum("npi,nqi->npq", g, g)
    gram = gram - gram.mean(2, keepdims=True)           # columns, then rows: H K H
    gram = gram - gram.mean(1, keepdims=True)
    norm = np.sqrt((gram ** 2).sum((1, 2)))
    gram = gram / np.maximum(norm, 1e-12)[:, None, None]
    rows, cols = np.triu_indices(m)
    return gram[:, rows, cols]


def _resolve_device(device):
    return check_device(device)  # 'auto' resolved; unavailable devices: ValueError


def _shared_seed(accelerator, rng):
    """A seed drawn from ``rng`` on the main process, the same on every process."""
    from accelerate.utils import broadcast_object_list
    return int(broadcast_object_list([int(rng.randint(_MAX_SEED))])[0])


def _check_same_recordings(accelerator, rec):
    """Refuse a fit whose processes recorded different targets (other models or probes)."""
    sums = torch.tensor([[float(np.sum(rec.outputs, dtype=np.float64)),
                          float(np.sum(rec.hidden, dtype=np.float64)),
                          float(rec.outputs.size)]], dtype=torch.float64)
    every = accelerator.gather(sums.to(accelerator.device)).cpu()
    # A tolerance: the same models recorded under other thread counts may differ in the
    # last bits; other models or probes differ far more.
    if not torch.allclose(every, every[:1].expand_as(every), rtol=1e-4, atol=1e-6):
        raise ValueError("accelerator: the processes recorded different targets (their "
                         "sums differ); every process must call fit on the same models "
                         "with the same probe_inputs and an int random_state or the same "
                         "draws.")


class DynamoEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Embed a population of trained networks by emulating their dynamics.

    Each model is one sample. Every model is run on shared probe inputs; one meta-model,
    conditioned on a learned low-dimensional embedding ``theta_n`` per model, is trained so
    that at ``theta_n`` it reproduces model ``n``'s outputs and, through a per-model linear
    map, its PCA-reduced hidden-state trajectories. The embeddings are the map of the
    population: close points are models that compute alike, whatever their
    parameterisation.

    Parameters
    ----------
    n_components : int, default=2
        Dimension ``d`` of the model embedding.
    probe_inputs : array-like, default=None
        Inputs every model is run on: sequences ``(n_probes, n_timesteps, n_features)``
        for recurrent models, images ``(n_probes, channels, height, width)`` for
        convolutional ones. Task inputs give the most meaningful map. ``None`` draws 256
        seeded random probe sequences of 50 steps
        (:func:`skdynamo.datasets.make_random_probes`), the width read off each model's
        first layer; an error says what to pass when that width cannot be read (and for
        CNNs, which need images).
    probe_augmentation : 'auto' or int, default=0
        Perturbed and denser versions of the training probes, added to them for training
        (the model family makes them: for sequences noisy, time-shifted, spliced,
        rescaled and denser-event versions; for images noisy, shifted and blended ones).
        Only the training split is augmented: the held-out probes, on which
        ``emulation_scores_`` and early stopping are measured, are the given probes
        themselves, and the PCA targets and output scales are fitted on the given
        training probes. An int is the number of augmented probes (0: none, the
        default). ``'auto'`` adds one per training probe for recurrent populations, and
        none for CNN and Transformer populations (not measured yet) or when a member is
        a recorded ``Trajectories`` (which cannot be run on new probes). Measured on
        recurrent populations (see the fidelity page), ``'auto'`` raised held-out
        fidelity (output R^2 0.987 to 0.994 on the 27-network default population) or
        left it unchanged, and converged in fewer epochs on small populations, but an
        epoch runs over twice the probes, so on populations of 18 or more members a fit
        took up to about 3.8 times the optimiser steps: not yet the default. Augmented
        probes are not kept: ``probe_inputs_`` holds the given probes.
    recorder : 'auto' or callable, default='auto'
        ``'auto'`` records every ``nn.RNN``/``nn.GRU``/``nn.LSTM`` submodule with forward
        hooks (all layers of multi-layer RNNs; ``h_t`` of LSTMs), and every
        ``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell`` called once per step (its states
        concatenated along time), or, for images, the
        layers chosen by ``layers`` (:func:`skdynamo.record_cnn`). A callable
        ``recorder(model, inputs) -> (hidden, outputs)`` overrides it (for images it may
        return ``(list_of_layer_arrays, logits)`` or a ``LayerTrajectories``).
    hidden_size : int, default=64
        Width of the meta-model's state (channels of each stage of a CNN meta-model).
    cell : {'gru', 'lstm', 'rnn'}, default='lstm'
        Cell of a recurrent meta-model. On the fidelity benchmark's recurrent
        populations the LSTM emulates the mixed ones more closely than a GRU of the
        same width (output R^2 +0.002 to +0.008, the worst member higher) and the others
        as well; on a CPU with bfloat16 instructions a training step costs 0.7-0.9 of
        the GRU's (0.7 at 100 members, 0.9 at 27: oneDNN fuses the LSTM's recurrent
        layer, not the GRU's), but fits of small populations run longer, because the
        held-out loss keeps improving for longer (1.1x the GRU's time on the default
        population).
        ``'gru'`` reproduces the defaults before 2026-12-07. A tanh ``'rnn'`` is about
        three times cheaper per step but emulates worse (output R^2 0.957 against 0.993
        on the default population). See the fidelity page, "The meta-model's cell".
    conditioning : {'concat', 'bilinear'}, default='concat'
        How a recurrent meta-model reads the embedding: ``'concat'``, ``theta``
        appended to the inputs (the original DYNAMO form); ``'bilinear'``, input weights
        and readout that are linear functions of ``theta`` (the cell reads
        ``[x_t, theta, x_t (x) theta]``). Both fold into a plain network at one
        embedding. Measured on the fidelity page: ``'bilinear'`` emulates more closely
        and separates the cognitive-task population as well as output space does, but
        it also resolves functionally equivalent members into distinct groups of the
        map, between which the meta-model does not work (the centroid of one averaging
        group had over 130 times the members' error): hence not the default. Unused by CNN
        meta-models, which are FiLM-modulated.
    n_pcs : int, default=10
        Principal components kept of each model's hidden states (of each layer, for CNNs).
    hidden_weight : float, default=1.0
        Weight ``alpha`` of the hidden-state term of the loss.
    embedding_l2 : float, default=1e-3
        Weight ``lambda`` of the penalty on embedding norms.
    reverse_weight : 'auto' or float, default='auto'
        Weight of a reverse hidden term (recurrent meta-models): besides the member's
        states being a linear read-out of the meta-model's (the hidden term), the
        meta-model's states at the member's embedding must be a linear function of the
        member's, so that a region of the map whose dynamics hold *more* than a member
        does (an extra echo, a removed head's computation) no longer emulates it as well
        as one that holds exactly its dynamics. The map is fitted in closed form per
        member on each batch; the term is the share of the meta-model's state entries it
        leaves unexplained. ``'auto'`` is 0.3 for recurrent meta-models and 0 for
        convolutional ones (their maps are per layer); ``0`` is the original DYNAMO
        objective. Measured on the fidelity page ("A reverse hidden term"): 0.3 keeps
        members that differ by a removed head apart at every seed, where 0 failed at one
        of three, at 0.004-0.008 lower output R^2 on classifier agents and about a quarter
        more time per epoch.
    member_balance : float, default=0.0
        How much more the members the meta-model emulates worst weigh in training: each
        member's output and hidden terms are weighted by ``(e_n / mean e) ** gamma``
        (``gamma = member_balance``, ``e_n`` a running mean of that member's term over
        the training steps, the ratio capped at 10), so that training works on the
        members furthest from their targets. 0: every member weighs the same (the
        original DYNAMO objective). The held-out loss, which decides convergence, is
        never weighted. Measured on the fidelity page ("Weighing the members emulated
        worst"): on the 27-member benchmark population, where the defaults miss one
        member's hidden states at four seeds of five, 0.5 held every member at hidden
        R^2 0.984 or more at about 1.25 times the fit time, and 1.0 at 0.988 or more with
        every output R^2 at 0.990 or more, at about 1.5 times; neither helped classifier
        agents or CNNs, and 1.0 made the agents' clusters less reliable.
    output_loss : {'auto', 'mse', 'kl'}, default='auto'
        ``'kl'`` compares softmax outputs (classifiers), ``'mse'`` raw outputs normalised
        by each model's output variance. ``'auto'``: ``'kl'`` for image classifiers
        (CNNs) with two or more outputs, ``'mse'`` for sequences and for single-output
        models (a sigmoid binary classifier is emulated on its logit).
    meta_model : {'auto', 'rnn', 'transformer', 'cnn'}, default='auto'
        The conditioned meta-model. ``'rnn'``: a recurrent network
        (:class:`skdynamo.nn.ConditionedRNN`), time steps as time; ``'transformer'``: the
        same meta-model for causal Transformers (and RNNs beside them), tokens as time,
        each block's residual stream as hidden state (chosen by ``'auto'`` or ``'rnn'``
        when a member holds ``nn.TransformerEncoderLayer`` blocks). ``'cnn'``: a
        convolutional network modulated by FiLM (:class:`skdynamo.nn.ConditionedCNN`),
        the recorded layers as time, one map per model and layer. ``'auto'``: ``'cnn'``
        when the probe inputs are images (rank 4) or, with ``probe_inputs=None``, when
        the models are convolutional; ``'transformer'`` when a sequence model is a
        Transformer; ``'rnn'`` otherwise.
    layers : 'auto', str, nn.Module type or list of those, default='auto'
        CNNs and Transformers: layers recorded. CNNs (:func:`skdynamo.cnn_layers`):
        ``'auto'`` is each conv block's output and the penultimate features; members of
        different depths are aligned by relative depth (:func:`skdynamo.align_depths`).
        Transformers: the blocks whose output is the residual stream; ``'auto'`` is
        every ``nn.TransformerEncoderLayer``.
    spatial : 'pool', int or (int, int), default='pool'
        CNNs only: each layer's feature maps averaged over space, or over a small grid.
    max_epochs : int, default=300
        Cap on training epochs; training normally ends sooner, by convergence (see
        ``patience`` and ``tol``): on the benchmark populations after 75-212 epochs, the
        cap leaving room for slow fits (docs/fidelity.md, "The epoch cap"). An epoch is
        one pass over every (model, training probe) pair, or 32 steps when that is less,
        so that neither a step nor an epoch costs more with more models (see
        ``batch_size``). A fit that reaches the cap while the held-out loss is still
        improving issues a :class:`~sklearn.exceptions.ConvergenceWarning`.
    lr : float, default=1e-2
        Adam learning rate, reached after a linear warm-up over the first 200 steps (a
        tenth of the steps ``max_epochs`` allows if fewer) and halved on plateaus.
    batch_size : int, default=256
        (model, probe) pairs per gradient step: a step is a set of models, each run on
        the same probes. While ``n_models <= batch_size`` every step holds every model,
        on ``batch_size // n_models`` probes (fewer when needed for an epoch to have at
        least 16 steps), so functionally identical models receive identical updates;
        with more models, each step draws ``batch_size`` of them, one probe each.
        Models and probes are drawn without replacement across steps, so all pairs come
        up equally often. The held-out loss that decides convergence is measured on a
        fixed sample of at most 2048 held-out pairs (every pair of small populations).
    validation_fraction : float, default=0.2
        Fraction of probe sequences held out for early stopping and for
        ``emulation_scores_``.
    patience : int, default=10
        Epochs without improvement of the held-out loss before training is considered
        converged and stops (the best epoch is restored), provided the learning rate
        was reduced within those epochs: the rate is halved after ``patience // 2``
        epochs in which the held-out loss did not fall at all (by torch's
        ``ReduceLROnPlateau`` threshold, a relative 1e-4), and a window that runs out at
        an unreduced rate (a loss still falling, but by less than ``tol``) halves the
        rate and starts again instead of stopping.
    tol : float, default=1e-2
        Relative improvement of the held-out loss that counts as an improvement for
        convergence; the loss must also fall by at least 1e-4 in absolute terms (it is
        normalised per member, about 1 - R^2 per term), so that fits already emulating
        their members to R^2 ~0.9997 stop rather than run to ``max_epochs``.
    n_starts : int, default=1
        Best-scoring candidates refined per model in :meth:`transform` (when
        ``transform_max_iter > 0``).
    transform_max_iter : int, default=3
        Adam steps refining each start in :meth:`transform`. :meth:`transform` first
        scores every candidate embedding (the training embeddings, or 32 k-means centres
        of more than 64) for every model in one batched, closed-form call; the
        ``n_starts`` best are then refined on a few probes, and the candidate or refined
        start with the lowest loss on all search probes wins. ``0`` keeps the best
        candidate. See :doc:`/transform` for the measured speed and quality.
    callbacks : list of skorch callbacks, default=None
        Extra callbacks for the training loop (cloned at each fit).
    precision : {'auto', 'float32', 'bfloat16'}, default='auto'
        Arithmetic of the training steps' forward and backward passes. ``'bfloat16'``
        runs them under ``torch.autocast`` (matrix products in bfloat16; the loss,
        weights, optimiser and gradient sums stay float32); the held-out pass that
        decides convergence, ``emulation_scores_``, :meth:`transform` and
        :meth:`model_at` always run in float32. ``'auto'`` takes bfloat16 for recurrent
        meta-models on a CPU that computes it natively (AVX-512 BF16 or AMX
        instructions, as torch reports) and float32 elsewhere: for CNNs (measured no
        faster), Transformer members (not measured) and on CUDA (not yet run on a GPU;
        ``'bfloat16'`` asks for it there). A fit's result therefore depends on the
        machine, as float summation order already makes it. See :doc:`/fidelity` for
        the measured speed and fidelity. With an ``accelerator``, its own
        ``mixed_precision`` decides.
    device : str, default='cpu'
        Torch device for the meta-model (``'cuda'``, ``'auto'``...). Base models are
        recorded on their own device. Ignored when ``accelerator`` is given.
    accelerator : accelerate.Accelerator, default=None
        Train the meta-model through HuggingFace Accelerate (skorch's
        ``AccelerateMixin``), e.g. on several processes or GPUs started by
        ``accelerate launch``: every process calls ``fit`` on the same models, runs its
        part of every training step, and ends with the same fitted estimator, on the
        accelerator's device. Recording, the held-out pass and the scores are not split.
        ``None`` (the default) trains in this process on ``device``. Needs the
        ``accelerate`` extra; see :doc:`/distributed`.
    n_jobs : int, default=None
        Models recorded in parallel, and chunks of models embedded in parallel by
        :meth:`transform` (joblib threads unless a ``joblib.parallel_config`` backend
        says otherwise).
    random_state : int, RandomState instance or None, default=None
        Seeds probes, the split, initialisation and batches. The global torch RNG is not
        touched.
    verbose : int, default=0
        0 silent; 1 a progress bar over epochs; 2 also skorch's per-epoch table.

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_models, n_components)
        Embedding of each training model.
    meta_model_ : skdynamo.nn.ConditionedRNN or skdynamo.nn.ConditionedCNN
        The trained meta-model.
    maps_ : tuple of ndarrays
        ``(weight (n_models, k, hidden_size), bias (n_models, k))``: the per-model maps
        (for CNNs one per layer: ``(n_models, n_layers, k, state_size)`` and
        ``(n_models, n_layers, k)``).
    history_ : skorch.History
        Per-epoch training and validation losses.
    n_iter_ : int
        Training epochs run.
    converged_ : bool
        Whether training ended by convergence of the held-out loss (``patience`` epochs
        without improvement) rather than at ``max_epochs``; in the latter case a
        :class:`~sklearn.exceptions.ConvergenceWarning` is issued.
    emulation_scores_ : Bunch
        ``output_r2`` and ``hidden_r2``, arrays of shape (n_models,), measured on the
        held-out probes; with ``output_loss='kl'`` the output R^2 compares softmax
        probabilities and ``agreement`` (argmax agreement with each model) is added.
        When a model's output or hidden R^2 is below 0.9 where the population's median
        is 0.97 or more, ``fit`` names it in a ``UserWarning``.
    probe_inputs_ : ndarray
        The probe inputs used (drawn when ``probe_inputs=None``).
    n_models_ : int
        Number of training models.
    family_ : skdynamo.families.ModelFamily
        The model family the population was resolved to (``meta_model`` and the probes
        choose it): how members are recorded and reduced, which meta-model emulates them
        and how it is baked at one embedding. ``family_.n_steps`` is the number of
        recorded steps (layers, for CNNs) members are aligned to.
    loss_ : skdynamo._loss.DynamoLoss
        The loss trained with: ``loss_.output`` is the resolved output loss (its ``name``
        is ``'mse'`` or ``'kl'``), also used by :meth:`transform`'s search.

    See Also
    --------
    DynamoCluster : Cluster models by their embeddings.

    Notes
    -----
    Embeddings start from a PCA of reparameterisation-invariant behaviour features
    (outputs, and Gram matrices of PCA-reduced hidden states) and the per-model maps start
    at zero, so functionally identical models receive identical updates and land on the
    same point while the population fits in a step (``n_models <= batch_size``); beyond
    that they are trained in different steps and land close together (the twin ratio
    measured by ``benchmarks/bench_scale.py``). Each member's recording is reduced to
    its float32 PCA targets as soon as it is recorded, so memory is set by the reduced
    targets, not by the raw recordings.

    References
    ----------
    Cotler, Tai, Hernandez, Elias, Sussillo. "Analyzing Populations of Neural Networks via
    Dynamical Model Embedding." arXiv:2302.14078 (2023).

    Examples
    --------
    >>> import torch
    >>> from skdynamo import DynamoEmbedder
    >>> from skdynamo.datasets import RecurrentNetwork
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> models = [RecurrentNetwork(3, 3, hidden_size=8, cell=c) for c in ("rnn", "gru", "lstm")]
    >>> emb = DynamoEmbedder(n_components=2, hidden_size=16, max_epochs=2, random_state=0)
    >>> emb.fit_transform(models).shape
    (3, 2)

    Image probes select the convolutional meta-model (layers as time):

    >>> import numpy as np
    >>> from skdynamo.datasets import ConvNetwork
    >>> cnns = [ConvNetwork(width=4, depth=d) for d in (2, 3, 2)]
    >>> images = np.random.RandomState(0).rand(16, 1, 8, 8)
    >>> emb = DynamoEmbedder(probe_inputs=images, hidden_size=8, max_epochs=2, random_state=0)
    >>> emb.fit_transform(cnns).shape
    (3, 2)
    >>> type(emb.meta_model_).__name__, sorted(emb.emulation_scores_)
    ('ConditionedCNN', ['agreement', 'hidden_r2', 'output_r2'])
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "probe_inputs": ["array-like", None],
        "probe_augmentation": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "recorder": [StrOptions({"auto"}), callable],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "cell": [StrOptions({"gru", "lstm", "rnn"})],
        "conditioning": [StrOptions({"concat", "bilinear"})],
        "n_pcs": [Interval(Integral, 1, None, closed="left")],
        "hidden_weight": [Interval(Real, 0, None, closed="left")],
        "embedding_l2": [Interval(Real, 0, None, closed="left")],
        "reverse_weight": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "member_balance": [Interval(Real, 0, None, closed="left")],
        "output_loss": [StrOptions({"auto", "mse", "kl"})],
        "meta_model": [StrOptions({"auto", *FAMILIES})],
        "layers": [str, type, list, tuple],
        "spatial": [StrOptions({"pool"}), Interval(Integral, 1, None, closed="left"), tuple],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, 1, closed="left")],
        "n_starts": [Interval(Integral, 1, None, closed="left")],
        "transform_max_iter": [Interval(Integral, 0, None, closed="left")],
        "callbacks": [list, None],
        "precision": [StrOptions(set(PRECISIONS))],
        "device": [str, torch.device],
        "accelerator": [None, HasMethods(["prepare", "unwrap_model", "reduce"])],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, n_components=2, *, probe_inputs=None, probe_augmentation=0,
                 recorder="auto", hidden_size=64, cell="lstm", conditioning="concat",
                 n_pcs=10, hidden_weight=1.0, embedding_l2=1e-3, reverse_weight="auto",
                 member_balance=0.0, output_loss="auto", meta_model="auto", layers="auto",
                 spatial="pool", max_epochs=300, lr=1e-2, batch_size=256,
                 validation_fraction=0.2, patience=10, tol=1e-2, n_starts=1, transform_max_iter=3,
                 callbacks=None, precision="auto", device="cpu", accelerator=None, n_jobs=None,
                 random_state=None, verbose=0):
        self.n_components = n_components
        self.probe_inputs = probe_inputs
        self.probe_augmentation = probe_augmentation
        self.recorder = recorder
        self.hidden_size = hidden_size
        self.cell = cell
        self.conditioning = conditioning
        self.n_pcs = n_pcs
        self.hidden_weight = hidden_weight
        self.embedding_l2 = embedding_l2
        self.reverse_weight = reverse_weight
        self.member_balance = member_balance
        self.output_loss = output_loss
        self.meta_model = meta_model
        self.layers = layers
        self.spatial = spatial
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.n_starts = n_starts
        self.transform_max_iter = transform_max_iter
        self.callbacks = callbacks
        self.precision = precision
        self.device = device
        self.accelerator = accelerator
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ helpers
    def _make_family(self, family):
        """The family object of this fit (class ``family``) with these recording settings."""
        return family(recorder=self.recorder, n_pcs=self.n_pcs, layers=self.layers,
                              spatial=self.spatial, n_jobs=self.n_jobs)

    def _torch(self, a):
        return _as_tensor(a, self._device)

    def _callbacks(self, warmup_steps):
        cbs = [
            ("grad_clip", GradientNormClipping(gradient_clip_value=1.0)),
            ("lr_warmup", LRWarmup(warmup_steps)),
            ("lr_plateau", LRScheduler(policy="ReduceLROnPlateau", monitor="valid_loss",
                                       patience=max(1, self.patience // 2), factor=_LR_FACTOR)),
            ("early_stopping", Converged(monitor="valid_loss", patience=self.patience,
                                         threshold=self.tol, load_best=True,
                                         factor=_LR_FACTOR, floor=_MIN_IMPROVEMENT)),
        ]
        if self.verbose:
            cbs.append(("epoch_progress", EpochProgressBar()))
        for i, cb in enumerate(self.callbacks or []):
            name, cb = cb if isinstance(cb, tuple) else (f"user_{i}", cb)
            cbs.append((name, clone(cb)))
        return cbs

    # ------------------------------------------------------------------ API
    def fit(self, X: Models, y: None = None) -> "DynamoEmbedder":
        """Record the models, train the meta-model and learn one embedding per model.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population; each model is one sample.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : DynamoEmbedder
            The fitted estimator.
        """
        self._validate_params()
        models = check_models(X)
        acc = self.accelerator
        device = _resolve_device(self.device) if acc is None else check_accelerator(acc)
        if acc is not None and self.precision == "bfloat16":
            raise ValueError("precision='bfloat16' does not apply with an accelerator: its "
                             "own mixed_precision setting decides (Accelerator("
                             "mixed_precision='bf16')); leave precision='auto'.")
        rng = check_random_state(self.random_state)
        if acc is not None and not isinstance(self.random_state, Integral):
            rng = np.random.RandomState(_shared_seed(acc, rng))  # the main process's draw
        family = self._make_family(resolve_family(self.meta_model, self.probe_inputs, models))
        train_dtype = (None if acc is not None else
                       resolve_precision(self.precision, device, family.auto_bfloat16))
        probes = (family.default_probes(models, rng) if self.probe_inputs is None
                  else family.check_probes(self.probe_inputs, models))
        n_probes = len(probes)
        perm = rng.permutation(n_probes)
        n_valid = min(n_probes - 1, max(1, int(round(self.validation_fraction * n_probes))))
        valid_idx, train_idx = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
        # Augmented probes: made from the training probes, recorded and trained on, never
        # held out; PCA targets and output scales stay fitted on the originals.
        n_aug = n_augmented(self.probe_augmentation, len(train_idx), models, family)
        augmented = (family.augment_probes(probes[train_idx], n_aug, rng) if n_aug
                     else probes[:0])
        fit_idx = np.concatenate([train_idx, n_probes + np.arange(n_aug)])
        rec = family.record_targets(models, np.concatenate([probes, augmented]), train_idx)
        family.n_steps = rec.n_steps  # later recordings are aligned as these were
        if acc is not None:
            _check_same_recordings(acc, rec)
        outputs, hidden, out_shape = rec.outputs, rec.hidden, rec.output_shape
        scales, flat = floor_output_scales(rec.scales)
        output_loss = resolve_output_loss(self.output_loss, family, out_shape)
        if len(flat) and output_loss.name == "mse":
            warnings.warn(
                f"The outputs of model(s) {flat.tolist()[:10]}{' ...' if len(flat) > 10 else ''}"
                f" barely vary on the probe inputs (output variance below "
                f"{MIN_RELATIVE_OUTPUT_VARIANCE:g} times the population's median): "
                "their output error is weighed as if they varied that much, so that they do "
                "not take over the fit. Check them (a collapsed or untrained network?) and "
                "the probe inputs.", UserWarning, stacklevel=2)
        reverse_weight = self._reverse_weight(family.meta_class.per_step_maps)
        loss = DynamoLoss(output_loss,
                          hidden_weight=self.hidden_weight, embedding_l2=self.embedding_l2,
                          last_only=family.last_only(out_shape),
                          output_scale=scales.astype(np.float32),
                          reverse_weight=reverse_weight,
                          member_balance=self.member_balance, n_models=len(models))
        behaviour = loss.output.behaviour(outputs)
        behaviour_scales = floor_output_scales(
            [output_variance(o, train_idx) for o in behaviour])[0]
        init = initial_embeddings(behaviour, list(hidden), behaviour_scales, train_idx,
                                  self.n_components, rng)
        n_models = len(models)
        meta_params = family.meta_params(probes, rec, n_components=self.n_components,
                                         hidden_size=self.hidden_size, cell=self.cell,
                                         conditioning=self.conditioning)
        seed = int(rng.randint(_MAX_SEED))

        # Training: steps of (model, probe) pairs whose size, and the epoch's number of
        # steps, do not grow with the population (_net.training_plan); validation on a
        # fixed sample of held-out pairs (_net.held_out_pairs) of original probes only.
        per_step, probes_per_step, steps_per_epoch = training_plan(
            n_models, len(fit_idx), self.batch_size)
        train_ds = PairDataset(np.concatenate([probes, augmented]), outputs, hidden,
                               probe_ids=fit_idx, device=device)
        valid_ds = train_ds.with_pairs(held_out_pairs(n_models, valid_idx, rng))
        sampler = PairSampler(n_models, len(fit_idx), per_step, probes_per_step,
                              steps_per_epoch, seed)
        # Warm-up: _WARMUP_STEPS steps, or a tenth of the steps max_epochs allows if fewer.
        warmup = max(1, min(_WARMUP_STEPS, self.max_epochs * steps_per_epoch // 10))
        devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
        # One branch: one process (skorch places the net on device), or Accelerate
        # (it places the module; each process runs its part of every step).
        cls, placement = DynamoNet, dict(device=device, iterator_train__sampler=sampler,
                                         train_dtype=train_dtype)
        if acc is not None:
            cls, placement = AcceleratedDynamoNet, dict(
                accelerator=acc, device=None, iterator_train__batch_size=1,
                iterator_train__batch_sampler=StepShards(sampler, acc.num_processes))
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            net = cls(
                DynamoModule,
                module__meta_params=meta_params, module__n_models=n_models,
                module__n_targets=hidden.shape[-1], module__init_embeddings=init,
                module__target_mask=rec.mask,
                module__output_scale=scales.astype(np.float32),
                module__return_states=bool(reverse_weight),
                criterion=loss,  # the data term; DynamoNet.get_loss adds the penalty
                optimizer=torch.optim.Adam, lr=self.lr, max_epochs=self.max_epochs,
                batch_size=per_step * probes_per_step, train_split=predefined_split(valid_ds),
                iterator_train__collate_fn=keep_batch,
                iterator_train__generator=torch.Generator().manual_seed(seed),
                iterator_valid__collate_fn=keep_batch,
                iterator_valid__batch_size=_VALID_BATCH,
                callbacks=self._callbacks(warmup), verbose=int(self.verbose >= 2), **placement,
            )
            net.fit(train_ds, None)
        stop = dict(net.callbacks_)["early_stopping"]
        module = net.module_.eval()
        meta = module.meta
        for p in meta.parameters():
            p.requires_grad_(False)
        theta = module.embeddings.detach()
        maps = (module.map_weight.detach(), module.map_bias.detach())
        # Scores on every held-out probe, a block of models at a time (bounded memory).
        blocks = []
        for c in np.array_split(np.arange(n_models), -(-n_models // _SCORE_MODELS)):
            valid = tuple(_as_tensor(a, device) for a in
                          (probes[valid_idx], outputs[c][:, valid_idx], hidden[c][:, valid_idx]))
            blocks.append(emulation_r2(meta, theta[c], None, valid, loss=loss,
                                       maps=(maps[0][c], maps[1][c])))
        out_r2, hid_r2, agree = (None if parts[0] is None else np.concatenate(parts)
                                 for parts in zip(*blocks))
        if not stop.converged_:
            warnings.warn(
                f"DYNAMO training stopped at the epoch cap (max_epochs={self.max_epochs}) "
                f"while the held-out loss was still improving (best epoch "
                f"{stop.best_epoch_}; held-out output R^2 median {np.median(out_r2):.4f}, "
                f"min {np.min(out_r2):.4f}). Raise max_epochs for a closer emulation.",
                ConvergenceWarning, stacklevel=2)
        lagging = _lagging_message(dict(output_r2=out_r2, hidden_r2=hid_r2),
                                   self.member_balance)
        if lagging:
            warnings.warn(lagging, UserWarning, stacklevel=2)

        # Everything above used locals: a failure leaves a previous fit untouched.
        self._device = device
        self.family_, self.loss_ = family, loss
        self.probe_inputs_ = probes
        self._train_idx, self._valid_idx = train_idx, valid_idx
        self._output_shape = out_shape
        self.n_models_ = n_models
        self.meta_model_ = meta
        self.embeddings_ = theta.cpu().numpy().astype(np.float64)
        self.maps_ = tuple(m.cpu().numpy() for m in maps)
        self.history_ = net.history
        self.n_iter_, self.converged_ = len(net.history), bool(stop.converged_)
        self.emulation_scores_ = _scores(out_r2, hid_r2, agree)
        self._n_features_out = self.n_components
        return self

    def fit_transform(self, X: Models, y: None = None) -> np.ndarray:
        """Fit and return the training embeddings (``embeddings_``).

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population; each model is one sample.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        embeddings : ndarray of shape (n_models, n_components)
            One embedding per model, in the order of ``X``.
        """
        return self.fit(X, y).embeddings_.copy()

    def record(self, X: Models) -> list:
        """Record models on the fitted probe inputs as the fit recorded its members.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to embed: members of the fitted family (or their recordings), with
            the inputs and outputs of the fitted population.

        Returns
        -------
        list of Trajectories
            One per model (``LayerTrajectories`` aligned to the fitted depth for CNNs).
        """
        check_is_fitted(self)
        return self._current_family().record(check_models(X), self.probe_inputs_)

    def _current_family(self):
        """``family_`` with the current recording parameters (``set_params`` after a fit
        applies to later recordings) and the fitted alignment."""
        family = self._make_family(type(self.family_))
        family.n_steps = self.family_.n_steps
        return family

    def _current_loss(self):
        """``loss_`` with the current loss weights (``set_params`` after a fit applies to
        :meth:`transform`'s search)."""
        return DynamoLoss(self.loss_.output, hidden_weight=self.hidden_weight,
                          embedding_l2=self.embedding_l2, last_only=self.loss_.last_only)

    # Fitted state for weights files (skdynamo._persistence): plain values only, under the
    # names format version 1 stores them by.
    _STATE = ("n_models_", "embeddings_", "maps_", "probe_inputs_", "n_iter_", "converged_",
              "emulation_scores_", "_n_features_out", "_train_idx", "_valid_idx",
              "_output_shape")

    def _reverse_weight(self, per_step_maps):
        """``reverse_weight`` resolved for a meta-model (``per_step_maps``: a CNN's)."""
        if isinstance(self.reverse_weight, str):  # "auto"
            return 0.0 if per_step_maps else _AUTO_REVERSE_WEIGHT
        if self.reverse_weight and per_step_maps:
            raise ValueError(f"reverse_weight={self.reverse_weight!r} applies to recurrent "
                             "meta-models (one map per member, shared over time); leave it "
                             "at 'auto' or 0 for CNN populations.")
        return float(self.reverse_weight)

    def _fitted_state(self):
        """What a weights file stores of this fit besides parameters, meta-model, history."""
        check_is_fitted(self)
        state = {name: getattr(self, name) for name in self._STATE}
        state.update(_kind=self.family_.name, _n_steps=self.family_.n_steps,
                     _output_loss=self.loss_.output.name, _last_only=self.loss_.last_only)
        return state

    def _set_fitted_state(self, state, meta_model, device):
        """Make this (unfitted) embedder the fit ``state`` describes (from a weights file)."""
        state = dict(state)
        family = self._make_family(FAMILIES[state.pop("_kind")])
        family.n_steps = state.pop("_n_steps")
        self.family_ = family
        self.loss_ = DynamoLoss(state.pop("_output_loss"), hidden_weight=self.hidden_weight,
                                embedding_l2=self.embedding_l2,
                                last_only=state.pop("_last_only"),
                                reverse_weight=self._reverse_weight(meta_model.per_step_maps))
        for name in self._STATE:
            setattr(self, name, state[name])
        self._device = device
        self.meta_model_ = meta_model.to(device)
        return self

    def _embed(self, X, scores=True):
        """Embed unseen models; returns (theta, scores on held-out probes or None).

        Models are recorded and searched block by block (64 per joblib worker), so the
        raw recordings of only one block are held at a time.
        """
        check_is_fitted(self)
        models = check_models(X)
        family, loss = self._current_family(), self._current_loss()
        probes = family.check_probes(self.probe_inputs_, models)
        tr, va = self._train_idx, self._valid_idx
        t = self._torch
        # A fixed subset of training probes keeps the per-step cost independent of P.
        n_sub = family.n_search_probes
        sub = tr[np.linspace(0, len(tr) - 1, min(len(tr), n_sub)).astype(int)]
        search_probes, candidates = t(probes[sub]), t(search_candidates(self.embeddings_))
        # The meta-model's runs at the candidates do not depend on the models: once.
        states = candidate_states(self.meta_model_, search_probes, candidates)
        block = 64 * effective_n_jobs(self.n_jobs)
        thetas, parts = [], []
        for start in range(0, len(models), block):
            rec = family.record_targets(models[start:start + block], probes, tr,
                                        output_shape=self._output_shape)
            outputs, hidden, scales = rec.outputs, rec.hidden, rec.scales
            theta, _ = fit_codes(
                self.meta_model_, search_probes, t(outputs[:, sub]), t(hidden[:, sub]),
                t(scales), candidates, loss=loss, n_starts=self.n_starts,
                max_iter=self.transform_max_iter, n_refine=family.n_refine_probes,
                n_jobs=self.n_jobs, states=states)
            thetas.append(theta.astype(np.float64))
            if scores:
                train = (t(probes[tr]), t(outputs[:, tr]), t(hidden[:, tr]))
                valid = (t(probes[va]), t(outputs[:, va]), t(hidden[:, va]))
                parts.append(emulation_r2(self.meta_model_, t(theta), train, valid,
                                          loss=loss))
        theta = np.concatenate(thetas)
        if not scores:
            return theta, None
        out_r2, hid_r2, agree = (None if parts[0][i] is None else
                                 np.concatenate([p[i] for p in parts]) for i in range(3))
        return theta, _scores(out_r2, hid_r2, agree)

    def transform(self, X: Models) -> np.ndarray:
        """Embed models with the meta-model frozen (several starts, batched over models).

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to embed: members of the fitted family (or their recordings), with
            the inputs and outputs of the fitted population.

        Returns
        -------
        embeddings : ndarray of shape (n_models, n_components)
            One embedding per model, in the order of ``X``.
        """
        return self._embed(X, scores=False)[0]

    def score(self, X: Models, y: None = None) -> float:
        """Emulation quality of the given models, higher is better.

        The models are embedded with :meth:`transform`; the score is the mean over models
        of ``(output R^2 + hidden R^2) / 2`` on the held-out probes (with
        ``output_loss='kl'``, the output R^2 of the softmax probabilities).

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to embed: members of the fitted family (or their recordings), with
            the inputs and outputs of the fitted population.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        score : float
            The mean emulation R^2, at most 1.
        """
        _, scores = self._embed(X)
        return float(np.mean((scores.output_r2 + scores.hidden_r2) / 2))

    def emulation_report(self, X: Models) -> Bunch:
        """Embed ``X`` and report how well the meta-model emulates each model.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to embed: members of the fitted family (or their recordings), with
            the inputs and outputs of the fitted population.

        Returns
        -------
        report : Bunch
            ``embeddings`` (as :meth:`transform`), ``output_r2`` and ``hidden_r2`` (and
            ``agreement`` for classifiers), one value per model, measured on the
            held-out probes.
        """
        theta, scores = self._embed(X)
        return Bunch(embeddings=theta, **scores)

    def stability(self, X: Models, n_refits: int = 3) -> Bunch:
        """How reproducible the map of ``X`` is: refit with other seeds and compare.

        ``n_refits`` unfitted copies of this estimator (same parameters,
        ``random_state`` 0, 1, ... offset by this estimator's own, so the probe split,
        initialisation and batches differ) are fitted on ``X``; every pair of maps is
        aligned by a similarity transform (orthogonal Procrustes: rotation or reflection,
        uniform scale, shift), and the RMS distance between matching points is divided
        by the mean distance between models (:func:`skdynamo.embedding_disagreement`).
        0 means the refits draw the same map up to rotation and scale; values near 1
        mean the map depends on the seed and should not be read. This estimator is not
        modified.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population (at least 3 models).
        n_refits : int, default=3
            Fits to compare (at least 2).

        Returns
        -------
        result : Bunch
            ``disagreement`` (float), ``embeddings`` (list of the refits'
            ``(n_models, n_components)`` arrays), ``model_disagreement`` (ndarray of
            shape (n_models,): each model's part of the map's disagreement,
            :func:`skdynamo.model_disagreement`; large values mark the points whose
            position is not reproducible), ``behaviour_disagreement`` (the same
            figure for the PCA-reduced :meth:`behaviour` features that
            :class:`DynamoCluster` clusters: whether the refits agree on how the models
            differ, whatever the coordinates), ``pair_disagreement`` (ndarray of shape
            (n_refits, n_refits): the figure for each ordered pair of refits, NaN on the
            diagonal; ``disagreement`` is their mean. Their spread is how uncertain a
            figure from few refits is: on the 27-member benchmark population the ten
            pairs of five refits ranged from 0.10 to 0.25 around a mean of 0.17) and
            ``output_r2`` (list of each refit's mean held-out output R^2).
        """
        n_refits = int(n_refits)
        if n_refits < 2:
            raise ValueError(f"n_refits must be at least 2 to compare refits; got {n_refits}.")
        models = check_models(X)
        if len(models) < 3:
            raise ValueError("stability needs at least 3 models (distances between models "
                             f"set its scale); got {len(models)}.")
        base = self.random_state if isinstance(self.random_state, Integral) else 0
        fits = [clone(self).set_params(random_state=int(base) + i).fit(models)
                for i in range(n_refits)]
        embeddings = [f.embeddings_ for f in fits]
        behaviours = [reduce_behaviour(f.behaviour())[0] for f in fits]
        table = _residual_table(embeddings)  # every pair aligned once
        pairs = _pairs_of(table)
        return Bunch(disagreement=float(np.nanmean(pairs)), embeddings=embeddings,
                     pair_disagreement=pairs, model_disagreement=_models_of(table),
                     behaviour_disagreement=embedding_disagreement(behaviours),
                     output_r2=[float(f.emulation_scores_.output_r2.mean()) for f in fits])

    def behaviour(self, embeddings: np.ndarray | None = None) -> np.ndarray:
        """What the meta-model does at each embedding, as one feature vector per point.

        The meta-model is run at each embedding on (up to) 32 of the held-out probes
        (128 images for CNNs); a point is described by three blocks: its emulated outputs
        (class probabilities for ``output_loss='kl'``), its meta-model states, flattened,
        and the geometry of those states (the centred, unit-norm Gram matrix of the states
        at 128 evenly spaced (probe, step) samples, so that distances in this block are
        linear-CKA distances). The states are in the meta-model's own coordinates, shared
        by all points, so they compare dynamics as well as outputs, whatever each member's
        parameterisation; their geometry compares what they represent, however strongly
        each direction varies. Each block is divided by its spread over the training
        embeddings (root-mean-square distance from their mean), so the three weigh the
        same in Euclidean distances. Where members agree on their outputs up to small
        residuals, the output block alone can split them by those residuals; the two
        blocks of states outweigh it (``benchmarks/bench_fidelity.py``, population
        ``heads``). :class:`DynamoCluster` clusters these features: distances
        between them follow behaviour, where distances on the map itself are only
        locally faithful (the meta-model may change quickly in one region of the map
        and slowly in another).

        Parameters
        ----------
        embeddings : array-like of shape (n_points, n_components), default=None
            Points of the map; ``None`` uses the training embeddings ``embeddings_``.

        Returns
        -------
        features : ndarray of shape (n_points, n_features)
            One row per point: emulated outputs, meta-model states (both flattened),
            then the states' geometry.

        Examples
        --------
        >>> import torch
        >>> from skdynamo import DynamoEmbedder
        >>> from skdynamo.datasets import RecurrentNetwork
        >>> _ = torch.manual_seed(0)
        >>> models = [RecurrentNetwork(3, 3, hidden_size=8) for _ in range(3)]
        >>> emb = DynamoEmbedder(hidden_size=8, max_epochs=2, random_state=0).fit(models)
        >>> emb.behaviour().shape[0], emb.behaviour(emb.embeddings_[:2]).shape[0]
        (3, 2)
        """
        check_is_fitted(self)
        Z = self.embeddings_ if embeddings is None else np.asarray(embeddings, np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_components or not np.all(np.isfinite(Z)):
            raise ValueError(f"embeddings must be a finite array of shape (n_points, "
                             f"n_components={self.n_components}); got shape {Z.shape}.")
        def blocks(y, g):
            return [y, g.reshape(len(g), -1), state_geometry(g)]

        train = blocks(*self._emulate(self.embeddings_))
        here = train if embeddings is None else blocks(*self._emulate(Z))
        # Each block is divided by its spread over the training embeddings (root-mean-
        # square distance from their mean).
        scale = lambda a: max(float(np.sqrt(((a - a.mean(0)) ** 2).sum(1).mean())),  # noqa: E731
                              1e-12)
        return np.hstack([a / scale(t) for a, t in zip(here, train)])

    def _emulate(self, Z, chunk=16):
        """Flattened emulated outputs (as ``loss_`` describes them), ``(n, features)``,
        and meta-model states, ``(n, probes * steps, width)``, at the points ``Z`` on the
        fixed subset of held-out probes."""
        n_sub = self.family_.n_search_probes
        probes = self._torch(self.probe_inputs_[self._valid_idx[:n_sub]])
        theta = self._torch(Z)
        ys, gs = [], []
        with torch.no_grad():
            for start in range(0, len(Z), chunk):
                th = theta[start:start + chunk]
                x = probes[None].expand(len(th), *probes.shape).reshape(-1, *probes.shape[1:])
                y, g = self.meta_model_(x, th.repeat_interleave(len(probes), dim=0))
                y = self.loss_.output.behaviour(y.cpu().numpy().astype(np.float64))
                ys.append(y.reshape(len(th), -1))
                gs.append(g.cpu().numpy().astype(np.float64).reshape(len(th), -1, g.shape[-1]))
        return np.concatenate(ys), np.concatenate(gs)

    def model_at(self, z: np.ndarray | Sequence[float]) -> EmulatedNetwork:
        """The meta-model frozen at embedding ``z``: an operable ``torch.nn.Module``.

        Parameters
        ----------
        z : array-like of shape (n_components,)
            A point of the embedding space (need not be a member's embedding).

        Returns
        -------
        skdynamo.nn.EmulatedNetwork
            Maps inputs (batch, time, n_features) to outputs at every step (for a
            population of sequence classifiers, whose members output their last step
            only, the last step is the emulated output); also exposes ``trajectories``
            and ``recurrent_step`` for dynamics analysis.
        """
        check_is_fitted(self)
        z = np.asarray(z, dtype=np.float32).reshape(-1)
        if z.shape[0] != self.n_components or not np.all(np.isfinite(z)):
            raise ValueError(f"z must be a finite vector of length n_components="
                             f"{self.n_components}; got shape {z.shape}.")
        return EmulatedNetwork(self.meta_model_, z).eval()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of models, not a matrix
        return tags
