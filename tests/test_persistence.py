"""Persistence: pickle/joblib round-trips (also in a fresh process) and the safe weights
format (save_weights/load_weights: torch.load(weights_only=True), clear errors)."""

import io
import os
import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from skdynamo import (DynamoAverager, DynamoEmbedder, DynamoSemiSupervised, StandaloneRNN,
                      load_weights, save_weights)
from skdynamo._persistence import FORMAT, FORMAT_VERSION
from skdynamo.datasets import RecurrentNetwork, make_leaky_integration

torch.set_num_threads(1)

TINY = dict(n_components=2, hidden_size=6, max_epochs=2, batch_size=64, n_starts=1,
            transform_max_iter=3, random_state=0)


@pytest.fixture(scope="module")
def data():
    return make_leaky_integration(10, 8, random_state=0)


@pytest.fixture(scope="module")
def nets():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        return [RecurrentNetwork(3, 3, hidden_size=5, cell=c).eval()
                for c in ("rnn", "gru", "lstm")]


@pytest.fixture(scope="module")
def fitted(nets, data):
    """A fitted tiny embedder (do not mutate)."""
    return DynamoEmbedder(probe_inputs=data[0], **TINY).fit(nets)


@pytest.fixture(scope="module")
def weights_file(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "embedder.pt"
    save_weights(fitted, path)
    return path


# ------------------------------------------------------------------ pickle / joblib
@pytest.mark.parametrize("dumps, loads", [
    (pickle.dumps, pickle.loads),
    (lambda e: (joblib.dump(e, buf := io.BytesIO()), buf.getvalue())[1],
     lambda b: joblib.load(io.BytesIO(b))),
], ids=["pickle", "joblib"])
def test_pickle_and_joblib_round_trip(fitted, nets, dumps, loads):
    again = loads(dumps(fitted))
    np.testing.assert_array_equal(again.embeddings_, fitted.embeddings_)
    np.testing.assert_array_equal(again.transform(nets), fitted.transform(nets))
    assert again.score(nets) == fitted.score(nets)


def test_fresh_process_gives_identical_transform(fitted, nets, weights_file, tmp_path):
    """joblib file and weights file, reloaded by a new interpreter: same transform."""
    joblib.dump({"est": fitted, "nets": nets}, tmp_path / "fitted.joblib")
    expected = fitted.transform(nets)
    script = textwrap.dedent(f"""
        import joblib, numpy as np, torch
        torch.set_num_threads(1)
        from skdynamo import load_weights
        d = joblib.load({str(tmp_path / "fitted.joblib")!r})
        np.save({str(tmp_path / "a.npy")!r}, d["est"].transform(d["nets"]))
        np.save({str(tmp_path / "b.npy")!r},
                load_weights({str(weights_file)!r}).transform(d["nets"]))
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), expected)


# ------------------------------------------------------------------ safe weights
def test_embedder_weights_round_trip(fitted, nets, weights_file):
    est = load_weights(weights_file)
    assert isinstance(est, DynamoEmbedder)
    assert est.get_params().keys() == fitted.get_params().keys()
    np.testing.assert_array_equal(est.get_params()["probe_inputs"], fitted.probe_inputs)
    for name in ("embeddings_", "probe_inputs_", "n_models_"):
        np.testing.assert_array_equal(getattr(est, name), getattr(fitted, name))
    for a, b in zip(est.maps_, fitted.maps_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(est.emulation_scores_.output_r2,
                                  fitted.emulation_scores_.output_r2)
    np.testing.assert_array_equal(est.transform(nets), fitted.transform(nets))
    assert len(est.history_) == len(fitted.history_)
    assert list(est.get_feature_names_out()) == list(fitted.get_feature_names_out())
    z = fitted.embeddings_[0]
    x = torch.as_tensor(fitted.probe_inputs_[:2])
    with torch.no_grad():
        assert torch.equal(est.model_at(z)(x), fitted.model_at(z)(x))


def test_weights_file_is_plain_data(weights_file):
    """Only tensors and builtins: loadable with weights_only=True, no skdynamo class inside."""
    record = torch.load(weights_file, weights_only=True)
    assert record["format"] == FORMAT and record["format_version"] == FORMAT_VERSION
    assert b"skdynamo._" not in open(weights_file, "rb").read()


def test_refit_after_load(weights_file, nets):
    est = load_weights(weights_file)
    assert est.fit(nets).embeddings_.shape == (3, 2)


def test_loaded_loss_has_the_fits_reverse_weight(weights_file, fitted):
    est = load_weights(weights_file)
    assert est.reverse_weight == fitted.reverse_weight
    assert est.loss_.reverse_weight == fitted.loss_.reverse_weight == 0.3   # 'auto', an RNN


@pytest.mark.parametrize("kind", ["averager", "semi"])
def test_standalone_weights_round_trip(kind, fitted, nets, data, tmp_path):
    from sklearn.frozen import FrozenEstimator
    X, Y = data
    if kind == "averager":
        est = DynamoAverager(FrozenEstimator(fitted)).fit(nets)
        net = est.averaged_model_
    else:
        y = Y[:, -1].copy()
        y[5:] = np.nan
        est = DynamoSemiSupervised(FrozenEstimator(fitted), max_iter=2, n_starts=1,
                                   random_state=0).fit(X, y)
        net = est.model_
    save_weights(est, tmp_path / "w.pt")
    again = load_weights(tmp_path / "w.pt")
    assert isinstance(again, StandaloneRNN) and again.config == net.config
    x = torch.as_tensor(X)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
    save_weights(again, tmp_path / "w2.pt")      # a StandaloneRNN saves itself
    assert isinstance(load_weights(tmp_path / "w2.pt"), StandaloneRNN)


def test_code_parameters_must_be_passed_back(nets, data, tmp_path):
    def recorder(model, inputs):                 # never called here
        raise AssertionError

    est = DynamoEmbedder(probe_inputs=data[0], **TINY).fit(nets)
    est.set_params(recorder=recorder)            # as if fitted with a callable recorder
    save_weights(est, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="recorder"):
        load_weights(tmp_path / "w.pt")
    assert load_weights(tmp_path / "w.pt", recorder=recorder).recorder is recorder


def test_save_unfitted_raises(tmp_path):
    with pytest.raises(NotFittedError):
        save_weights(DynamoEmbedder(), tmp_path / "w.pt")
    with pytest.raises(NotFittedError):
        save_weights(DynamoAverager(), tmp_path / "w.pt")
    with pytest.raises(TypeError, match="joblib.dump"):
        save_weights(object(), tmp_path / "w.pt")
    assert not os.listdir(tmp_path)


# ------------------------------------------------------------------ bad files
class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _bad_files(weights_file, tmp_path):
    good = open(weights_file, "rb").read()
    files = {
        "truncated": good[: len(good) // 2],
        "garbage": b"\x00not a torch file at all" * 10,
        "empty": b"",
        "flipped": bytes(b ^ 0xFF if 200 < i < 400 else b for i, b in enumerate(good)),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return [tmp_path / n for n in files]


def test_corrupt_files_get_a_clear_error(weights_file, tmp_path):
    for path in _bad_files(weights_file, tmp_path):
        with pytest.raises(ValueError, match="not a readable skdynamo weights file|damaged|"
                                             "do not match") as info:
            load_weights(path)
        assert info.value.__cause__ is None and info.value.__suppress_context__, path.name


def test_pickled_code_is_refused(tmp_path):
    torch.save({"format": FORMAT, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="pickled Python objects"):
        load_weights(tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ValueError, match="pickled Python objects|not a readable"):
        load_weights(tmp_path / "evil.pkl")


def test_format_1_files_load_with_the_concat_meta_model(weights_file, fitted, nets, tmp_path):
    # Format 1 predates the bilinear conditioning: its meta-model read [x, theta] and its
    # config has no 'conditioning' entry.
    from skdynamo.nn import ConditionedRNN
    record = torch.load(weights_file, weights_only=True)
    config = dict(record["embedder"]["meta_model"]["config"])
    assert config.pop("conditioning") == "concat"
    torch.manual_seed(0)
    old = ConditionedRNN(**config, conditioning="concat")
    record["embedder"]["meta_model"] = {"config": config, "state_dict": old.state_dict()}
    record["format_version"] = 1
    torch.save(record, tmp_path / "format1.pt")
    est = load_weights(tmp_path / "format1.pt")
    assert est.meta_model_.conditioning == "concat"
    assert est.transform(nets[:2]).shape == (2, fitted.n_components)


def test_newer_format_and_foreign_files(weights_file, tmp_path):
    record = torch.load(weights_file, weights_only=True)
    record["format_version"] = FORMAT_VERSION + 1
    record["skdynamo_version"] = "9.0"
    torch.save(record, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match=f"format {FORMAT_VERSION + 1}.*Upgrade skdynamo"):
        load_weights(tmp_path / "newer.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a skdynamo weights file"):
        load_weights(tmp_path / "foreign.pt")
    record = torch.load(weights_file, weights_only=True)
    record["embedder"]["meta_model"]["config"]["hidden_size"] += 1
    torch.save(record, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="do not match their configuration"):
        load_weights(tmp_path / "mismatch.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")


# ------------------------------------------------------------------ whole estimators
def test_save_and_load_estimator(fitted, nets, tmp_path):
    from skdynamo import load_estimator, save_estimator
    save_estimator(fitted, tmp_path / "est.joblib")
    with pytest.raises(ValueError, match="trusted=True"):
        load_estimator(tmp_path / "est.joblib")
    again = load_estimator(tmp_path / "est.joblib", trusted=True)
    np.testing.assert_array_equal(again.transform(nets), fitted.transform(nets))
    joblib.dump(fitted, tmp_path / "plain.joblib")      # a plain joblib file loads too
    assert isinstance(load_estimator(tmp_path / "plain.joblib", trusted=True), DynamoEmbedder)


def test_load_estimator_bad_files(fitted, tmp_path):
    from skdynamo import load_estimator
    from skdynamo._persistence import _PICKLE_FORMAT
    save_estimator_path = tmp_path / "est.joblib"
    joblib.dump(fitted, save_estimator_path)
    good = save_estimator_path.read_bytes()
    (tmp_path / "truncated").write_bytes(good[: len(good) // 3])
    (tmp_path / "garbage").write_bytes(b"\x00\x01garbage" * 20)
    for name in ("truncated", "garbage"):
        with pytest.raises(ValueError, match="not a readable pickle") as info:
            load_estimator(tmp_path / name, trusted=True)
        assert info.value.__suppress_context__
    (tmp_path / "moved").write_bytes(b"cskdynamo._no_such_module\nThing\n.")
    with pytest.raises(ValueError, match="another skdynamo version"):
        load_estimator(tmp_path / "moved", trusted=True)
    joblib.dump({"format": _PICKLE_FORMAT, "skdynamo_version": "0.0.1", "estimator": fitted},
                tmp_path / "old.joblib")
    with pytest.warns(UserWarning, match="skdynamo 0.0.1"):
        load_estimator(tmp_path / "old.joblib", trusted=True)


def test_weights_files_store_every_fitted_attribute(tiny_fitted):
    """A fitted attribute added to DynamoEmbedder must be added to its ``_STATE`` (what a
    weights file stores), or be rebuilt from it on load."""
    rebuilt = {"family_", "loss_", "meta_model_", "history_", "_device"}
    fitted = {k for k in vars(tiny_fitted) if k.endswith("_") or k.startswith("_")}
    fitted -= set(tiny_fitted.get_params(deep=False))
    assert fitted - rebuilt == set(type(tiny_fitted)._STATE)
    state = tiny_fitted._fitted_state()
    assert {"_kind", "_n_steps", "_output_loss", "_last_only"} <= set(state)


def test_format_1_files_from_before_model_families_load(tiny_fitted, tiny_models, tmp_path):
    """Format 1 as first written (recurrent fits only): no 'meta_kind', '_kind', '_n_steps'
    or '_output_loss' entries."""
    import torch
    from skdynamo import load_weights, save_weights
    path = tmp_path / "old.pt"
    save_weights(tiny_fitted, path)
    record = torch.load(path, weights_only=True)
    del record["embedder"]["meta_kind"]
    for key in ("_kind", "_n_steps", "_output_loss"):
        del record["embedder"]["fitted"][key]
    torch.save(record, path)
    loaded = load_weights(path)
    assert loaded.family_.name == "rnn" and loaded.loss_.output.name == "mse"
    np.testing.assert_array_equal(loaded.transform(tiny_models), tiny_fitted.transform(tiny_models))
