"""skdynamo inside the sklearn toolbox: Pipeline, GridSearchCV with KFold over models,
cross_val_score, set_output/get_feature_names_out, n_jobs, parameter validation before
any training. Tiny untrained networks: this checks plumbing, not the science."""

import threading

import numpy as np
import pytest
import torch
from joblib import parallel_config
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skdynamo import DynamoAverager, DynamoCluster, DynamoEmbedder, DynamoSemiSupervised
from skdynamo.datasets import RecurrentNetwork, make_leaky_integration

torch.set_num_threads(1)

TINY = dict(n_components=2, hidden_size=6, max_epochs=2, batch_size=64, n_starts=1,
            transform_max_iter=2, random_state=0)


@pytest.fixture(scope="module")
def data():
    return make_leaky_integration(12, 8, random_state=0)


@pytest.fixture(scope="module")
def nets():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return [RecurrentNetwork(3, 3, hidden_size=5, cell=c).eval()
                for c in ("rnn", "gru", "lstm", "gru", "rnn", "lstm")]


@pytest.fixture(scope="module")
def fitted(nets, data):
    """A fitted tiny embedder (do not mutate)."""
    return DynamoEmbedder(probe_inputs=data[0], **TINY).fit(nets)


def test_pipeline_embedder_scaler_kmeans(nets, data):
    pipe = Pipeline([("embed", DynamoEmbedder(probe_inputs=data[0], **TINY)),
                     ("scale", StandardScaler()),
                     ("cluster", KMeans(2, n_init=2, random_state=0))])
    labels = pipe.fit_predict(nets)
    assert labels.shape == (len(nets),) and set(labels) <= {0, 1}
    # predict on models goes through transform (meta-model frozen)
    assert pipe.predict(nets[:2]).shape == (2,)


def test_grid_search_over_embedder_params_kfold_over_models(nets, data):
    grid = {"n_components": [1, 2], "hidden_size": [4, 6], "hidden_weight": [0.5]}
    search = GridSearchCV(DynamoEmbedder(probe_inputs=data[0], **TINY), grid,
                          cv=KFold(3, shuffle=True, random_state=0), error_score="raise")
    search.fit(nets)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all(np.isfinite(scores))
    assert search.best_estimator_.embeddings_.shape == (len(nets),
                                                        search.best_params_["n_components"])
    assert np.isfinite(search.score(nets[:2]))


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_cross_val_score_semi_supervised(task, fitted, data):
    X, Y = data
    y = Y[:, -1] if task == "regression" else (Y[:, -1, 0] > np.median(Y[:, -1, 0])).astype(int)
    est = DynamoSemiSupervised(FrozenEstimator(fitted), task=task, max_iter=2, n_starts=1,
                               random_state=0)
    scores = cross_val_score(est, X, y, cv=KFold(3), error_score="raise")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_get_feature_names_out_and_pandas_output(nets, data):
    pd = pytest.importorskip("pandas")
    emb = DynamoEmbedder(probe_inputs=data[0], **TINY).set_output(transform="pandas")
    Z = emb.fit_transform(nets)
    names = ["dynamoembedder0", "dynamoembedder1"]
    assert list(emb.get_feature_names_out()) == names
    assert isinstance(Z, pd.DataFrame) and list(Z.columns) == names
    assert Z.index.equals(pd.RangeIndex(len(nets)))
    Zt = emb.transform(nets[:2])
    assert isinstance(Zt, pd.DataFrame) and Zt.shape == (2, 2)
    pipe = make_pipeline(clone(emb), StandardScaler()).set_output(transform="pandas")
    out = pipe.fit_transform(nets)
    assert list(out.columns) == names


def _threaded_recorder(barrier, seen):
    def recorder(model, x):
        seen.add(threading.get_ident())
        barrier.wait()                     # returns only if two recordings run at once
        h, _ = model.rnn(x)
        return h, model(x)
    return recorder


