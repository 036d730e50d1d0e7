"""DynamoEmbedder: fidelity, reproducibility, transform/score/model_at and bad input."""

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback
from torch import nn

from conftest import RecordTrainDtype, assert_state_equal, r2, state_snapshot, tiny_embedder
from skdynamo import DivergenceError, DynamoEmbedder, Trajectories
from skdynamo._net import bare_module
from skdynamo.families._recurrent import record
from skdynamo.datasets import RecurrentNetwork

# Thresholds measured on the session population (random_state 0, 1, 2 gave mean output R²
# 0.88-0.89, mean hidden R² 0.87-0.89, worst model 0.80, transform drift <= 0.31 with the
# task centroids 2.1-2.2 apart), then set with a margin.
MIN_MEAN_OUTPUT_R2 = 0.8
MIN_MEAN_HIDDEN_R2 = 0.8
MIN_MODEL_R2 = 0.7


# --------------------------------------------------------------------------- fidelity
def test_fit_transform_shape_and_attributes(fitted_embedder, population):
    emb = fitted_embedder
    n = len(population.models)
    assert emb.embeddings_.shape == (n, 2) and emb.n_models_ == n
    assert np.all(np.isfinite(emb.embeddings_))
    assert emb.emulation_scores_.output_r2.shape == (n,)
    assert emb.emulation_scores_.hidden_r2.shape == (n,)
    assert len(emb.history_) >= 1 and "valid_loss" in emb.history_[-1]
    np.testing.assert_array_equal(emb.probe_inputs_, population.probe_inputs)
    assert list(emb.get_feature_names_out()) == ["dynamoembedder0", "dynamoembedder1"]


def test_fit_transform_returns_embeddings(tiny_models, tiny_probes):
    emb = tiny_embedder(tiny_probes)
    Z = emb.fit_transform(tiny_models)
    assert Z.shape == (3, 2) and Z.dtype == np.float64
    np.testing.assert_array_equal(Z, emb.embeddings_)
    Z[0] = 99.0                                   # a copy: the fitted state is not aliased
    assert not np.any(emb.embeddings_ == 99.0)


def test_emulation_fidelity(fitted_embedder):
    scores = fitted_embedder.emulation_scores_
    assert scores.output_r2.mean() >= MIN_MEAN_OUTPUT_R2, scores
    assert scores.hidden_r2.mean() >= MIN_MEAN_HIDDEN_R2, scores
    assert scores.output_r2.min() >= MIN_MODEL_R2, scores
    assert scores.hidden_r2.min() >= MIN_MODEL_R2, scores


def test_tasks_are_separated(fitted_embedder, population):
    Z = fitted_embedder.embeddings_
    labels = KMeans(2, n_init=10, random_state=0).fit_predict(Z)
    for task in np.unique(population.task):
        assert len(set(labels[population.task == task])) == 1
    assert len(set(labels)) == 2


def test_transform_training_models_lands_on_their_embeddings(fitted_embedder, population):
    Z = fitted_embedder.embeddings_
    Zt = fitted_embedder.transform(population.models)
    assert Zt.shape == Z.shape
    tasks = population.task
    centroids = np.array([Z[tasks == t].mean(0) for t in np.unique(tasks)])
    separation = np.linalg.norm(centroids[0] - centroids[1])
    drift = np.linalg.norm(Zt - Z, axis=1)
    assert drift.max() < 0.25 * separation, (drift, separation)
    nearest = np.linalg.norm(Zt[:, None] - Z[None], axis=-1).argmin(1)
    np.testing.assert_array_equal(tasks[nearest], tasks)


def test_held_out_models_land_in_their_task_cluster(fitted_embedder, population,
                                                    held_out_population):
    km = KMeans(2, n_init=10, random_state=0).fit(fitted_embedder.embeddings_)
    cluster_task = {}
    for c in range(2):
        members, counts = np.unique(population.task[km.labels_ == c], return_counts=True)
        cluster_task[c] = members[counts.argmax()]
    assert set(cluster_task.values()) == set(population.task)
    Zh = fitted_embedder.transform(held_out_population.models)
    assert Zh.shape == (len(held_out_population.models), 2)
    predicted = np.array([cluster_task[c] for c in km.predict(Zh)])
    np.testing.assert_array_equal(predicted, held_out_population.task)


def test_transform_puts_exact_twins_on_their_originals_point(fitted_embedder, population):
    from skdynamo.datasets import permute_hidden_units
    originals = population.models[:4]
    twins = [permute_hidden_units(m, random_state=i) for i, m in enumerate(originals)]
    Z = fitted_embedder.transform(list(originals) + twins)
    spread = np.linalg.norm(fitted_embedder.embeddings_.std(0))
    np.testing.assert_allclose(Z[4:], Z[:4], atol=1e-4 * spread)


