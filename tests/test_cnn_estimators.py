"""The estimators on CNN populations: DynamoEmbedder (ConditionedCNN meta-model), transform,
bad input, DynamoAverager, DynamoSemiSupervised, persistence, baking and custom recorders.

Thresholds were measured on the module population below (8 CNNs: digits/parity x depth
2/3 x 2 seeds, width 8, 300 steps; test accuracies 0.77-0.94) with embedders fitted at
random_state 0, 1 and 2 (hidden_size=16, max_epochs=100), then set with a margin:

* variants: KMeans ARI 1.0 and every model's nearest other model of its variant, for all
  three seeds (also at max_epochs=40); variant centroids 1.76-2.01 apart.
* ``model_at(z_n)`` argmax agreement with member ``n`` on the 64 probe images: 0.80-1.00
  (mean ~0.9); chance is ~0.1 for a digits member, ~0.5 for a parity member, and an
  emulation agrees with members of the other variant ~0.1-0.2 of the time.
* ``emulation_scores_.agreement`` (13 held-out probes, noisy): means 0.74-0.88.
* transform of the training members: largest drift 0.02-0.14 of the centroid distance
  (0.40 at max_epochs=40); held-out seeds (seed_offset=100): 4/4 nearest their variant.
* averager of one variant's members: argmax agreement 0.83 (digits) / 0.94 (parity) with
  its members vs 0.11 / 0.15 with the other variant's; the parity average reaches 0.87
  accuracy on the parity labels of the held-out images.
* semi-supervised, 20 parity labels: accuracy 0.86-0.87 on all held-out images (random_state
  0, 1, 2 of the labelled subset); chance 0.5.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from sklearn.cluster import KMeans
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import adjusted_rand_score

from conftest import RecordTrainDtype, assert_state_equal, state_snapshot
from skdynamo import (DynamoAverager, DynamoCluster, DynamoEmbedder, DynamoSemiSupervised,
                      LayerTrajectories, StandaloneCNN, load_weights, record_cnn, save_weights)
from skdynamo.families._convolutional import cnn_layers, record_cnn_population
from skdynamo._standalone import bake
from skdynamo.datasets import RecurrentNetwork, make_random_probes
from skdynamo.datasets._cnn_zoo import ConvNetwork, digits_variant_labels, make_cnn_population
from skdynamo.nn import ConditionedCNN

ZOO_KW = dict(variants=("digits", "parity"), widths=(8,), depths=(2, 3), n_steps=300,
              n_probes=64, min_accuracy=0.6)
EMBEDDER_KW = dict(hidden_size=16, max_epochs=100, random_state=0)

MIN_MODEL_AT_AGREEMENT = 0.6        # measured >= 0.80
MIN_MEAN_MODEL_AT_AGREEMENT = 0.75  # measured ~0.9
MIN_MEAN_HELD_OUT_AGREEMENT = 0.6   # measured 0.74-0.88
MAX_RELATIVE_DRIFT = 0.35           # measured <= 0.14 (0.40 with 40 epochs)
MIN_AVERAGER_AGREEMENT = 0.7        # measured 0.83 / 0.94
MIN_SEMI_SUPERVISED_ACCURACY = 0.75  # measured 0.86-0.87


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cnn_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cnn_estimators_zoo")


@pytest.fixture(scope="module")
def pop(cnn_home):
    """8 CNNs: digits/parity x depth 2/3 x seeds 0, 1 (width 8)."""
    return make_cnn_population(n_seeds=2, data_home=cnn_home, **ZOO_KW)


@pytest.fixture(scope="module")
def held_out(cnn_home):
    """One CNN per (variant, depth) from seeds never seen in training."""
    return make_cnn_population(n_seeds=1, seed_offset=100, data_home=cnn_home, **ZOO_KW)


@pytest.fixture(scope="module")
def emb(pop):
    """A DynamoEmbedder fitted on ``pop`` (do not mutate: deep-copy it first)."""
    return DynamoEmbedder(probe_inputs=pop.probe_inputs, **EMBEDDER_KW).fit(pop.models)


@pytest.fixture(scope="module")
def images(pop):
    """All held-out digits images (the first 64 are the probes)."""
    return pop.test_images


def _snapshot(emb):
    return dict(embeddings=emb.embeddings_.copy(), probes=emb.probe_inputs_.copy(),
                maps=[m.copy() for m in emb.maps_], meta=state_snapshot(emb.meta_model_),
                meta_object=emb.meta_model_, history=len(emb.history_),
                agreement=emb.emulation_scores_.agreement.copy(), n=emb.n_models_)


def _assert_untouched(emb, before):
    np.testing.assert_array_equal(emb.embeddings_, before["embeddings"])
    np.testing.assert_array_equal(emb.probe_inputs_, before["probes"])
    for m, b in zip(emb.maps_, before["maps"]):
        np.testing.assert_array_equal(m, b)
    assert emb.meta_model_ is before["meta_object"]
    assert_state_equal(emb.meta_model_, before["meta"])
    np.testing.assert_array_equal(emb.emulation_scores_.agreement, before["agreement"])
    assert len(emb.history_) == before["history"] and emb.n_models_ == before["n"]


def _seeded(factory, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory().eval()


def _argmax(net, x):
    with torch.no_grad():
        return net(torch.as_tensor(x)).argmax(1).numpy()


# --------------------------------------------------------------------------- 1. auto-selection
def test_image_probes_select_the_cnn_meta_model(emb, pop):
    n = len(pop.models)
    meta = emb.meta_model_
    assert isinstance(meta, ConditionedCNN) and meta.kind == "cnn"
    assert meta.input_shape == (1, 8, 8) and meta.n_outputs == 10 and meta.hidden_size == 16
    # Depth-3 members record 3 blocks + the penultimate features; depth 2 is aligned to it.
    assert meta.n_steps == 4
    assert emb.embeddings_.shape == (n, 2) and np.all(np.isfinite(emb.embeddings_))
    assert emb.n_models_ == n
    weight, bias = emb.maps_
    assert weight.shape == (n, 4, emb.n_pcs, 16) and bias.shape == (n, 4, emb.n_pcs)
    scores = emb.emulation_scores_
    assert set(scores) == {"output_r2", "hidden_r2", "agreement"}
    for v in scores.values():
        assert v.shape == (n,) and np.all(np.isfinite(v))
    assert np.all((scores.agreement >= 0) & (scores.agreement <= 1))
    np.testing.assert_array_equal(emb.probe_inputs_, pop.probe_inputs)
    assert emb.get_params()["meta_model"] == "auto" and emb.output_loss == "auto"
    report = emb.emulation_report(pop.models[:2])
    assert set(report) == {"embeddings", "output_r2", "hidden_r2", "agreement"}
    assert report.agreement.shape == (2,)


def test_meta_model_and_probe_mismatches_are_clear_errors(pop):
    models = pop.models[:2]
    sequences = make_random_probes(12, 10, 3, random_state=0)
    with pytest.raises(ValueError, match=r"rank 3.*meta_model='cnn' or 'auto'"):
        DynamoEmbedder(probe_inputs=pop.probe_inputs, meta_model="rnn", max_epochs=1).fit(models)
    with pytest.raises(ValueError, match=r"must be images of shape \(n_probes, channels, "
                                         r"height, width\).*\(12, 10, 3\)"):
        DynamoEmbedder(probe_inputs=sequences, meta_model="cnn", max_epochs=1).fit(models)
    rnns = [_seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8))]
    with pytest.raises(ValueError, match="images"):
        DynamoEmbedder(probe_inputs=sequences, meta_model="cnn", max_epochs=1).fit(rnns)
    with pytest.raises(ValueError, match=r"model 1 \(RecurrentNetwork\) is recurrent"):
        DynamoEmbedder(probe_inputs=pop.probe_inputs, max_epochs=1).fit(models[:1] + rnns)
    with pytest.raises(ValueError, match=r"probe_inputs=None: convolutional models need probe "
                                         r"images.*\(n_images, channels, height, width\)"):
        DynamoEmbedder(max_epochs=1).fit(models)


# --------------------------------------------------------------------------- 2. fidelity
def test_variants_are_separated(emb, pop):
    Z, variant = emb.embeddings_, pop.variant
    labels = KMeans(2, n_init=10, random_state=0).fit_predict(Z)
    assert adjusted_rand_score(variant, labels) == 1.0, Z
    dist = np.linalg.norm(Z[:, None] - Z[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    np.testing.assert_array_equal(variant[dist.argmin(1)], variant)
    # The same through DynamoCluster with the fitted embedder frozen (embeds by transform).
    cluster = DynamoCluster(FrozenEstimator(emb), n_clusters=2, random_state=0).fit(pop.models)
    assert adjusted_rand_score(variant, cluster.labels_) == 1.0


def test_model_at_agrees_with_its_member(emb, pop):
    x = pop.probe_inputs
    member = np.array([_argmax(m, x) for m in pop.models])                # (N, P)
    emulated = np.array([_argmax(emb.model_at(z), x) for z in emb.embeddings_])
    agree = (emulated[:, None] == member[None]).mean(-1)                  # (emulation, member)
    own = np.diag(agree)
    assert own.min() >= MIN_MODEL_AT_AGREEMENT, own
    assert own.mean() >= MIN_MEAN_MODEL_AT_AGREEMENT, own
    # Well above what it shares with the other variant's members (~0.1-0.2).
    other = pop.variant[:, None] != pop.variant[None]
    cross = np.where(other, agree, -np.inf).max(1)
    assert np.all(own > cross + 0.3), (own, cross)
    assert emb.emulation_scores_.agreement.mean() >= MIN_MEAN_HELD_OUT_AGREEMENT
    # model_at is an operable CNN on images; it has no recurrent update.
    net = emb.model_at(emb.embeddings_[0])
    with torch.no_grad():
        states, logits = net.trajectories(torch.from_numpy(x[:5]))
    assert states.shape == (5, 4, 16) and logits.shape == (5, 10)
    with pytest.raises(TypeError, match="no recurrent update"):
        net.recurrent_step(torch.zeros(1, 1), torch.zeros(1, 16))


# --------------------------------------------------------------------------- 3. transform
def _centroids(Z, variant):
    names = np.unique(variant)
    return names, np.array([Z[variant == v].mean(0) for v in names])


def test_transform_training_members_land_on_their_embeddings(emb, pop):
    Z = emb.embeddings_
    Zt = emb.transform(pop.models)
    assert Zt.shape == Z.shape and Zt.dtype == np.float64
    _, c = _centroids(Z, pop.variant)
    separation = np.linalg.norm(c[0] - c[1])
    drift = np.linalg.norm(Zt - Z, axis=1)
    assert drift.max() < MAX_RELATIVE_DRIFT * separation, (drift, separation)
    nearest = np.linalg.norm(Zt[:, None] - Z[None], axis=-1).argmin(1)
    np.testing.assert_array_equal(pop.variant[nearest], pop.variant)
    np.testing.assert_array_equal(emb.transform(pop.models), Zt)   # deterministic


def test_held_out_seeds_land_nearest_their_variant(emb, pop, held_out):
    Zh = emb.transform(held_out.models)
    assert Zh.shape == (4, 2) and np.all(np.isfinite(Zh))
    nearest = np.linalg.norm(Zh[:, None] - emb.embeddings_[None], axis=-1).argmin(1)
    np.testing.assert_array_equal(pop.variant[nearest], held_out.variant)
    names, c = _centroids(emb.embeddings_, pop.variant)
    closest = names[np.linalg.norm(Zh[:, None] - c[None], axis=-1).argmin(1)]
    np.testing.assert_array_equal(closest, held_out.variant)


def test_transform_accepts_precomputed_layer_trajectories(emb, pop):
    recorded = [record_cnn(m, pop.probe_inputs) for m in pop.models[:3]]
    np.testing.assert_array_equal(emb.transform(recorded), emb.transform(pop.models[:3]))


# --------------------------------------------------------------------------- 4. bad input
def _five_classes():
    return _seeded(lambda: ConvNetwork(8, 2, n_classes=5))


def _rgb():
    return _seeded(lambda: ConvNetwork(8, 2, in_channels=3))


def _nan_in_layer():
    net = _seeded(lambda: ConvNetwork(8, 3))
    with torch.no_grad():
        net.features[1].conv.weight[0, 0, 0, 0] = float("nan")
    return net


def _nan_outputs():
    net = _seeded(lambda: ConvNetwork(8, 2))
    with torch.no_grad():
        net.head.bias[3] = float("nan")
    return net


BAD_MEMBERS = {
    "n_classes": (3, _five_classes,
                  r"Model 3 has outputs of shape \(5,\) per image but model 0 has \(10,\)"),
    "channels": (2, _rgb, r"Model 2 \(ConvNetwork\): its first convolution 'features.0.conv' "
                          r"takes 3 channels, but the probe images have 1"),
    "nan_layer": (5, _nan_in_layer, r"model 5 .*layer 'features.1.act' produced non-finite"),
    "nan_outputs": (6, _nan_outputs, r"model 6 .*outputs are non-finite"),
}


@pytest.mark.parametrize("case", list(BAD_MEMBERS))
def test_bad_member_names_it_and_leaves_fitted_embedder_untouched(case, emb, pop):
    index, make, match = BAD_MEMBERS[case]
    fitted = copy.deepcopy(emb)
    before = _snapshot(fitted)
    models = list(pop.models)
    models.insert(index, make())
    with pytest.raises(ValueError, match=match):
        fitted.fit(models)
    _assert_untouched(fitted, before)
    with pytest.raises(ValueError, match=match):
        fitted.transform(models)
    with pytest.raises(ValueError, match=match):
        fitted.score(models)
    _assert_untouched(fitted, before)


def test_unknown_layer_names_model_and_layer(emb, pop):
    fitted = copy.deepcopy(emb)
    before = _snapshot(fitted)
    fitted.set_params(layers=["does.not.exist"])
    match = r"model 0 \(ConvNetwork\).*'does.not.exist' does not exist"
    with pytest.raises(ValueError, match=match):
        fitted.fit(pop.models)
    _assert_untouched(fitted, before)
    with pytest.raises(ValueError, match=match):
        fitted.transform(pop.models)
    _assert_untouched(fitted, before)


@pytest.mark.parametrize("case", ["channels", "too_small"])
def test_wrong_probe_images_leave_fitted_embedder_untouched(case, emb, pop):
    fitted = copy.deepcopy(emb)
    before = _snapshot(fitted)
    probes = pop.probe_inputs
    if case == "channels":
        fitted.set_params(probe_inputs=np.repeat(probes, 3, axis=1))
        match = r"Model 0 \(ConvNetwork\): its first convolution 'features.0.conv' takes 1"
    else:  # 2x2 images cannot go through the members' two 2x2 max-pools
        fitted.set_params(probe_inputs=probes[:, :, :2, :2])
        match = r"Recording model 0 \(ConvNetwork\) failed"
    with pytest.raises(ValueError, match=match):
        fitted.fit(pop.models)
    _assert_untouched(fitted, before)


def test_images_without_channel_axis_get_an_image_error(pop):
    with pytest.raises(ValueError, match=r"Model 0 \(ConvNetwork\) is convolutional.*"
                                         r"images\[:, None\]"):
        DynamoEmbedder(probe_inputs=pop.probe_inputs[:, 0], max_epochs=1).fit(pop.models)


def test_images_without_channel_axis_with_explicit_cnn_meta_model(pop):
    with pytest.raises(ValueError, match=r"images\[:, None\]"):
        DynamoEmbedder(probe_inputs=pop.probe_inputs[:, 0], meta_model="cnn",
                       max_epochs=1).fit(pop.models)


def test_non_cnn_model_in_transform_is_named(emb):
    rnn = _seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8))
    with pytest.raises(ValueError, match=r"model 0 \(RecurrentNetwork\).*no nn.Conv2d"):
        emb.transform([rnn])


# --------------------------------------------------------------------------- 5. averager
def test_averager_on_cnn_members(emb, pop, images):
    before = state_snapshot(emb.meta_model_)
    avg = DynamoAverager(FrozenEstimator(emb)).fit(pop.models)
    assert_state_equal(emb.meta_model_, before)
    net = avg.averaged_model_
    assert isinstance(net, StandaloneCNN) and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    np.testing.assert_allclose(avg.embedding_, avg.member_embeddings_.mean(0))
    out = avg.predict(images)
    assert out.shape == (len(images), 10) and out.dtype == np.float32
    proba = avg.predict_proba(images)
    assert proba.shape == (len(images), 10) and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    # Baking folds FiLM into the convolutions exactly.
    x = torch.from_numpy(images)
    with torch.no_grad():
        baked = net(x)
        emulated = emb.model_at(avg.embedding_)(x)
        # float32 rounding differs between the two forms: 1e-5, relative for large values.
        np.testing.assert_allclose(baked.numpy(), emulated.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out, baked.numpy(), atol=1e-6)
        states, _ = net.trajectories(x)
        ref_states, _ = emb.model_at(avg.embedding_).trajectories(x)
        np.testing.assert_allclose(states.numpy(), ref_states.numpy(), rtol=1e-5, atol=1e-5)
    score = avg.score(pop.models)
    assert 0.0 <= score <= 1.0


@pytest.mark.parametrize("variant", ["digits", "parity"])
def test_averaging_one_variant_computes_that_variant(variant, emb, pop, images):
    members = [m for m, v in zip(pop.models, pop.variant) if v == variant]
    others = [m for m, v in zip(pop.models, pop.variant) if v != variant]
    avg = DynamoAverager(FrozenEstimator(emb)).fit(members)
    own, cross = avg.score(members), avg.score(others)
    assert own >= MIN_AVERAGER_AGREEMENT and own > cross + 0.4, (own, cross)
    y = digits_variant_labels(pop.test_digits, variant)
    accuracy = np.mean(avg.predict(images).argmax(1) == y)
    assert accuracy >= MIN_AVERAGER_AGREEMENT - 0.05, accuracy   # measured 0.79 / 0.87


def test_averager_rejects_wrong_images(emb, pop, images):
    avg = DynamoAverager(FrozenEstimator(emb)).fit(pop.models[:2])
    with pytest.raises(ValueError, match=r"shape \(n_samples, 1, 8, 8\).*X\[:, None\]"):
        avg.predict(images[:, 0])
    with pytest.raises(ValueError, match=r"images of shape \(3, 8, 8\).*built on \(1, 8, 8\)"):
        avg.predict(np.repeat(images, 3, axis=1))
    with pytest.raises(ValueError, match=r"images of shape \(1, 4, 4\)"):
        avg.predict_proba(images[:, :, :4, :4])
    with pytest.raises(TypeError, match="not a list of models"):
        avg.predict(pop.models)
    with pytest.raises(ValueError, match=r"X\[0\] produces outputs of shape \(64, 5\)"):
        avg.score([_five_classes()])


# --------------------------------------------------------------------------- 6. semi-supervised
def test_semi_supervised_parity_from_20_labels(emb, pop, images):
    parity = digits_variant_labels(pop.test_digits, "parity")
    rng = np.random.RandomState(0)
    y = np.full(len(images), -1)
    labelled = rng.choice(len(images), 20, replace=False)
    y[labelled] = parity[labelled]
    est = DynamoSemiSupervised(FrozenEstimator(emb), random_state=0).fit(images, y)
    assert isinstance(est.model_, StandaloneCNN) and est.n_labeled_ == 20
    pred = est.predict(images)
    assert pred.shape == (len(images),) and set(np.unique(pred)) <= set(range(10))
    proba = est.predict_proba(images)
    assert proba.shape == (len(images), 10)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    accuracy = est.score(images, parity)
    assert accuracy >= MIN_SEMI_SUPERVISED_ACCURACY, accuracy
    # The embedding found lies on the parity side of the map.
    names, c = _centroids(emb.embeddings_, pop.variant)
    assert names[np.linalg.norm(c - est.embedding_, axis=1).argmin()] == "parity"


def test_semi_supervised_bad_targets_for_cnn(emb, images):
    frozen = FrozenEstimator(emb)
    with pytest.raises(ValueError, match=r"convolutional network must have shape \(n_samples, "
                                         r"n_outputs=10\); got \(719, 3\)"):
        DynamoSemiSupervised(frozen, max_iter=1).fit(images, np.zeros((len(images), 3)))
    with pytest.raises(ValueError, match=r"convolutional network .*got \(719, 4, 10\)"):
        DynamoSemiSupervised(frozen, max_iter=1).fit(images, np.zeros((len(images), 4, 10)))
    with pytest.raises(ValueError, match=r"Labels \[12\] are outside"):
        DynamoSemiSupervised(frozen, max_iter=1).fit(images, np.full(len(images), 12))
    with pytest.raises(ValueError, match=r"X\[:, None\]"):
        DynamoSemiSupervised(frozen, max_iter=1).fit(images[:, 0], np.zeros(len(images), int))


# --------------------------------------------------------------------------- 7. persistence
def test_cnn_embedder_weights_round_trip(emb, pop, tmp_path):
    path = tmp_path / "cnn_embedder.pt"
    save_weights(emb, path)
    loaded = load_weights(path)
    assert isinstance(loaded.meta_model_, ConditionedCNN)
    assert loaded.meta_model_.input_shape == emb.meta_model_.input_shape
    assert_state_equal(loaded.meta_model_, state_snapshot(emb.meta_model_))
    np.testing.assert_array_equal(loaded.embeddings_, emb.embeddings_)
    for a, b in zip(loaded.maps_, emb.maps_):
        np.testing.assert_array_equal(a, b)
    models = pop.models[::3]
    np.testing.assert_array_equal(loaded.transform(models), emb.transform(models))
    np.testing.assert_array_equal(loaded.emulation_report(models).agreement,
                                  emb.emulation_report(models).agreement)


def test_averaged_and_semi_supervised_cnn_round_trip(emb, pop, images, tmp_path):
    x = torch.from_numpy(images)
    avg = DynamoAverager(FrozenEstimator(emb)).fit(pop.models)
    y = np.full(len(images), -1)
    y[:10] = pop.test_digits[:10]
    semi = DynamoSemiSupervised(FrozenEstimator(emb), max_iter=3, random_state=0).fit(images, y)
    for est, net in [(avg, avg.averaged_model_), (semi, semi.model_)]:
        path = tmp_path / f"{type(est).__name__}.pt"
        save_weights(est, path)
        loaded = load_weights(path)
        assert type(loaded) is StandaloneCNN and loaded.config == net.config
        with torch.no_grad():
            np.testing.assert_array_equal(loaded(x).numpy(), net(x).numpy())
        # The config alone rebuilds the module.
        rebuilt = StandaloneCNN(**loaded.config)
        rebuilt.load_state_dict(loaded.state_dict())
        with torch.no_grad():
            np.testing.assert_array_equal(rebuilt(x).numpy(), net(x).numpy())


# --------------------------------------------------------------------------- 8. baking
@pytest.mark.parametrize("grid", [None, (2, 2)])
@pytest.mark.parametrize("shape,n_steps", [((1, 8, 8), 3), ((3, 12, 10), 4)])
def test_bake_is_exact_for_a_random_conditioned_cnn(grid, shape, n_steps):
    meta = _seeded(lambda: ConditionedCNN(shape[0], 10, 3, n_steps, shape[1:], hidden_size=8,
                                          grid=grid), seed=3)
    with torch.no_grad():   # large FiLM weights: some scales are negative
        for film in meta.films:
            film.linear.weight.mul_(3.0)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, generator=gen)
    x = torch.rand(7, *shape, generator=gen)
    net = bake(meta, theta.numpy())
    assert isinstance(net, StandaloneCNN) and not net.training
    assert net.pools == meta.pools and net.input_shape == shape
    with torch.no_grad():
        logits, states = meta(x, theta[None].expand(7, -1))
        baked_states, baked_logits = net.trajectories(x)
        np.testing.assert_allclose(baked_logits.numpy(), logits.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(baked_states.numpy(), states.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(net(x).numpy(), baked_logits.numpy())
    cells = 1 if grid is None else grid[0] * grid[1]
    assert baked_states.shape == (7, n_steps, 8 * cells)
    rebuilt = StandaloneCNN(**net.config)
    rebuilt.load_state_dict(net.state_dict())
    with torch.no_grad():
        np.testing.assert_array_equal(rebuilt(x).numpy(), baked_logits.numpy())


def test_grid_embedder_bakes_exactly(pop, images):
    fitted = DynamoEmbedder(probe_inputs=pop.probe_inputs, hidden_size=8, spatial=2,
                            max_epochs=3, random_state=0).fit(pop.models)
    assert fitted.meta_model_.grid == (2, 2)
    assert fitted.maps_[0].shape == (8, 4, fitted.n_pcs, 8 * 4)
    avg = DynamoAverager(FrozenEstimator(fitted)).fit(pop.models)
    x = torch.from_numpy(images[:100])
    with torch.no_grad():
        s, y = avg.averaged_model_.trajectories(x)
        s_ref, y_ref = fitted.model_at(avg.embedding_).trajectories(x)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.numpy(), s_ref.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- 9. recorder
def _block_recorder(model, images):
    """Each conv block's pooled activation (no penultimate step) and the logits."""
    x = torch.as_tensor(images)
    layers = []
    with torch.no_grad():
        for block in model.features:
            x = block.act(block.conv(x))
            layers.append(x.mean(dim=(2, 3)).numpy())
            if hasattr(block, "pool"):
                x = block.pool(x)
        logits = model.head(x.mean(dim=(2, 3)))
    return layers, logits.numpy()