@pytest.mark.parametrize("how", ["param", "joblib_context"])
def test_n_jobs_records_in_parallel(how, nets, data):
    barrier, seen = threading.Barrier(2, timeout=20), set()
    emb = DynamoEmbedder(probe_inputs=data[0], recorder=_threaded_recorder(barrier, seen),
                         **TINY)
    if how == "param":
        emb.set_params(n_jobs=2).fit(nets[:4])
    else:
        # joblib 1.6 applies a context's n_jobs to Parallel(n_jobs=None, prefer="threads")
        # only when the context also names a backend.
        with parallel_config(backend="threading", n_jobs=2):
            emb.fit(nets[:4])
    assert len(seen) == 2


def test_n_jobs_1_records_sequentially(nets, data):
    seen = set()

    def recorder(model, x):
        seen.add(threading.get_ident())
        h, _ = model.rnn(x)
        return h, model(x)

    DynamoEmbedder(probe_inputs=data[0], recorder=recorder, n_jobs=1, **TINY).fit(nets[:3])
    assert seen == {threading.get_ident()}


def test_grid_search_n_jobs(nets, data):
    """Candidates in parallel (threads keep this light on a small machine)."""
    search = GridSearchCV(DynamoEmbedder(probe_inputs=data[0], **TINY),
                          {"hidden_weight": [0.5, 1.0]}, cv=KFold(2), n_jobs=2,
                          error_score="raise")
    with parallel_config(backend="threading"):
        search.fit(nets)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


# ------------------------------------------------------------------ validation first
class CountingNet(RecurrentNetwork):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


def _counting_nets():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return [CountingNet(3, 3, hidden_size=4) for _ in range(4)]


BAD_GRIDS = [
    (lambda d: DynamoEmbedder(probe_inputs=d, **TINY), {"n_components": [0, 2]}),
    (lambda d: DynamoEmbedder(probe_inputs=d, **TINY), {"hidden_size": [-1]}),
    (lambda d: DynamoEmbedder(probe_inputs=d, **TINY), {"hidden_weight": [-0.5]}),
    (lambda d: DynamoCluster(DynamoEmbedder(probe_inputs=d, **TINY), n_clusters=2),
     {"n_clusters": [0]}),
    (lambda d: DynamoCluster(DynamoEmbedder(probe_inputs=d, **TINY), n_clusters=2),
     {"embedder__n_components": [0]}),
    (lambda d: DynamoAverager(DynamoEmbedder(probe_inputs=d, **TINY)),
     {"center": ["median"]}),
    (lambda d: DynamoAverager(DynamoEmbedder(probe_inputs=d, **TINY)),
     {"embedder__lr": [-1.0]}),
]


@pytest.mark.parametrize("make, grid", BAD_GRIDS,
                         ids=[f"{type(m(None)).__name__}-{next(iter(g))}" for m, g in BAD_GRIDS])
def test_out_of_range_grid_parameter_fails_before_training(make, grid, data):
    models = _counting_nets()
    CountingNet.calls = 0
    # GridSearchCV validates a candidate when it fits it: the bad candidate comes first, so
    # nothing at all may be recorded or trained. (DynamoCluster has no score: any scorer.)
    search = GridSearchCV(make(data[0]), grid, cv=KFold(2), error_score="raise",
                          scoring=lambda est, X, y=None: 0.0)
    with pytest.raises(InvalidParameterError, match=next(iter(grid)).split("__")[-1]):
        search.fit(models)
    assert CountingNet.calls == 0


@pytest.mark.parametrize("grid", [{"max_iter": [-1]}, {"lr": [0.0]}, {"n_starts": [0]},
                                  {"task": ["ranking"]}])
def test_semi_supervised_out_of_range_grid_parameter(grid, fitted, data):
    X, Y = data
    est = DynamoSemiSupervised(FrozenEstimator(fitted), max_iter=2, n_starts=1)
    search = GridSearchCV(est, grid, cv=KFold(2), error_score="raise")
    with pytest.raises(InvalidParameterError, match=next(iter(grid))):
        search.fit(X, Y[:, -1])