def test_transform_chunks_run_through_joblib_with_the_same_result(fitted_embedder,
                                                                 population):
    from joblib import parallel_config
    emb = copy.deepcopy(fitted_embedder)
    models = list(population.models)
    alone = emb.transform(models)
    with parallel_config(backend="threading"):
        threads = emb.set_params(n_jobs=2).transform(models)
    np.testing.assert_allclose(threads, alone, atol=1e-6)
    # no refinement: each model gets the best candidate, one of the training embeddings
    kept = emb.set_params(transform_max_iter=0).transform(models)
    assert all(np.any(np.all(np.isclose(z, emb.embeddings_), axis=1)) for z in kept)


def test_transform_runs_blas_at_one_thread_and_restores_it(fitted_embedder, population,
                                                         monkeypatch):
    # OpenBLAS's threads beside torch's pool made transform 2x slower on 2 cores: the
    # PCA targets (ModelFamily.record_targets) run numpy/scipy at one BLAS thread, and
    # the caller's setting comes back.
    from threadpoolctl import threadpool_info, threadpool_limits
    from skdynamo.families import RecurrentFamily

    seen, combine = [], RecurrentFamily.combine_targets

    def spy(self, *args, **kwargs):
        seen.append({i["internal_api"]: i["num_threads"] for i in threadpool_info()
                     if i["user_api"] == "blas"})
        return combine(self, *args, **kwargs)

    monkeypatch.setattr(RecurrentFamily, "combine_targets", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        fitted_embedder.transform(population.models[:3])
        after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert seen and all(set(s.values()) <= {1} for s in seen)
    assert after == before


def test_fit_records_targets_at_one_blas_thread(tiny_models, tiny_probes, monkeypatch):
    # The recording's PCA targets run in numpy: at one BLAS thread, as in transform.
    from threadpoolctl import threadpool_info, threadpool_limits
    from skdynamo.families import RecurrentFamily

    seen, combine = [], RecurrentFamily.combine_targets

    def spy(self, *args, **kwargs):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return combine(self, *args, **kwargs)

    monkeypatch.setattr(RecurrentFamily, "combine_targets", spy)
    with warnings.catch_warnings(), threadpool_limits(limits=2, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        tiny_embedder(tiny_probes, max_epochs=1).fit(tiny_models)
    assert seen and all(s <= {1} for s in seen)


def test_score_prefers_the_population_to_random_networks(fitted_embedder, population,
                                                         random_networks):
    trained = fitted_embedder.score(population.models[::2])
    untrained = fitted_embedder.score(random_networks[:2])
    assert isinstance(trained, float) and isinstance(untrained, float)
    assert trained >= 0.75
    assert trained > untrained + 0.2


def test_model_at_emulates_the_model(fitted_embedder, population):
    x = torch.from_numpy(population.probe_inputs)
    for i in (0, len(population.models) - 1):     # one model of each task
        net = fitted_embedder.model_at(fitted_embedder.embeddings_[i])
        assert isinstance(net, nn.Module) and not net.training
        with torch.no_grad():
            y_hat = net(x)
            y = population.models[i](x)
        assert y_hat.shape == y.shape
        assert r2(y_hat.numpy(), y.numpy()) >= 0.75
    # The emulated network owns its weights: editing it leaves the embedder alone.
    before = state_snapshot(fitted_embedder.meta_model_)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert_state_equal(fitted_embedder.meta_model_, before)


@pytest.mark.parametrize("z", [np.zeros(3), np.array([0.0, np.nan]), np.array([np.inf, 0])])
def test_model_at_rejects_bad_embeddings(tiny_fitted, z):
    with pytest.raises(ValueError, match="n_components"):
        tiny_fitted.model_at(z)


# --------------------------------------------------------------------- reproducibility
def test_same_random_state_same_embeddings(tiny_models, tiny_probes, _tiny_fitted):
    again = tiny_embedder(tiny_probes, random_state=0).fit(tiny_models)
    np.testing.assert_array_equal(again.embeddings_, _tiny_fitted.embeddings_)
    other = tiny_embedder(tiny_probes, random_state=1).fit(tiny_models)
    assert not np.allclose(other.embeddings_, _tiny_fitted.embeddings_)


def test_global_rngs_untouched(tiny_models, tiny_probes, _tiny_fitted):
    np_saved = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        np.random.seed(123)
        torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
        emb = tiny_embedder(tiny_probes, random_state=0).fit(tiny_models)
        emb.transform(tiny_models[:1])
        emb.model_at(emb.embeddings_[0])
        tiny_embedder(None, random_state=0, max_epochs=1).fit(tiny_models)  # random probes
        torch_after = torch.random.get_rng_state()
        after = np.random.get_state()
        np.random.set_state(np_saved)
    assert torch.equal(torch_after, torch_state)
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


def test_trajectories_as_samples_match_modules(tiny_models, tiny_probes, _tiny_fitted):
    trajectories = [record(m, tiny_probes) for m in tiny_models]
    emb = tiny_embedder(tiny_probes).fit(trajectories)
    # Recordings cannot be run on augmented probes ('auto' adds none for them): they
    # match the modules fitted without augmentation.
    modules = tiny_embedder(tiny_probes, probe_augmentation=0).fit(tiny_models)
    np.testing.assert_allclose(emb.embeddings_, modules.embeddings_, atol=1e-6)
    # Mixed populations work too, and transform accepts Trajectories.
    mixed = [tiny_models[0], trajectories[1], tiny_models[2]]
    np.testing.assert_allclose(_tiny_fitted.transform(mixed),
                               _tiny_fitted.transform(trajectories), atol=1e-6)


def test_callable_recorder(tiny_models, tiny_probes):
    calls = []

    def recorder(model, x):
        calls.append(type(model).__name__)
        h, _ = model.rnn(x)
        return h[..., :4], model(x)

    emb = tiny_embedder(tiny_probes, recorder=recorder).fit(tiny_models)
    assert calls == ["RecurrentNetwork"] * 3
    assert emb.embeddings_.shape == (3, 2)


def test_last_step_outputs(tiny_probes):
    rng = np.random.RandomState(0)
    trajs = [Trajectories(rng.randn(12, 10, 5), rng.randn(12, 3)) for _ in range(3)]
    emb = tiny_embedder(tiny_probes).fit(trajs)
    assert emb.embeddings_.shape == (3, 2)
    assert np.all(np.isfinite(emb.emulation_scores_.output_r2))


def test_random_probes_when_probe_inputs_is_none(tiny_models):
    emb = tiny_embedder(None, max_epochs=1).fit(tiny_models)
    assert emb.probe_inputs is None                # the parameter is left as given
    assert emb.probe_inputs_.shape == (256, 50, 3)
    assert np.all(np.isfinite(emb.probe_inputs_)) and emb.probe_inputs_.std() > 0.1
    assert np.all(np.isfinite(emb.embeddings_))


def test_probe_inputs_none_needs_modules(tiny_models, tiny_probes):
    trajs = [record(m, tiny_probes) for m in tiny_models]
    with pytest.raises(ValueError, match="probe_inputs"):
        DynamoEmbedder(max_epochs=1).fit(trajs)


# --------------------------------------------------------------------------- bad input
class Raising(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x):
        raise RuntimeError("the model broke")


def _nan_model():
    model = RecurrentNetwork(3, 3, hidden_size=8, cell="gru")
    with torch.no_grad():
        model.readout.bias[1] = float("nan")
    return model


def _traj(hidden_fill=None, output_fill=None, n_probes=12, steps=10, n_out=3):
    rng = np.random.RandomState(0)
    hidden, outputs = rng.randn(n_probes, steps, 5), rng.randn(n_probes, steps, n_out)
    if hidden_fill is not None:
        hidden[3, 4, 2] = hidden_fill
    if output_fill is not None:
        outputs[5, 1, 0] = output_fill
    return Trajectories(hidden, outputs)


BAD_INPUTS = {
    "empty": (lambda m: [], {}, ValueError, "empty"),
    "empty_tuple": (lambda m: (), {}, ValueError, "empty"),
    "not_a_model": (lambda m: [m[0], "model", m[2]], {}, TypeError, r"X\[1\] is a str"),
    "none_element": (lambda m: [m[0], m[1], None], {}, TypeError, r"X\[2\] is a NoneType"),
    "numeric_array": (lambda m: np.zeros((3, 4)), {}, TypeError, "numeric array"),
    "lone_sequential": (lambda m: nn.Sequential(m[0], m[1]), {}, TypeError, "single Sequential"),
    "lone_module": (lambda m: m[0], {}, TypeError, "single RecurrentNetwork"),
    "lone_trajectories": (lambda m: _traj(), {}, TypeError, "single Trajectories"),
    "output_width": (lambda m: [m[0], RecurrentNetwork(3, 2, hidden_size=8), m[2]], {},
                     ValueError, "Model 1 has outputs of shape"),
    "output_width_traj": (lambda m: [m[0], m[1], _traj(n_out=4)], {}, ValueError,
                          "Model 2 has outputs of shape"),
    "probe_rank": (lambda m: m, {"probe_inputs": np.zeros((12, 3), np.float32)}, ValueError,
                   "rank 3"),
    "probe_rank_4": (lambda m: m, {"probe_inputs": np.zeros((12, 10, 3, 1))}, ValueError,
                     "rank 3"),
    "probe_features": (lambda m: m, {"probe_inputs": np.zeros((12, 10, 4))}, ValueError,
                       r"Model 0 .*width 3.*4 features"),
    "probe_nan": (lambda m: m, {"probe_inputs": np.full((12, 10, 3), np.nan)}, ValueError,
                  "NaN"),
    "traj_probe_count": (lambda m: [m[0], _traj(n_probes=7)], {}, ValueError,
                         "Model 1 is a Trajectories recorded on 7"),
    "traj_time_steps": (lambda m: [m[0], _traj(steps=6)], {}, ValueError,
                        "Model 1: hidden states have 6 time steps"),
    "raises": (lambda m: [m[0], m[1], Raising()], {}, ValueError,
               r"Recording model 2 \(Raising\).*the model broke"),
    "nan_hidden": (lambda m: [m[0], _traj(hidden_fill=np.nan)], {}, ValueError,
                   r"Model 1 produced non-finite .*hidden"),
    "inf_hidden": (lambda m: [_traj(hidden_fill=np.inf), m[1]], {}, ValueError,
                   r"Model 0 produced non-finite .*hidden"),
    "inf_outputs": (lambda m: [m[0], _traj(output_fill=-np.inf)], {}, ValueError,
                    r"Model 1 produced non-finite .*outputs"),
    "nan_module": (lambda m: [m[0], m[1], _nan_model()], {}, ValueError,
                   r"Model 2 produced non-finite .*outputs"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_leaves_fitted_estimator_untouched(case, tiny_fitted, tiny_models):
    make_X, params, error, match = BAD_INPUTS[case]
    emb = tiny_fitted
    before = dict(embeddings=emb.embeddings_.copy(), probes=emb.probe_inputs_.copy(),
                  meta=state_snapshot(emb.meta_model_), history=len(emb.history_),
                  scores=emb.emulation_scores_.output_r2.copy(), n=emb.n_models_)
    meta_object = emb.meta_model_
    emb.set_params(**params)
    with pytest.raises(error, match=match):
        emb.fit(make_X(tiny_models))
    np.testing.assert_array_equal(emb.embeddings_, before["embeddings"])
    np.testing.assert_array_equal(emb.probe_inputs_, before["probes"])
    np.testing.assert_array_equal(emb.emulation_scores_.output_r2, before["scores"])
    assert emb.meta_model_ is meta_object
    assert_state_equal(emb.meta_model_, before["meta"])
    assert len(emb.history_) == before["history"] and emb.n_models_ == before["n"]


@pytest.mark.parametrize("case", ["not_a_model", "output_width", "raises", "nan_module",
                                  "inf_outputs", "traj_probe_count"])
def test_bad_input_to_transform(case, tiny_fitted, tiny_models):
    make_X, _, error, match = BAD_INPUTS[case]
    before = tiny_fitted.embeddings_.copy()
    with pytest.raises(error, match=match):
        tiny_fitted.transform(make_X(tiny_models))
    with pytest.raises(error, match=match):
        tiny_fitted.score(make_X(tiny_models))
    np.testing.assert_array_equal(tiny_fitted.embeddings_, before)


def test_transform_rejects_another_output_space(tiny_fitted):
    with pytest.raises(ValueError, match="fitted on outputs of shape"):
        tiny_fitted.transform([RecurrentNetwork(3, 2, hidden_size=8)])


def test_many_models_are_embedded_block_by_block_as_one_by_one(tiny_fitted, tiny_models):
    # 70 recordings (more than one block of 64): the blocks change nothing
    recorded = tiny_fitted.record(tiny_models)
    rng = np.random.RandomState(0)
    many = [Trajectories(r.hidden * rng.uniform(0.5, 2.0), r.outputs)
            for r in recorded for _ in range(24)][:70]
    whole = tiny_fitted.emulation_report(many)
    head, tail = tiny_fitted.emulation_report(many[:64]), tiny_fitted.emulation_report(many[64:])
    assert whole.embeddings.shape == (70, 2) and whole.output_r2.shape == (70,)
    np.testing.assert_allclose(whole.embeddings, np.vstack([head.embeddings, tail.embeddings]),
                               atol=1e-6)
    np.testing.assert_allclose(whole.output_r2, np.concatenate([head.output_r2,
                                                                tail.output_r2]), atol=1e-6)
    np.testing.assert_array_equal(tiny_fitted.transform(many), whole.embeddings)


def test_unfitted_transform_raises(tiny_models):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        DynamoEmbedder().transform(tiny_models)


class Counting(nn.Module):
    calls = 0

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x):
        type(self).calls += 1
        return self.rnn(x)[0]


@pytest.mark.parametrize("params", [dict(n_components=0), dict(n_components=1.5),
                                    dict(cell="transformer"), dict(lr=0.0), dict(max_epochs=0),
                                    dict(validation_fraction=1.0), dict(recorder="hooks"),
                                    dict(precision="float16")])
def test_invalid_params_raise_before_any_work(params, tiny_probes):
    Counting.calls = 0
    emb = tiny_embedder(tiny_probes, **params)
    with pytest.raises(InvalidParameterError, match=next(iter(params))):
        emb.fit([Counting(), Counting()])
    assert Counting.calls == 0                     # nothing was recorded or trained
    assert not hasattr(emb, "embeddings_")


# -------------------------------------------------------------------------- divergence
class CorruptWeights(Callback):
    """Writes NaN into the meta-model's readout after ``after_batches`` batches."""

    def __init__(self, after_batches=1):
        self.after_batches = after_batches

    def initialize(self):
        self.seen_ = 0
        return self

    def on_batch_begin(self, net, **kwargs):
        self.seen_ += 1
        if self.seen_ > self.after_batches:
            with torch.no_grad():
                net.module_.meta.readout.weight.fill_(float("nan"))


@pytest.mark.parametrize("params", [dict(lr=1e6), dict(callbacks=[CorruptWeights()])],
                         ids=["huge_lr", "nan_weights"])
def test_divergence_raises_without_nan_embeddings(params, tiny_models, tiny_probes):
    emb = tiny_embedder(tiny_probes, max_epochs=5, **params)
    with pytest.raises(DivergenceError, match="diverged"):
        emb.fit(tiny_models)
    assert not hasattr(emb, "embeddings_") and not hasattr(emb, "meta_model_")
    for cb in params.get("callbacks", []):
        assert not hasattr(cb, "seen_")            # user callbacks are cloned, not used


def test_divergence_leaves_fitted_estimator_untouched(tiny_fitted, tiny_models):
    before = tiny_fitted.embeddings_.copy()
    meta = state_snapshot(tiny_fitted.meta_model_)
    tiny_fitted.set_params(callbacks=[("corrupt", CorruptWeights(after_batches=0))])
    with pytest.raises(DivergenceError):
        tiny_fitted.fit(tiny_models)
    np.testing.assert_array_equal(tiny_fitted.embeddings_, before)
    assert np.all(np.isfinite(tiny_fitted.embeddings_))
    assert_state_equal(tiny_fitted.meta_model_, meta)


def test_identical_models_share_an_embedding(tiny_models, tiny_probes):
    twin = tiny_models[1]
    emb = tiny_embedder(tiny_probes, n_jobs=2).fit([tiny_models[0], twin, tiny_models[2], twin])
    np.testing.assert_allclose(emb.embeddings_[3], emb.embeddings_[1], atol=1e-6)
    assert np.linalg.norm(emb.embeddings_[1] - emb.embeddings_[0]) > 1e-3


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_cell_loop_lands_on_its_layer_twin(cell, tiny_models, tiny_probes):
    # A hand-written loop around nn.RNNCell/GRUCell/LSTMCell with a member's weights is
    # recorded by recorder='auto' and lands where that member does, with default probes
    # (input width read off the cell) as with given ones.
    from conftest import CellLoop

    member = tiny_models[["rnn", "gru", "lstm"].index(cell)]
    models = list(tiny_models) + [CellLoop(member, cell).eval()]
    i = ["rnn", "gru", "lstm"].index(cell)
    for probes in (tiny_probes, None):
        emb = tiny_embedder(probes).fit(models)
        Z = emb.embeddings_
        spread = np.linalg.norm(Z[:3, None] - Z[None, :3], axis=-1).max()
        assert np.linalg.norm(Z[3] - Z[i]) < 1e-3 * spread


class _LastStep(torch.nn.Module):
    """A sequence classifier: outputs (batch, n_outputs) at the last step only."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, -1]


def test_sequence_classifiers_fit_transform_and_compose(tiny_models):
    # Members whose outputs are their last step only: transform's batched candidate
    # scores compare the emulation's last step too (they once broadcast over probes).
    from sklearn.frozen import FrozenEstimator
    from skdynamo import DynamoAverager, DynamoCluster

    from skdynamo.datasets import make_random_probes

    models = [_LastStep(m) for m in tiny_models] + [_LastStep(tiny_models[1])]
    emb = tiny_embedder(make_random_probes(16, 7, 3, random_state=0)).fit(models)
    assert emb.loss_.last_only
    Z = emb.transform(models)
    assert Z.shape == (4, 2) and np.all(np.isfinite(Z))
    np.testing.assert_allclose(Z[3], Z[1], atol=1e-6)     # the copy lands with its original
    assert np.isfinite(emb.score(models))
    labels = DynamoCluster(FrozenEstimator(emb), n_clusters=2).fit_predict(models)
    assert labels.shape == (4,)
    assert np.isfinite(DynamoAverager(FrozenEstimator(emb)).fit(models[:2]).score(models[2:]))


def test_grid_search_uses_score(tiny_models, tiny_probes):
    from sklearn.model_selection import GridSearchCV
    models = list(tiny_models) + [tiny_models[1]]
    search = GridSearchCV(tiny_embedder(tiny_probes), {"n_components": [1, 2]}, cv=2)
    search.fit(models)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    assert search.best_estimator_.embeddings_.shape == (4, search.best_params_["n_components"])


def test_verbose_shows_progress(tiny_models, tiny_probes, capsys):
    tiny_embedder(tiny_probes, verbose=1).fit(tiny_models)
    assert "Fitting DYNAMO" in capsys.readouterr().err
    tiny_embedder(tiny_probes, verbose=0).fit(tiny_models)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_fit_that_converges_stops_early_and_returns(tiny_models, tiny_probes):
    # Early stopping ends skorch's loop with an internal interrupt: it must not reach the
    # caller as a KeyboardInterrupt, and the fit must say it converged.
    emb = tiny_embedder(tiny_probes, max_epochs=200, patience=2, tol=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        emb.fit(tiny_models)
    assert emb.converged_ and emb.n_iter_ == len(emb.history_) < emb.max_epochs


def test_fit_at_the_epoch_cap_warns(tiny_models, tiny_probes):
    emb = tiny_embedder(tiny_probes, max_epochs=2, patience=10)
    with pytest.warns(ConvergenceWarning, match="max_epochs=2") as caught:
        emb.fit(tiny_models)
    assert not emb.converged_ and emb.n_iter_ == 2
    # The warning says how close the emulation got, as emulation_scores_ does.
    median = np.median(emb.emulation_scores_.output_r2)
    assert f"held-out output R^2 median {median:.4f}" in str(caught[0].message)


def _scripted_stop(losses, reduce_at=(), patience=3, floor=0.0):
    """Run :class:`Converged` over a scripted held-out loss (1 % tolerance, ``floor``
    absolute); the rate is halved by hand after the epochs in ``reduce_at``, as the
    plateau scheduler would."""
    from types import SimpleNamespace
    from skorch.history import History
    from skdynamo._net import Converged, _Stop
    module = nn.Linear(1, 1)
    net = SimpleNamespace(history=History(), module_=module,
                          optimizer_=torch.optim.SGD(module.parameters(), lr=1.0))
    cb = Converged(monitor="valid_loss", patience=patience, threshold=0.01, floor=floor)
    cb.on_train_begin(net)
    for epoch, loss in enumerate(losses, 1):
        net.history.new_epoch()
        net.history.record("epoch", epoch)
        net.history.record("valid_loss", loss)
        if epoch in reduce_at:
            net.optimizer_.param_groups[0]["lr"] *= 0.5
        try:
            cb.on_epoch_end(net)
        except _Stop:
            return epoch, cb
    return None, cb


def test_convergence_needs_a_rate_reduction_that_did_not_help():
    # Two epochs of progress, then a slow stretch: 0.1 % an epoch, below the 1 % tol.
    slow = [1.0, 0.5] + [0.5 * 0.999 ** k for k in range(1, 20)]
    # No reduction in the window (epochs 3-5): the rule halves the rate instead of
    # stopping, and stops at the end of the next window, which trained at that rate.
    stop, cb = _scripted_stop(slow, patience=3)
    assert (stop, cb.n_annealed_, cb.converged_) == (8, 1, True)
    assert cb.rates_[-1] == 0.5
    # The plateau scheduler reduced the rate inside the window: stop at its end.
    for reduce_at in (3, 4):
        stop, cb = _scripted_stop(slow, reduce_at=(reduce_at,), patience=3)
        assert (stop, cb.n_annealed_, cb.converged_) == (5, 0, True)
    # A reduction decided at the window's last epoch has not been trained at yet.
    stop, cb = _scripted_stop(slow, reduce_at=(5,), patience=3)
    assert (stop, cb.n_annealed_) == (8, 1) and cb.rates_[-1] == 0.25
    # The lowest held-out loss is the one restored, improvements below tol included.
    assert cb.best_epoch_ == 8 and cb.lowest_ == slow[7]
    # A loss that keeps improving by more than the tolerance never stops.
    stop, cb = _scripted_stop([0.9 ** k for k in range(30)], patience=3)
    assert stop is None and not cb.converged_ and cb.n_annealed_ == 0


def test_convergence_floor_ends_fits_already_close():
    # 10 % an epoch is far above the 1 % tolerance, but at a loss of 1e-4 the falls soon
    # add up to less than an absolute floor of 1e-5 over a window: the fit converges
    # (after annealing once), where the relative tolerance alone never stops it.
    tiny = [1e-4 * 0.9 ** k for k in range(30)]
    stop, cb = _scripted_stop(tiny, patience=3, floor=1e-5)
    assert cb.converged_ and stop == 19 and cb.n_annealed_ == 1
    # Without the floor the same losses never stop; nor with it, at a loss where 10 %
    # exceeds the floor.
    assert _scripted_stop(tiny, patience=3)[0] is None
    assert _scripted_stop([0.9 ** k for k in range(30)], patience=3, floor=1e-5)[0] is None
    # The floor applies in the direction the score improves.
    from skdynamo._net import Converged
    up = Converged(monitor="valid_acc", lower_is_better=False, threshold=1e-2, floor=0.05)
    assert up._calc_new_threshold(0.5) == pytest.approx(0.55)
    down = Converged(monitor="valid_loss", threshold=1e-2, floor=0.05)
    assert down._calc_new_threshold(0.5) == pytest.approx(0.45)
    # The defaults use the floor.
    from skdynamo._embedder import _MIN_IMPROVEMENT
    cbs = dict(DynamoEmbedder()._callbacks(10))
    assert cbs["early_stopping"].floor == _MIN_IMPROVEMENT > 0


def test_warmup_ramps_the_learning_rate(tiny_models, tiny_probes):
    seen = []

    class Record(Callback):
        def on_batch_end(self, net, training=False, **kwargs):
            if training:
                seen.append(net.optimizer_.param_groups[0]["lr"])

    tiny_embedder(tiny_probes, max_epochs=2, lr=1e-2, callbacks=[Record()]).fit(tiny_models)
    assert seen[0] < seen[-1] <= 1e-2 and np.all(np.diff(seen) >= 0)


def test_stability_refits_and_leaves_the_estimator_alone(tiny_models, tiny_probes):
    emb = tiny_embedder(tiny_probes, max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = emb.stability(tiny_models, n_refits=2)
        again = emb.stability(tiny_models, n_refits=2)
    assert not hasattr(emb, "embeddings_")
    assert len(res.embeddings) == 2 and res.embeddings[0].shape == (3, 2)
    assert not np.allclose(res.embeddings[0], res.embeddings[1])  # other seeds
    assert np.isfinite(res.disagreement) and res.disagreement > 0
    assert res.disagreement == again.disagreement  # seeded: reproducible
    assert res.model_disagreement.shape == (3,) and np.all(res.model_disagreement >= 0)
    pairs = res.pair_disagreement
    assert pairs.shape == (2, 2) and np.isnan(np.diag(pairs)).all()
    assert np.nanmean(pairs) == pytest.approx(res.disagreement)
    assert np.sqrt(np.mean(res.model_disagreement ** 2)) >= res.disagreement - 1e-12
    assert np.isfinite(res.behaviour_disagreement) and res.behaviour_disagreement >= 0
    assert res.behaviour_disagreement == again.behaviour_disagreement


@pytest.mark.parametrize("n_refits, n_models, match", [(1, 3, "n_refits"), (2, 2, "3 models")])
def test_stability_rejects_too_few(n_refits, n_models, match, tiny_models, tiny_probes):
    with pytest.raises(ValueError, match=match):
        tiny_embedder(tiny_probes).stability(tiny_models[:n_models], n_refits=n_refits)


# -------------------------------------------------------------------------- precision
class RecordRNNDtype(Callback):
    """Records, per batch, the dtype of the meta-model's recurrent layer's outputs in the
    training steps and in the held-out pass."""

    def on_train_begin(self, net, **kwargs):
        self.seen = {}
        rnn = bare_module(net).meta.rnn
        rnn.register_forward_hook(lambda m, i, o: self.seen.__setitem__(
            "train" if m.training else "valid", str(o[0].dtype)))

    def on_batch_end(self, net, training=False, **kwargs):
        net.history.record_batch("rnn_dtype", self.seen["train" if training else "valid"])


@pytest.mark.parametrize("precision, train", [("bfloat16", "torch.bfloat16"),
                                              ("float32", "torch.float32")])
def test_precision_sets_the_training_steps_arithmetic(precision, train, tiny_models,
                                                      tiny_probes):
    emb = tiny_embedder(tiny_probes, precision=precision,
                        callbacks=[RecordRNNDtype()]).fit(tiny_models)
    batches = emb.history_[-1, "batches"]
    assert {b["rnn_dtype"] for b in batches if "train_loss" in b} == {train}
    # The held-out pass (convergence), the weights and everything after fit: float32.
    assert {b["rnn_dtype"] for b in batches if "valid_loss" in b} == {"torch.float32"}
    assert {p.dtype for p in emb.meta_model_.parameters()} == {torch.float32}
    assert np.isfinite(emb.embeddings_).all()
    assert np.isfinite(emb.emulation_scores_.output_r2).all()
    assert emb.transform(tiny_models[:1]).dtype == np.float64


def test_bfloat16_training_learns_as_float32_does(tiny_models, tiny_probes):
    fits = {p: tiny_embedder(tiny_probes, precision=p, max_epochs=30).fit(tiny_models)
            for p in ("float32", "bfloat16")}
    first, last = (fits["bfloat16"].history_[:, "valid_loss"][i] for i in (0, -1))
    assert last < 0.5 * first
    r2 = {p: np.median(f.emulation_scores_.output_r2) for p, f in fits.items()}
    assert abs(r2["bfloat16"] - r2["float32"]) < 0.05, r2


def test_precision_auto_takes_bfloat16_only_on_a_native_cpu(monkeypatch):
    from skdynamo import _guards
    monkeypatch.setattr(_guards, "native_bfloat16", lambda device: False)
    assert _guards.resolve_precision("auto", "cpu") is None
    assert _guards.resolve_precision("bfloat16", "cpu") is torch.bfloat16
    # CUDA: float32 unless asked (its bfloat16 path has not been measured).
    assert _guards.resolve_precision("auto", "cuda") is None
    monkeypatch.setattr(_guards, "native_bfloat16", lambda device: True)
    assert _guards.resolve_precision("auto", "cpu") is torch.bfloat16
    assert _guards.resolve_precision("float32", "cpu") is None
    assert _guards.resolve_precision("bfloat16", "cuda") is torch.bfloat16
    # A family that does not take bfloat16 by default (CNNs) stays float32 under 'auto'.
    assert _guards.resolve_precision("auto", "cpu", auto_bfloat16=False) is None
    assert _guards.resolve_precision("bfloat16", "cpu", auto_bfloat16=False) is torch.bfloat16
    with pytest.raises(ValueError, match="device='mps'"):
        _guards.resolve_precision("bfloat16", "mps")


def test_native_bfloat16_answers_without_raising():
    from skdynamo._guards import native_bfloat16
    assert native_bfloat16("cpu") in (True, False)
    assert native_bfloat16("meta") is False
    assert native_bfloat16("cuda") is False  # 'auto' never takes bfloat16 on CUDA


@pytest.mark.parametrize("native, expected", [(True, "torch.bfloat16"), (False, "None")])
def test_precision_auto_in_a_recurrent_fit(native, expected, monkeypatch, tiny_models,
                                           tiny_probes):
    from skdynamo import _guards
    monkeypatch.setattr(_guards, "native_bfloat16", lambda device: native)
    emb = tiny_embedder(tiny_probes, max_epochs=1, callbacks=[RecordTrainDtype()])
    assert emb.fit(tiny_models).history_[-1, "train_dtype"] == expected


def test_a_member_with_constant_outputs_does_not_take_over_the_fit(random_networks):
    # A collapsed member (readout zeroed: constant outputs) once weighed a million times
    # the others in the output loss, and the shared meta-model was trained for it alone.
    from skdynamo.datasets import make_random_probes

    probes = make_random_probes(24, 12, 3, random_state=0)
    dead = copy.deepcopy(random_networks[0])
    with torch.no_grad():
        dead.readout.weight.zero_()
    kw = dict(hidden_size=16, max_epochs=100, patience=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        alone = tiny_embedder(probes, **kw).fit(random_networks)
        with pytest.warns(UserWarning, match=r"model\(s\) \[4\] barely vary"):
            emb = tiny_embedder(probes, **kw).fit(list(random_networks) + [dead])
    scales = emb.loss_.output_scale.numpy()
    np.testing.assert_allclose(scales[4], 1e-2 * np.median(scales[:4]), rtol=0.3)
    r2_alone, r2_with = alone.emulation_scores_.output_r2, emb.emulation_scores_.output_r2[:4]
    # Measured (this machine, 1 thread): 0.87 alone, 0.49 beside the dead member, and a
    # median of -0.50 without the floor.
    assert r2_alone.mean() > 0.5
    assert r2_with.mean() > 0.25


def test_a_population_of_copies_fits_without_numpy_warnings(tiny_models, tiny_probes):
    # Every behaviour feature alike: the starting PCA has nothing to explain.
    copies = [copy.deepcopy(tiny_models[1]) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        Z = tiny_embedder(tiny_probes).fit_transform(copies)
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(Z, np.repeat(Z[:1], 4, axis=0))


def test_reverse_weight_trains_keeps_twins_together_and_is_on_by_default(tiny_models,
                                                                         tiny_probes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        base = tiny_embedder(tiny_probes).fit(tiny_models)
        auto = tiny_embedder(tiny_probes, reverse_weight=0.3).fit(tiny_models)
        off = tiny_embedder(tiny_probes, reverse_weight=0.0).fit(tiny_models)
        models = list(tiny_models) + [copy.deepcopy(tiny_models[1])]
        on = tiny_embedder(tiny_probes, reverse_weight=1.0).fit(models)
    assert base.loss_.reverse_weight == 0.3 and off.loss_.reverse_weight == 0.0
    np.testing.assert_array_equal(auto.embeddings_, base.embeddings_)   # 'auto' is 0.3
    assert on.loss_.reverse_weight == 1.0 and np.all(np.isfinite(on.embeddings_))
    np.testing.assert_allclose(on.embeddings_[3], on.embeddings_[1], atol=1e-6)
    assert not np.allclose(off.embeddings_, base.embeddings_)   # the term trains


def test_reverse_weight_is_off_for_cnns_and_refused_when_asked():
    from skdynamo.datasets import ConvNetwork
    cnns = [ConvNetwork(width=4, depth=2) for _ in range(3)]
    images = np.random.RandomState(0).rand(16, 1, 8, 8)
    with pytest.raises(ValueError, match=r"reverse_weight=1\.0 applies to recurrent"):
        tiny_embedder(images, reverse_weight=1.0).fit(cnns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        emb = tiny_embedder(images).fit(cnns)
    assert emb.loss_.reverse_weight == 0.0 and np.all(np.isfinite(emb.embeddings_))


def test_members_emulated_far_worse_than_the_rest_are_named():
    from skdynamo._embedder import _lagging_message
    good = np.full(10, 0.99)
    assert _lagging_message(dict(output_r2=good, hidden_r2=good), 0.0) is None
    hidden = good.copy()
    hidden[[3, 7]] = [0.54, 0.85]
    msg = _lagging_message(dict(output_r2=good, hidden_r2=hidden), 0.0)
    assert "model(s) [3, 7]" in msg and "hidden R^2 3: 0.540, 7: 0.850" in msg
    assert "median 0.990" in msg and "member_balance=0.5" in msg
    # Already balanced: other advice. A population emulated badly overall is not a
    # few members lagging (the ConvergenceWarning and the scores speak for it).
    assert "hidden_size" in _lagging_message(dict(output_r2=good, hidden_r2=hidden), 1.0)
    poor = np.linspace(0.5, 0.97, 10)
    assert _lagging_message(dict(output_r2=poor, hidden_r2=poor), 0.0) is None
