"""Faults and bad inputs: each raises a clear error at the point of entry and
leaves a previously fitted estimator, the caller's models and the caller's arrays as
they were.

One matrix runs every fit-time fault through all four estimators, and the persistence
faults through the functions of :mod:`skdynamo._persistence`; the tests after it cover
what is not an error (numpy integers, tensor probes, models sharing modules or editing
their input) and the model-zoo cache.
"""

import copy
import io
import os
import pickle
import warnings
from contextlib import redirect_stderr

import joblib
import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from conftest import assert_state_equal, state_snapshot, tiny_embedder
from skdynamo import (DivergenceError, DynamoAverager, DynamoCluster, DynamoEmbedder,
                      DynamoSemiSupervised, load_estimator, load_weights, save_weights)
from skdynamo.families._recurrent import record_population
from skdynamo.datasets import RecurrentNetwork
from skdynamo.datasets._cache import load_or_train

ESTIMATORS = ("embedder", "cluster", "averager", "semi")


# ------------------------------------------------------------------ faulty members
class _Member(nn.Module):
    """A small recurrent member whose forward can misbehave."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.readout = nn.Linear(4, 3)

    def forward(self, x):
        if self.mode == "in_place":
            x.mul_(0.5)
        h, _ = self.rnn(x)
        y = self.readout(h)
        if self.mode == "huge":
            return y * 1e30
        if self.mode == "nan":
            return y * float("nan")
        if self.mode == "dict":
            return {"out": y}
        return y


def _on_meta_device():
    with torch.device("meta"):
        return RecurrentNetwork(3, 3, hidden_size=8)


class Interrupt(Callback):
    """Ctrl-C in the middle of training."""

    def on_epoch_end(self, net, **kwargs):
        raise KeyboardInterrupt


# ------------------------------------------------------------------ fitted estimators
@pytest.fixture(scope="module")
def data(tiny_probes):
    rng = np.random.RandomState(0)
    y = rng.randn(*tiny_probes.shape).astype(np.float32)
    y[6:] = np.nan                       # six labelled sequences
    return tiny_probes, y


@pytest.fixture(scope="module")
def fitted(tiny_models, tiny_probes, data):
    """One fitted instance of each estimator (deep-copied by the tests that change them)."""
    X, y = data
    emb = tiny_embedder(tiny_probes)
    return {
        "embedder": copy.deepcopy(emb).fit(tiny_models),
        "cluster": DynamoCluster(copy.deepcopy(emb), n_clusters=2,
                                 random_state=0).fit(tiny_models),
        "averager": DynamoAverager(copy.deepcopy(emb)).fit(tiny_models),
        "semi": DynamoSemiSupervised(copy.deepcopy(emb), population=tiny_models,
                                     max_iter=3, n_starts=1).fit(X, y),
    }


def fingerprint(est, models, X):
    """What a failed call must not change: fitted arrays and the outputs of the fit."""
    if isinstance(est, DynamoEmbedder):
        return [est.embeddings_, est.transform(models),
                *(v.numpy() for v in state_snapshot(est.meta_model_).values())]
    if isinstance(est, DynamoCluster):
        return [est.embeddings_, est.labels_, est.transform(models)]
    if isinstance(est, DynamoAverager):
        return [est.member_embeddings_, est.embedding_, est.predict(X)]
    return [est.embedding_, est.predict(X)]


def refit(est, models, params, data):
    """Fit ``est`` again on ``models`` with the embedder parameters ``params``."""
    if isinstance(est, DynamoEmbedder):
        return est.set_params(**params).fit(models)
    est.set_params(**{f"embedder__{k}": v for k, v in params.items()})
    if isinstance(est, DynamoSemiSupervised):
        return est.set_params(population=models).fit(*data)
    return est.fit(models)


# A fault: (extra member appended to the population or None, embedder parameters,
# exception, what the message must name). The member, when given, is model 3.
FIT_FAULTS = {
    "interrupt": (None, dict(callbacks=[Interrupt()]), KeyboardInterrupt, None),
    "divergence_lr": (None, dict(lr=1e3), DivergenceError, r"diverged.*lr=1000"),
    "huge_outputs": (lambda: _Member("huge"), {}, ValueError, r"Model 3 .*outputs.*large"),
    "nan_outputs": (lambda: _Member("nan"), {}, ValueError, r"Model 3 .*non-finite"),
    "dict_forward": (lambda: _Member("dict"), {}, ValueError, r"model 3 .*returned a dict"),
    "meta_device": (_on_meta_device, {}, ValueError, r"\[3\] .*'meta' device"),
    "tpu_device": (None, dict(device="tpu"), ValueError, r"device='tpu'.*'cpu'"),
    "ragged_probes": (None, dict(probe_inputs=[np.zeros((10, 3)), np.zeros((5, 3))]),
                      ValueError, r"probe_inputs is a ragged list"),
    "probe_width": (None, dict(probe_inputs=np.zeros((12, 10, 4))), ValueError,
                    r"Model 0 .*width 3.*4 features"),
    "bad_n_components": (None, dict(n_components=0), InvalidParameterError, "n_components"),
}
if not torch.cuda.is_available():
    FIT_FAULTS["cuda_device"] = (None, dict(device="cuda"), ValueError,
                                 r"device='cuda' is not available")


def _semi_string_labels(est, ctx):
    est.fit(ctx["X"], np.array(["a", "b"] * 6))


def _semi_no_labels(est, ctx):
    est.fit(ctx["X"], np.full_like(ctx["y"], np.nan))


def _joblib_file_loaded_by(load):
    def act(est, ctx):
        path = ctx["tmp"] / "est.joblib"
        joblib.dump(est, path)
        load(path)
    return act


def _weights_file(edit=None, **params):
    """Save ``est``'s weights, rewrite the record with ``edit``, load with ``params``."""
    def act(est, ctx):
        path = ctx["tmp"] / "w.pt"
        save_weights(est, path)
        if edit is not None:
            record = torch.load(path, weights_only=True)
            edit(record)
            torch.save(record, path)
        load_weights(path, **params)
    return act