def _record_cnn_recorder(model, images):
    t = record_cnn(model, images)
    return list(t.layers), t.outputs


def test_callable_recorder_in_record_cnn_population(pop):
    recs = record_cnn_population(pop.models, pop.probe_inputs, recorder=_block_recorder)
    assert all(isinstance(r, LayerTrajectories) for r in recs)
    assert [r.hidden.shape for r in recs] == [(64, 3, 8)] * 8   # depth 2 aligned to 3
    with torch.no_grad():
        logits = pop.models[0](torch.from_numpy(pop.probe_inputs)).numpy()
    np.testing.assert_allclose(recs[0].outputs, logits, atol=1e-5)
    with pytest.raises(ValueError, match=r"Recording model 0 .*must return a "
                                         r"LayerTrajectories or a pair"):
        record_cnn_population(pop.models[:2], pop.probe_inputs, recorder=lambda m, x: 3)


def test_callable_recorder_through_the_embedder(pop, tmp_path):
    kw = dict(probe_inputs=pop.probe_inputs, hidden_size=16, max_epochs=5, random_state=0)
    custom = DynamoEmbedder(recorder=_block_recorder, **kw).fit(pop.models)
    assert isinstance(custom.meta_model_, ConditionedCNN) and custom.meta_model_.n_steps == 3
    assert custom.maps_[0].shape == (8, 3, custom.n_pcs, 16)
    assert custom.transform(pop.models[:2]).shape == (2, 2)
    # A recorder returning exactly what record_cnn records gives the default fit.
    same = DynamoEmbedder(recorder=_record_cnn_recorder, **kw).fit(pop.models)
    auto = DynamoEmbedder(**kw).fit(pop.models)
    np.testing.assert_allclose(same.embeddings_, auto.embeddings_, atol=1e-6)
    # The recorder is code: not stored, asked back on load.
    path = tmp_path / "custom.pt"
    save_weights(custom, path)
    with pytest.raises(ValueError, match="recorder"):
        load_weights(path)
    loaded = load_weights(path, recorder=_block_recorder)
    np.testing.assert_array_equal(loaded.transform(pop.models[:2]),
                                  custom.transform(pop.models[:2]))
    with pytest.raises(ValueError, match=r"Model 0 has 5 recorded images; expected 64"):
        DynamoEmbedder(recorder=lambda m, x: ([np.ones((5, 4))], np.ones((5, 10))),
                       **kw).fit(pop.models[:2])


