"""Tests for DynamoCluster, DynamoAverager, DynamoSemiSupervised, the baselines and the
task families. Tiny untrained populations: these check the API, not the science (the
benchmark, benchmarks/bench_applications.py, measures that)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as ec

from skdynamo import (DynamoAverager, DynamoCluster, DynamoEmbedder, DynamoSemiSupervised,
                      StandaloneRNN)
from skdynamo._standalone import bake
from skdynamo.baselines import OutputSpaceEmbedding, WeightSpaceEmbedding, average_weights
from skdynamo.datasets import (RecurrentNetwork, make_classifier_population,
                               make_family_population, make_leaky_integration,
                               make_sequence_classification, permute_hidden_units)

torch.set_num_threads(1)

EMB_KW = dict(n_components=2, hidden_size=8, max_epochs=3, batch_size=64,
              transform_max_iter=3, n_starts=1, random_state=0)


def _state(models):
    return [({k: v.clone() for k, v in m.state_dict().items()}, m.training) for m in models]


def _same_state(models, before):
    return all(m.training == tr and all(torch.equal(v, s[k]) for k, v in m.state_dict().items())
               for m, (s, tr) in zip(models, before))


@pytest.fixture(scope="session")
def probes():
    return make_leaky_integration(24, 10, random_state=0)[0]


@pytest.fixture(scope="session")
def models():
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(0)
        return [RecurrentNetwork(3, 3, hidden_size=6, cell=c).eval()
                for c in ("rnn", "gru", "lstm", "gru", "rnn", "lstm")]


@pytest.fixture(scope="session")
def embedder(models, probes):
    """A fitted embedder, shared read-only (wrap it in FrozenEstimator)."""
    return DynamoEmbedder(probe_inputs=probes, **EMB_KW).fit(models)


def _emb(probes):
    return DynamoEmbedder(probe_inputs=probes, **EMB_KW)


# ---------------------------------------------------------------- API checks
API_CHECKS = [ec.check_estimator_cloneable, ec.check_estimator_tags_renamed,
              ec.check_valid_tag_types, ec.check_estimator_repr,
              ec.check_no_attributes_set_in_init,
              ec.check_do_not_raise_errors_in_init_or_set_params,
              ec.check_mixin_order, ec.check_parameters_default_constructible,
              ec.check_get_params_invariance, ec.check_set_params]


@pytest.mark.parametrize("est", [DynamoCluster(), DynamoAverager(), DynamoSemiSupervised(),
                                 WeightSpaceEmbedding(), OutputSpaceEmbedding()],
                         ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(est, check):
    check(type(est).__name__, est)


@pytest.mark.parametrize("est", [DynamoCluster(), DynamoAverager(), DynamoSemiSupervised()],
                         ids=lambda e: type(e).__name__)
def test_not_fitted(est, models, probes):
    with pytest.raises(NotFittedError):
        if isinstance(est, DynamoSemiSupervised):
            est.predict(probes)
        elif isinstance(est, DynamoAverager):
            est.score(models)
        else:
            est.predict(models)


# ---------------------------------------------------------------- DynamoCluster
def test_cluster_fit_predict(models, probes):
    before = _state(models)
    c = DynamoCluster(_emb(probes), n_clusters=2, random_state=0)
    labels = c.fit_predict(models)
    assert labels.shape == (6,) and set(labels) <= {0, 1}
    assert c.embeddings_.shape == (6, 2)
    assert isinstance(c.clusterer_, KMeans) and c.clusterer_.n_clusters == 2
    assert c.n_clusters_ == 2 and c.cluster_centers_.shape == (2, 2)
    assert c.embedder_ is not c.get_params()["embedder"]  # cloned
    assert c.predict(models[:2]).shape == (2,)
    assert _same_state(models, before)


def test_cluster_auto_and_reproducible(models, embedder):
    a = DynamoCluster(FrozenEstimator(embedder), random_state=0).fit(models)
    b = DynamoCluster(FrozenEstimator(embedder), random_state=0).fit(models)
    assert set(a.silhouette_scores_) == set(range(2, 6))
    top = max(a.silhouette_scores_.values())
    assert a.n_clusters_ == min(k for k, s in a.silhouette_scores_.items()
                                if s >= top - 0.01 * abs(top))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.embeddings_, b.embeddings_)
    assert a.embedder_.estimator is embedder  # frozen: reused, not refitted


def test_state_geometry_is_a_linear_cka_distance():
    """Half the squared distance between two points' geometry features is 1 - linear CKA
    of their states; a rotated and rescaled copy of the states has the same features."""
    from skdynamo._embedder import state_geometry
    from skdynamo.baselines import linear_cka
    rng = np.random.default_rng(0)
    a = rng.normal(size=(90, 6))
    b = a @ rng.normal(size=(6, 6)) + 0.5 * rng.normal(size=(90, 6))
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    fa, fb, fq = state_geometry(np.stack([a, b, 3.0 * a @ q + 1.0]), n_points=90)
    np.testing.assert_allclose(fa, fq, atol=1e-12)
    # Features hold the upper triangle: off-diagonal entries count twice in the norm.
    m = 90
    ka, kb = _fill(fa, m), _fill(fb, m)
    np.testing.assert_allclose(1 - 0.5 * ((ka - kb) ** 2).sum(), linear_cka(a, b), rtol=1e-10)
    assert fa.shape == (m * (m + 1) // 2,)


def _fill(f, m):
    k = np.zeros((m, m))
    k[np.triu_indices(m)] = f
    return k + k.T - np.diag(np.diag(k))


def test_behaviour_features_of_the_map(models, embedder):
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v)
              for k, v in vars(embedder).items()}
    F = embedder.behaviour()
    assert F.ndim == 2 and F.shape[0] == 6 and np.all(np.isfinite(F))
    np.testing.assert_array_equal(F, embedder.behaviour(embedder.embeddings_))
    # the same point twice: the same features; a far point: different ones
    Z = np.vstack([embedder.embeddings_[:1]] * 2 + [embedder.embeddings_[:1] + 5.0])
    G = embedder.behaviour(Z)
    np.testing.assert_array_equal(G[0], G[1])
    assert np.abs(G[2] - G[0]).max() > 0
    np.testing.assert_allclose(G[0], F[0], rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="embeddings must be"):
        embedder.behaviour(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="embeddings must be"):
        embedder.behaviour(np.full((2, 2), np.nan))
    with pytest.raises(NotFittedError):
        DynamoEmbedder().behaviour()
    after = vars(embedder)
    assert set(after) == set(before)
    assert all(np.array_equal(after[k], v) if isinstance(v, np.ndarray) else True
               for k, v in before.items())


def test_cluster_space(models, embedder, probes):
    frozen = FrozenEstimator(embedder)
    beh = DynamoCluster(frozen, n_clusters=2, random_state=0).fit(models)
    assert beh.features_.shape[0] == 6 and beh.features_.shape[1] <= 5
    emb = DynamoCluster(frozen, n_clusters=2, space="embedding", random_state=0).fit(models)
    np.testing.assert_array_equal(emb.features_, emb.embeddings_)
    for c in (beh, emb):
        assert c.predict(models).shape == (6,)
        np.testing.assert_array_equal(c.predict(models), c.clusterer_.predict(
            c.features_ if c is emb else c._pca.transform(embedder.behaviour(
                embedder.transform(models)))))
    out = OutputSpaceEmbedding(probes, n_components=2, random_state=0)
    with pytest.raises(TypeError, match="space='behaviour'"):
        DynamoCluster(out, n_clusters=2).fit(models)
    # refused before the (expensive) embedder fit: a fresh DynamoEmbedder would train
    with pytest.raises(TypeError, match="space='behaviour'"):
        DynamoCluster(FrozenEstimator(out.fit(models)), n_clusters=2).fit(models)
    labels = DynamoCluster(out, n_clusters=2, space="embedding").fit_predict(models)
    assert labels.shape == (6,)
    with pytest.raises(ValueError, match="space"):
        DynamoCluster(frozen, space="map").fit(models)


def test_cluster_auto_prefers_fewer_clusters_that_score_as_well():
    # three tight groups, one of them made of two sub-groups slightly apart
    rng = np.random.RandomState(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [1.6, 10]])
    Z = np.vstack([c + 0.05 * rng.randn(6, 2) for c in centres])
    c = DynamoCluster(n_clusters="auto", space="embedding", random_state=0)
    est, labels, scores = c._fit_clusterer(Z, 0)
    assert max(scores, key=scores.get) == 4 and scores[3] >= 0.99 * scores[4]
    assert len(set(labels)) == 3


def test_cluster_fit_reproducible_with_embedder(models, probes):
    a = DynamoCluster(_emb(probes), n_clusters=2, random_state=0).fit(models)
    b = clone(a).fit(models)
    np.testing.assert_allclose(a.embeddings_, b.embeddings_)
    np.testing.assert_array_equal(a.labels_, b.labels_)


@pytest.mark.parametrize("clusterer", [AgglomerativeClustering(), DBSCAN(eps=10.0, min_samples=1)])
def test_cluster_without_predict_uses_nearest_centre(models, embedder, clusterer):
    n = "auto" if isinstance(clusterer, DBSCAN) else 3
    c = DynamoCluster(FrozenEstimator(embedder), clusterer, n_clusters=n).fit(models)
    pred = c.predict(models)
    assert pred.shape == (6,) and set(pred) <= set(c.labels_)


def test_cluster_pipeline_and_grid_search(models, embedder):
    pipe = Pipeline([("identity", FunctionTransformer()),
                     ("cluster", DynamoCluster(FrozenEstimator(embedder), random_state=0))])
    assert pipe.fit_predict(models).shape == (6,)
    y = np.array([0, 1, 2, 1, 0, 2])
    gs = GridSearchCV(DynamoCluster(FrozenEstimator(embedder), random_state=0),
                      {"n_clusters": [2, 3]}, scoring="adjusted_rand_score", cv=2,
                      error_score="raise").fit(models, y)
    assert gs.best_params_["n_clusters"] in (2, 3)


def test_cluster_bad_input(models, embedder):
    frozen = FrozenEstimator(embedder)
    with pytest.raises(TypeError, match="single RecurrentNetwork"):
        DynamoCluster(frozen).fit(models[0])
    with pytest.raises(ValueError, match="exceeds the number of models"):
        DynamoCluster(frozen, n_clusters=7).fit(models)
    with pytest.raises(ValueError, match="at least 3 models"):
        DynamoCluster(frozen).fit(models[:2])
    with pytest.raises(ValueError, match="no n_clusters"):
        DynamoCluster(frozen, DBSCAN(), n_clusters=2).fit(models)
    with pytest.raises(ValueError, match="n_clusters"):
        DynamoCluster(frozen, n_clusters=0).fit(models)
    with pytest.raises(NotFittedError, match="unfitted"):
        DynamoCluster(FrozenEstimator(DynamoEmbedder())).fit(models)


# ---------------------------------------------------------------- DynamoAverager
def test_averager_mean_weights_medoid(models, embedder, probes):
    frozen = FrozenEstimator(embedder)
    avg = DynamoAverager(frozen).fit(models)
    np.testing.assert_allclose(avg.embedding_, avg.member_embeddings_.mean(0))
    w = np.array([1, 0, 0, 0, 0, 3.0])
    wavg = DynamoAverager(frozen, weights=w).fit(models)
    np.testing.assert_allclose(wavg.embedding_, (w / 4) @ wavg.member_embeddings_)
    med = DynamoAverager(frozen, center="medoid").fit(models)
    np.testing.assert_allclose(med.embedding_, med.member_embeddings_[med.medoid_index_])
    out = avg.predict(probes)
    assert out.shape == (24, 10, 3) and out.dtype == np.float32
    ref = embedder.model_at(avg.embedding_)(torch.as_tensor(probes)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    proba = avg.predict_proba(probes)
    assert proba.shape == (24, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    s = avg.score(models)
    assert isinstance(s, float) and np.isfinite(s)


def test_averager_fits_its_own_embedder_and_leaves_models(models, probes):
    before = _state(models)
    a = DynamoAverager(_emb(probes)).fit(models)
    b = clone(a).fit(models)
    np.testing.assert_allclose(a.embedding_, b.embedding_)
    assert _same_state(models, before)


def test_averaged_model_is_standalone(models, embedder, probes, tmp_path):
    avg = DynamoAverager(FrozenEstimator(embedder)).fit(models)
    net = avg.averaged_model_
    assert type(net) is StandaloneRNN
    path = tmp_path / "avg.pt"
    torch.save(net.state_dict(), path)
    fresh = StandaloneRNN(**net.config)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = torch.as_tensor(probes)
    with torch.no_grad():
        np.testing.assert_allclose(fresh(x).numpy(), avg.predict(probes), atol=1e-6)
    again = pickle.loads(pickle.dumps(avg))
    np.testing.assert_allclose(again.predict(probes), avg.predict(probes))


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_bake_matches_meta_model(cell):
    from skdynamo.nn import ConditionedRNN, EmulatedNetwork
    torch.manual_seed(0)
    meta = ConditionedRNN(3, 2, 4, 8, cell)
    theta = torch.randn(4)
    x = torch.randn(5, 7, 3)
    with torch.no_grad():
        np.testing.assert_allclose(bake(meta, theta)(x).numpy(),
                                   EmulatedNetwork(meta, theta)(x).numpy(), atol=1e-5)


def test_averager_grid_search(models, embedder):
    gs = GridSearchCV(DynamoAverager(FrozenEstimator(embedder)),
                      {"center": ["mean", "medoid"]}, cv=2, error_score="raise").fit(models)
    assert gs.best_params_["center"] in ("mean", "medoid")


def test_averager_bad_input(models, embedder, probes):
    frozen = FrozenEstimator(embedder)
    with pytest.raises(ValueError, match="one entry per model"):
        DynamoAverager(frozen, weights=[1, 2]).fit(models)
    with pytest.raises(ValueError, match="non-negative"):
        DynamoAverager(frozen, weights=[1, -1, 1, 1, 1, 1]).fit(models)
    with pytest.raises(ValueError, match="sum to zero"):
        DynamoAverager(frozen, weights=np.zeros(6)).fit(models)
    wide = models[:2] + [RecurrentNetwork(3, 2, hidden_size=6)]
    with pytest.raises(ValueError, match="outputs of shape"):
        DynamoAverager(_emb(probes)).fit(wide)
    with pytest.raises(ValueError, match="outputs of shape"):
        DynamoAverager(frozen).fit(wide)
    avg = DynamoAverager(frozen).fit(models)
    with pytest.raises(ValueError, match="4 features per step"):
        avg.predict(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="shape"):
        avg.predict(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="not a list of models"):
        avg.predict(models)


# ---------------------------------------------------------------- DynamoSemiSupervised
@pytest.fixture(scope="session")
def leaky_data():
    X, Y = make_leaky_integration(24, 10, random_state=1)
    Ys = Y.copy()
    Ys[5:] = np.nan
    return X, Y, Ys


def test_semi_supervised_regression(embedder, leaky_data):
    X, Y, Ys = leaky_data
    meta_before = {k: v.clone() for k, v in embedder.meta_model_.state_dict().items()}
    est = DynamoSemiSupervised(embedder, max_iter=10, random_state=0).fit(X, Ys)
    assert est._task == "regression" and est.n_labeled_ == 5
    assert est.embedding_.shape == (2,) and type(est.model_) is StandaloneRNN
    assert est.predict(X).shape == Y.shape
    assert np.isfinite(est.score(X, Y))
    assert est.start_losses_.shape == (5,)
    assert not hasattr(est, "predict_proba")
    assert all(torch.equal(v, meta_before[k])
               for k, v in embedder.meta_model_.state_dict().items())
    again = DynamoSemiSupervised(embedder, max_iter=10, random_state=0).fit(X, Ys)
    np.testing.assert_allclose(again.embedding_, est.embedding_)
    last = DynamoSemiSupervised(embedder, max_iter=5).fit(X, Ys[:, -1])
    assert last.predict(X).shape == (24, 3)


def test_semi_supervised_uses_labels(embedder, leaky_data):
    """More optimisation can only lower the objective from the same start."""
    X, _, Ys = leaky_data
    a = DynamoSemiSupervised(embedder, n_starts=1, max_iter=0, random_state=0).fit(X, Ys)
    b = DynamoSemiSupervised(embedder, n_starts=1, max_iter=30, random_state=0).fit(X, Ys)
    assert b.start_losses_[0] <= a.start_losses_[0] + 1e-6


def test_semi_supervised_classification(embedder):
    X, y = make_sequence_classification(24, 10, random_state=0)
    ys = y.copy()
    ys[6:] = -1
    est = DynamoSemiSupervised(FrozenEstimator(embedder), max_iter=5, random_state=0).fit(X, ys)
    assert est._task == "classification"
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    pred = est.predict(X)
    assert pred.shape == (24,) and set(pred) <= {0, 1, 2}
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(proba.argmax(1), pred)
    assert 0.0 <= est.score(X, y) <= 1.0


def test_semi_supervised_population_and_pipeline(models, probes, leaky_data):
    X, Y, Ys = leaky_data
    est = DynamoSemiSupervised(_emb(probes), population=models, max_iter=3, random_state=0)
    pipe = Pipeline([("identity", FunctionTransformer()), ("ss", est)]).fit(X, Ys)
    assert pipe.predict(X).shape == Y.shape
    assert pipe[-1].embedder_ is not est.embedder


def test_semi_supervised_grid_search(embedder, leaky_data):
    X, Y, _ = leaky_data
    gs = GridSearchCV(DynamoSemiSupervised(FrozenEstimator(embedder), task="regression",
                                           max_iter=3, n_starts=1),
                      {"prior_weight": [0.1, 1.0]}, cv=2, error_score="raise").fit(X[:12], Y[:12])
    assert gs.best_params_["prior_weight"] in (0.1, 1.0)


def test_semi_supervised_bad_input(embedder, models, leaky_data):
    X, Y, Ys = leaky_data
    est = DynamoSemiSupervised(embedder, max_iter=1)
    with pytest.raises(ValueError, match="no labelled sample"):
        est.fit(X, np.full_like(Y, np.nan))
    with pytest.raises(ValueError, match="no labelled sample"):
        est.fit(X, np.full(24, -1))
    with pytest.raises(ValueError, match=r"outside the meta-model's output range"):
        est.fit(X, np.r_[3, np.full(23, -1)])
    with pytest.raises(ValueError, match="2 features per step"):
        est.fit(X[:, :, :2], Ys)
    with pytest.raises(ValueError, match="shape"):
        est.fit(X[:, 0], Ys)
    with pytest.raises(ValueError, match="some but not all"):
        bad = Ys.copy()
        bad[0, 0, 0] = np.nan
        est.fit(X, bad)
    with pytest.raises(ValueError, match="n_outputs=3"):
        est.fit(X, Ys[:, :, :2])
    with pytest.raises(ValueError, match="X has 24 samples but y has 5"):
        est.fit(X, Ys[:5])
    with pytest.raises(NotFittedError, match="not fitted and no population"):
        DynamoSemiSupervised(DynamoEmbedder()).fit(X, Ys)
    with pytest.raises(NotFittedError, match="not fitted and no population"):
        clone(DynamoSemiSupervised(embedder)).fit(X, Ys)  # clone unfits a plain embedder
    with pytest.raises(ValueError, match="fitted embedder"):
        DynamoSemiSupervised().fit(X, Ys)
    with pytest.raises(ValueError, match="FrozenEstimator"):
        DynamoSemiSupervised(FrozenEstimator(embedder), population=models).fit(X, Ys)
    with pytest.raises(TypeError, match="not a list of models"):
        DynamoSemiSupervised(embedder, max_iter=1).fit(X, Ys).predict(models)


# ---------------------------------------------------------------- baselines
def test_weight_space_baseline():
    torch.manual_seed(0)
    ms = [RecurrentNetwork(3, 3, hidden_size=5, cell="gru") for _ in range(4)]
    twin = permute_hidden_units(ms[0], random_state=0)
    emb = WeightSpaceEmbedding(n_components=2).fit(ms)
    assert emb.embeddings_.shape == (4, 2)
    z = emb.transform([ms[0], twin])
    assert np.linalg.norm(z[0] - z[1]) > 1e-3  # not invariant to permutations
    mixed = ms + [RecurrentNetwork(3, 3, hidden_size=6, cell="gru")]
    with pytest.raises(ValueError, match="one architecture"):
        WeightSpaceEmbedding().fit(mixed)
    with pytest.raises(ValueError, match="one architecture"):
        emb.transform([RecurrentNetwork(3, 3, hidden_size=5, cell="lstm")])


def test_output_space_baseline(probes):
    torch.manual_seed(0)
    ms = [RecurrentNetwork(3, 3, hidden_size=5, cell=c) for c in ("gru", "rnn", "lstm")]
    twin = permute_hidden_units(ms[1], random_state=0)
    emb = OutputSpaceEmbedding(probes, n_components=2).fit(ms)
    z = emb.transform([ms[1], twin])
    np.testing.assert_allclose(z[0], z[1], atol=1e-4)
    with pytest.raises(ValueError, match="probe_inputs="):
        OutputSpaceEmbedding().fit(ms)


def test_average_weights():
    torch.manual_seed(0)
    ms = [RecurrentNetwork(3, 3, hidden_size=5) for _ in range(3)]
    avg = average_weights(ms, weights=[1, 1, 2])
    expected = (ms[0].readout.bias + ms[1].readout.bias + 2 * ms[2].readout.bias) / 4
    torch.testing.assert_close(avg.readout.bias, expected)
    with pytest.raises(ValueError, match="one architecture"):
        average_weights(ms + [RecurrentNetwork(3, 3, hidden_size=5, cell="lstm")])
    with pytest.raises(ValueError, match="non-negative"):
        average_weights(ms, weights=[1, -1, 1])


# ---------------------------------------------------------------- datasets
def test_sequence_classification_task():
    X, y = make_sequence_classification(50, 20, leak=0.2, random_state=0)
    assert X.shape == (50, 20, 3) and y.shape == (50,) and y.dtype == np.int64
    assert set(y) <= {0, 1, 2}
    with pytest.raises(ValueError, match="leak"):
        make_sequence_classification(leak=2.0)


def test_family_and_classifier_populations(tmp_path):
    pop = make_family_population((0.1, 0.3), n_seeds=1, n_steps=3, n_timesteps=8, n_probes=10,
                                 min_score=-np.inf, max_retries=0, data_home=tmp_path)
    assert len(pop.models) == 2 and pop.value.tolist() == [0.1, 0.3]
    assert pop.probe_inputs.shape == (10, 8, 3)
    cls = make_classifier_population((0.0, 0.2), n_seeds=1, n_steps=3, n_timesteps=8,
                                     n_probes=10, data_home=tmp_path)
    assert len(cls.models) == 2 and np.all((cls.score >= 0) & (cls.score <= 1))
    again = make_classifier_population((0.0, 0.2), n_seeds=1, n_steps=3, n_timesteps=8,
                                       n_probes=10, data_home=tmp_path, download_if_missing=False)
    torch.testing.assert_close(again.models[0].state_dict(), cls.models[0].state_dict())
    with pytest.raises(OSError, match="not cached"):
        make_classifier_population((0.5,), n_seeds=1, n_steps=3, data_home=tmp_path,
                                   download_if_missing=False)
    with pytest.raises(ValueError, match="Unknown task"):
        make_family_population(task="nope")


# ---------------------------------------------------------------- science (slow)
@pytest.mark.slow
def test_averaging_beats_weight_averaging_slow(data_home):
    """Trained flip-flop GRUs: the centroid stays near the members, weight averaging does not."""
    from skdynamo.datasets import make_flipflop, make_rnn_population
    pop = make_rnn_population(("flipflop",), ("gru",), (16,), n_seeds=4, n_steps=600,
                              n_probes=128, min_score=0.0, max_retries=0, data_home=data_home)
    X, Y = make_flipflop(256, 50, random_state=1)

    def mse(m):
        with torch.no_grad():
            return float(((m(torch.as_tensor(X)).numpy() - Y) ** 2).mean())

    # 4 models x 128 probes: a small batch gives the meta-model enough gradient steps.
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, hidden_size=64, max_epochs=150,
                         batch_size=64, random_state=0)
    avg = DynamoAverager(emb).fit(pop.models)
    median = np.median([mse(m) for m in pop.models])
    assert mse(avg.averaged_model_) < 1.5 * median, (mse(avg.averaged_model_), median)
    assert mse(average_weights(pop.models)) > mse(avg.averaged_model_)


# ---------------------------------------------------------------- data-dependent contract
def test_fit_keeps_params_and_pickles(models, embedder, leaky_data):
    import joblib
    X, _, Ys = leaky_data
    frozen = FrozenEstimator(embedder)
    cases = [(DynamoCluster(frozen, n_clusters=2, random_state=0), (models,),
              lambda e: e.predict(models)),
             (DynamoAverager(frozen, weights=np.ones(6)), (models,), lambda e: e.predict(X)),
             (DynamoSemiSupervised(frozen, max_iter=2, random_state=0), (X, Ys),
              lambda e: e.predict(X))]
    for est, args, out in cases:
        before = joblib.hash(est.get_params())
        assert est.fit(*args) is est
        assert joblib.hash(est.get_params()) == before
        again = pickle.loads(pickle.dumps(est))
        np.testing.assert_allclose(out(again), out(est))
        with pytest.raises(NotFittedError):
            out(clone(est))