def _truncated_weights(est, ctx):
    path = ctx["tmp"] / "w.pt"
    save_weights(est, path)
    path.write_bytes(path.read_bytes()[:100])
    load_weights(path)


def _wrong_embeddings(record):
    record["embedder"]["fitted"]["embeddings_"]["__ndarray__"] = torch.zeros(3, 5).double()


# (estimator, action(est, ctx), exception, what the message must name)
OTHER_FAULTS = {
    "semi-string_labels": ("semi", _semi_string_labels, ValueError,
                           r"y holds non-numeric labels.*task='regression'"),
    "semi-no_labels": ("semi", _semi_no_labels, ValueError, r"y has no labelled sample"),
    "load_weights-pickle": ("embedder", _joblib_file_loaded_by(load_weights), ValueError,
                            r"pickled Python objects.*load_estimator\(path, trusted=True\)"),
    "load_weights-format_version_str": ("embedder",
                                        _weights_file(lambda r: r.update(format_version="1")),
                                        ValueError,
                                        r"'format_version' must be an integer.*'1'"),
    "load_weights-tampered_shapes": ("embedder", _weights_file(_wrong_embeddings), ValueError,
                                     r"damaged: its embeddings_ has shape \(3, 5\)"),
    "load_weights-truncated": ("averager", _truncated_weights, ValueError,
                               r"not a readable skdynamo weights file"),
    "load_weights-device": ("embedder", _weights_file(device="tpu"), ValueError,
                            r"device='tpu'"),
    "load_estimator-untrusted": ("cluster", _joblib_file_loaded_by(load_estimator), ValueError,
                                 r"trusted=True"),
}

CASES = [pytest.param(name, fault, id=f"{name}-{key}")
         for key, fault in FIT_FAULTS.items() for name in ESTIMATORS]
CASES += [pytest.param(name, key, id=key) for key, (name, *_) in OTHER_FAULTS.items()]