def test_layer_as_time_module_hooks_removed(emb, pop):
    """Recording through the embedder leaves the members' modules as they were."""
    model = pop.models[2]
    before = state_snapshot(model)
    emb.transform([model])
    assert_state_equal(model, before)
    assert not model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --- user-written CNNs ---------------------------------------------------------------------

class _LeNet(nn.Module):
    """Flatten head with a hidden fully connected layer, optional BatchNorm, 3 channels."""

    def __init__(self, width=6, batch_norm=False):
        super().__init__()
        norm = [nn.BatchNorm2d(width)] if batch_norm else []
        self.body = nn.Sequential(nn.Conv2d(3, width, 5, padding=2), *norm, nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 5), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.fc1 = nn.Linear(2 * width * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(self.body(x), 1))))


class _Residual(nn.Module):
    """Functional activations and a skip connection; global-average-pool head."""

    def __init__(self, width=8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.b1 = nn.Conv2d(width, width, 3, padding=1)
        self.b2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = h + torch.relu(self.b2(torch.relu(self.b1(h))))
        return self.head(h.mean((2, 3)))


def test_user_written_cnns_of_mixed_designs():
    """LeNet-style (flatten head, BatchNorm) and residual CNNs of different widths and
    depths in one population: recorded, aligned, embedded, averaged and re-embedded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        models = [_LeNet(6), _LeNet(8, batch_norm=True), _Residual(8), _Residual(12)]
        X = torch.randn(48, 3, 16, 16).numpy()
    assert [n for n, _, _ in cnn_layers(models[1])] == ["body.2", "body.5", "fc2:input"]
    assert [n for n, _, _ in cnn_layers(models[2])] == ["stem", "b1", "b2", "head:input"]
    emb = DynamoEmbedder(probe_inputs=X, hidden_size=16, max_epochs=5, random_state=0)
    Z = emb.fit_transform(models)
    assert Z.shape == (4, 2) and np.all(np.isfinite(Z))
    assert emb.family_.n_steps == 4                       # LeNets (3 layers) aligned to 4 steps
    assert emb.maps_[0].shape == (4, 4, 10, 16)
    avg = DynamoAverager(FrozenEstimator(emb)).fit(models[:2])
    assert avg.predict(X[:5]).shape == (5, 4)
    assert isinstance(avg.averaged_model_, StandaloneCNN)
    assert np.all(np.isfinite(emb.transform(models[2:])))


def test_single_logit_cnns_are_emulated_on_their_logit():
    """A softmax over one output is constant, so 'auto' falls back to MSE for binary
    (single-logit) classifiers, and an explicit 'kl' is refused before anything is set."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        models = [nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
                  for _ in range(3)]
        X = torch.randn(40, 3, 8, 8).numpy()
    emb = DynamoEmbedder(probe_inputs=X, hidden_size=8, max_epochs=3, random_state=0)
    emb.fit(models)
    assert emb.loss_.output.name == "mse"
    assert emb.emulation_scores_.output_r2.shape == (3,)
    assert np.all(emb.emulation_scores_.output_r2 < 1.0)   # not the constant-softmax 1.0
    bad = DynamoEmbedder(probe_inputs=X, output_loss="kl", max_epochs=3)
    with pytest.raises(ValueError, match="output_loss='kl'.*1 output"):
        bad.fit(models)
    assert not hasattr(bad, "embedding_")


def test_precision_auto_keeps_cnn_fits_in_float32(pop, monkeypatch):
    # bfloat16 was no faster for CNN meta-models (benchmarks/bench_precision.py).
    from skdynamo import _guards
    monkeypatch.setattr(_guards, "native_bfloat16", lambda device: True)
    fit = lambda **kw: DynamoEmbedder(probe_inputs=pop.probe_inputs, max_epochs=1,  # noqa: E731
                                      callbacks=[RecordTrainDtype()], **kw).fit(pop.models)
    assert fit().history_[-1, "train_dtype"] == "None"
    assert fit(precision="bfloat16").history_[-1, "train_dtype"] == "torch.bfloat16"