@pytest.mark.parametrize("name, fault", CASES)
def test_fault_leaves_everything_unchanged(name, fault, fitted, tiny_models, data, tmp_path):
    est = copy.deepcopy(fitted[name])
    X, y = data
    X_before, y_before = X.copy(), y.copy()
    models = list(tiny_models)
    states = [state_snapshot(m) for m in models]
    flags = [[mod.training for mod in m.modules()] for m in models]
    before = fingerprint(est, models, X)
    if isinstance(fault, str):
        _, act, exc, match = OTHER_FAULTS[fault]
        with pytest.raises(exc, match=match):
            act(est, dict(X=X, y=y, tmp=tmp_path))
    else:
        member, params, exc, match = fault
        population = models + ([member()] if member else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # a diverging fit may warn on its way
            with pytest.raises(exc, match=match):
                refit(est, population, params, data)
    for a, b in zip(fingerprint(est, models, X), before):
        np.testing.assert_array_equal(a, b)
    for m, s, f in zip(models, states, flags):
        assert_state_equal(m, s)
        assert [mod.training for mod in m.modules()] == f
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


# ------------------------------------------------------------------ 1. interrupts
def test_interrupt_propagates_after_cleanup(tiny_fitted, tiny_models):
    """The interrupt is the original KeyboardInterrupt, raised once training has ended
    (callbacks' on_train_end ran, e.g. a progress bar is closed)."""
    ended = []

    class Ended(Callback):
        def on_train_end(self, net, **kwargs):
            ended.append(True)

    tiny_fitted.set_params(callbacks=[Interrupt(), Ended()])
    with pytest.raises(KeyboardInterrupt):
        tiny_fitted.fit(tiny_models)
    assert ended == [True]


# ------------------------------------------------------------------ 2. divergence
@pytest.mark.parametrize("lr", [10.0, 1e5])
def test_divergence_names_lr(lr, tiny_models, tiny_probes):
    emb = tiny_embedder(tiny_probes, lr=lr)
    with pytest.raises(DivergenceError, match=rf"Lower the learning rate \(lr={lr}\)"):
        emb.fit(tiny_models)
    assert not hasattr(emb, "embeddings_")


def test_short_fits_do_not_count_as_divergence(tiny_models, tiny_probes):
    """Two epochs barely improve a fit (negative R^2 is normal then): no error, and no
    warning but the one saying the epoch cap ended it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "DYNAMO training stopped at the epoch cap",
                                ConvergenceWarning)
        emb = tiny_embedder(tiny_probes, max_epochs=2).fit(tiny_models)
    assert len(emb.history_) == 2


def test_divergence_message_names_large_targets(tiny_models, tiny_probes):
    """Outputs of 1e5 (large but not refused) are named when the fit diverges."""
    class Large(_Member):
        def forward(self, x):
            return super().forward(x) * 1e5

    emb = tiny_embedder(tiny_probes, lr=1e3)
    with pytest.raises(DivergenceError, match=r"outputs are also large .*model 3"):
        emb.fit(tiny_models + [Large("plain")])


# ------------------------------------------------------------------ 3. shared modules
class _Sharing(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.readout = nn.Linear(rnn.hidden_size, 2)

    def forward(self, x):
        return self.readout(self.rnn(x)[0])


def test_models_sharing_a_submodule_record_correctly_in_threads():
    torch.manual_seed(0)
    shared = nn.GRU(3, 8, batch_first=True)
    x = np.random.RandomState(0).randn(32, 200, 3).astype(np.float32)
    models = [_Sharing(shared), _Sharing(shared), _Sharing(nn.GRU(3, 8, batch_first=True))]
    models[1].eval()                     # the shared GRU itself stays in training mode
    flags = [[m.training for m in model.modules()] for model in models]
    expected = record_population(models, x, n_jobs=1)
    for _ in range(10):
        got = record_population(models, x, n_jobs=2)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g.hidden, e.hidden)
            np.testing.assert_array_equal(g.outputs, e.outputs)
        assert [[m.training for m in model.modules()] for model in models] == flags


# ------------------------------------------------------------------ 4. numpy integers
INT_PARAMS = {
    "embedder": dict(n_components=2, hidden_size=8, n_pcs=3, max_epochs=2, batch_size=64,
                     patience=2, n_starts=1, transform_max_iter=2, n_jobs=1),
    "cluster": dict(n_clusters=2, max_clusters=2),
    "averager": {},
    "semi": dict(n_starts=1, max_iter=2, max_unlabeled=3),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_numpy_integers_are_accepted(name, fitted, tiny_models, tiny_probes, data):
    emb = tiny_embedder(tiny_probes).set_params(
        **{k: np.int64(v) for k, v in INT_PARAMS["embedder"].items()})
    own = {k: np.int64(v) for k, v in INT_PARAMS[name].items()}
    if name == "embedder":
        est = emb.fit(tiny_models)
        assert est.transform(tiny_models).shape == (3, 2)
        return
    est = copy.deepcopy(fitted[name]).set_params(embedder=emb, **own)
    if name == "semi":
        est.fit(*data)
    else:
        est.fit(tiny_models)
    assert type(est.embedder_.meta_model_.hidden_size) is int


def test_grid_search_over_numpy_integers(tiny_models, tiny_probes):
    search = GridSearchCV(tiny_embedder(tiny_probes, max_epochs=1),
                          {"n_components": np.arange(1, 3)}, cv=[([0, 1], [2])] * 1,
                          error_score="raise")
    search.fit(tiny_models)
    assert search.best_estimator_.embeddings_.shape[1] in (1, 2)


# ------------------------------------------------------------------ 5. in-place models
def test_in_place_model_cannot_corrupt_probes_or_other_members(tiny_models, tiny_probes):
    probes = tiny_probes.copy()
    alone = record_population(tiny_models, probes)
    got = record_population([_Member("in_place")] + list(tiny_models), probes, n_jobs=2)
    np.testing.assert_array_equal(probes, tiny_probes)
    for g, e in zip(got[1:], alone):
        np.testing.assert_array_equal(g.hidden, e.hidden)
    emb = tiny_embedder(probes).fit([_Member("in_place")] + list(tiny_models))
    np.testing.assert_array_equal(probes, tiny_probes)
    assert emb.probe_inputs_ is not probes       # later edits of the caller's array ...
    probes[:] = 0
    assert np.any(emb.probe_inputs_ != 0)        # ... cannot change the fit


# ------------------------------------------------------------------ 7. tensor probes
def test_tensor_probes_that_require_grad_are_accepted(tiny_models, tiny_probes):
    t = torch.tensor(tiny_probes, requires_grad=True)
    a = tiny_embedder(t).fit(tiny_models).embeddings_
    b = tiny_embedder(tiny_probes).fit(tiny_models).embeddings_
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ 6. caches
def _train_member(spec):
    return {"state_dict": {"w": torch.full((2,), float(spec["seed"]))}, "score": 1.0}


def test_corrupt_and_foreign_cache_entries_are_retrained(tmp_path):
    specs = [{"seed": 0}, {"seed": 1}, {"seed": 2}]
    first = load_or_train("zoo", specs, {}, _train_member, data_home=tmp_path)
    files = sorted((tmp_path / "zoo").glob("*.pt"))
    by_seed = {int(torch.load(f, weights_only=True)["state_dict"]["w"][0]): f for f in files}
    by_seed[0].write_bytes(b"not a torch file")
    pickle.dump(object, open(by_seed[1], "wb"))        # a pickle naming code: never run
    torch.save({"foreign": torch.zeros(1)}, by_seed[2])
    with pytest.warns(UserWarning) as record:
        again = load_or_train("zoo", specs, {}, _train_member, data_home=tmp_path)
    messages = " ".join(str(w.message) for w in record)
    for f in files:
        assert str(f) in messages
    assert "foreign" in messages and "weights_only" not in messages
    for a, b in zip(first, again):
        assert torch.equal(a["state_dict"]["w"], b["state_dict"]["w"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # rewritten: quiet from now on
        load_or_train("zoo", specs, {}, _train_member, data_home=tmp_path)


def test_unusable_data_folder_is_one_clear_error(tmp_path, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    monkeypatch.setenv("SKDYNAMO_DATA", str(a_file))
    with pytest.raises(OSError, match=r"'.*a_file'.*SKDYNAMO_DATA.*is a file, not a folder"):
        load_or_train("zoo", [{"seed": 0}], {}, _train_member)


def test_read_only_data_folder(tmp_path):
    folder = tmp_path / "ro" / "zoo"
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permissions are not enforced (see the /sys case)")
        with pytest.raises(OSError, match=r"'.*zoo' is not writable.*data_home="):
            load_or_train("zoo", [{"seed": 0}], {}, _train_member, data_home=tmp_path / "ro")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("where", ["file", "sys"])
def test_cli_reports_an_unusable_data_folder_in_one_line(where, tmp_path):
    from skdynamo.__main__ import main
    if where == "file":
        home = tmp_path / "a_file"
        home.write_text("")
    else:
        home = "/sys"                  # read-only even for root
        if not os.path.isdir(home):
            pytest.skip("no /sys")
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["demo", "--data-home", str(home), "--output", str(tmp_path / "x.png")])
    lines = err.getvalue().strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("skdynamo demo: error:") and "data_home=" in lines[0]
