"""Recording, fit and transform on a dask cluster (joblib's dask backend).

One 2-worker ``distributed.LocalCluster`` (worker processes, one task thread and one
torch thread each) serves the module; every result is compared with the default thread
backend's in this process.
"""

import multiprocessing
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("distributed", reason="dask's distributed scheduler is not installed "
                                          "(pip install 'skdynamo[dask]')")

import cloudpickle  # noqa: E402 - a dependency of joblib and dask
import dask  # noqa: E402
import joblib  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from conftest import tiny_embedder  # noqa: E402
from skdynamo import Trajectories  # noqa: E402
from skdynamo.datasets import (CausalTransformer, ConvNetwork, RecurrentNetwork,  # noqa: E402
                               load_digits_images, make_random_probes)
from skdynamo.families import ConvolutionalFamily, RecurrentFamily, TransformerFamily  # noqa: E402
from skdynamo.utils.dask import TorchThreads  # noqa: E402

SEQ = make_random_probes(12, 10, 3, random_state=0)

# Worker processes forked from this one, which has imported torch and skdynamo already
# and runs torch on one thread (conftest): the cluster starts in under a second, where
# spawned workers import them afresh (about 30 s on the 2 loaded cores of the machine
# the suite was timed on). Pickling is the same either way: every member and recorder
# is pickled here and loaded in the worker (test_class_the_workers_cannot_import).
START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


@pytest.fixture(scope="module")
def client():
    """A 2-worker LocalCluster of worker processes, one task thread each."""
    with dask.config.set({"distributed.worker.multiprocessing-method": START_METHOD}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(TorchThreads(1))
        yield client


def dask_backend():
    return joblib.parallel_config(backend="dask")


def _seeded(make, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


class UserNet(nn.Module):
    """A user's own model class (workers import it from this test module)."""

    def __init__(self, units=7):
        super().__init__()
        self.rnn = nn.GRU(3, units, batch_first=True)
        self.out = nn.Linear(units, 3)

    def forward(self, x):
        return self.out(self.rnn(x)[0])


PICKLED = []


class CountingNet(UserNet):
    """Counts how often it is pickled in this process."""

    def __getstate__(self):
        PICKLED.append(id(self))
        return super().__getstate__()


class FailingNet(UserNet):
    def forward(self, x):
        raise RuntimeError("forward failed on purpose")


def assert_same_recordings(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert type(a) is type(b)
        assert a.hidden.dtype == np.float32 and a.outputs.dtype == np.float32
        np.testing.assert_array_equal(a.hidden, b.hidden)
        np.testing.assert_array_equal(a.outputs, b.outputs)


def test_workers_run_the_torch_threads_the_plugin_sets(client):
    assert set(client.run(torch.get_num_threads).values()) == {1}
    try:
        client.register_plugin(TorchThreads(2))
        assert set(client.run(torch.get_num_threads).values()) == {2}
    finally:
        client.register_plugin(TorchThreads(1))
    assert set(client.run(torch.get_num_threads).values()) == {1}
    for bad in (0, 1.5, True, "1"):
        with pytest.raises(ValueError, match="n_threads must be a positive integer"):
            TorchThreads(bad)


def _zoo(kind):
    if kind == "rnn":
        return RecurrentFamily(), SEQ, _seeded(lambda: [
            RecurrentNetwork(3, 3, hidden_size=8, cell=c).eval() for c in ("rnn", "gru", "lstm")])
    if kind == "transformer":
        return TransformerFamily(), SEQ, _seeded(lambda: [
            CausalTransformer(3, 3, d_model=8, n_layers=n, n_heads=2).eval() for n in (1, 2)]
            + [RecurrentNetwork(3, 3, hidden_size=8, cell="gru").eval()])
    images = load_digits_images()[1][:16]
    return ConvolutionalFamily(), images, _seeded(lambda: [ConvNetwork(8, d).eval()
                                                           for d in (2, 3)])


@pytest.mark.parametrize("kind", ["rnn", "transformer", "cnn"])
def test_zoo_members_record_as_with_threads(client, kind):
    family, probes, models = _zoo(kind)
    expected = family.record(models, probes)
    with dask_backend():
        got = family.record(models, probes)
    assert_same_recordings(got, expected)


def test_user_models_and_trajectories(client):
    models = _seeded(lambda: [UserNet(5), UserNet(9)])
    # a Trajectories stays here; a model listed twice and two models sharing a layer are
    # recorded once and in one task
    shared = _seeded(lambda: UserNet(6), seed=1)
    twin = _seeded(lambda: UserNet(6), seed=2)
    twin.out = shared.out
    recorded = Trajectories(np.ones((12, 10, 4)), np.zeros((12, 10, 3)), name="given")
    population = [models[0], recorded, models[1], models[0], shared, twin]
    family = RecurrentFamily()
    expected = family.record(population, SEQ)
    with dask_backend():
        got = family.record(population, SEQ)
    assert_same_recordings(got, expected)
    assert got[1] is recorded


def test_each_member_is_pickled_once(client):
    models = _seeded(lambda: [CountingNet(u) for u in (4, 5, 6, 7)])
    PICKLED.clear()
    with dask_backend():
        got = RecurrentFamily().record(models, SEQ)
    assert sorted(PICKLED) == sorted(id(m) for m in models)
    assert_same_recordings(got, RecurrentFamily().record(models, SEQ))


def test_class_the_workers_cannot_import(client, tmp_path, monkeypatch):
    # A module only this process can import (the workers started before it existed),
    # like a user's script: named when it cannot be loaded, recorded once pickled by value.
    (tmp_path / "only_here.py").write_text(textwrap.dedent("""
        from torch import nn

        class LocalNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.LSTM(3, 5, batch_first=True)

            def forward(self, x):
                return self.rnn(x)[0]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here

    models = _seeded(lambda: [RecurrentNetwork(3, 3, hidden_size=4).eval(),
                              only_here.LocalNet()])
    family = RecurrentFamily()
    with dask_backend(), pytest.raises(ValueError, match=r"Model 1 \(LocalNet\) could not "
                                                         r"be unpickled on a joblib worker"):
        family.record(models, SEQ)
    cloudpickle.register_pickle_by_value(only_here)
    try:
        with dask_backend():
            got = family.record(models, SEQ)
    finally:
        cloudpickle.unregister_pickle_by_value(only_here)
        sys.modules.pop("only_here")
    assert_same_recordings(got, family.record(models, SEQ))


def test_errors_name_the_model(client):
    models = _seeded(lambda: [UserNet(), UserNet(), FailingNet()])
    family = RecurrentFamily()
    with dask_backend(), pytest.raises(ValueError, match=r"Recording model 2 \(FailingNet\) "
                                                         "failed: RuntimeError: forward "
                                                         "failed on purpose"):
        family.record(models, SEQ)
    models[1].lock = __import__("threading").Lock()
    with dask_backend(), pytest.raises(TypeError, match=r"Model 1 \(UserNet\) cannot be "
                                                        "pickled"):
        family.record(models, SEQ)
    family.recorder = lambda model, x, lock=models[1].lock: (model(x), model(x))
    del models[1].lock
    with dask_backend(), pytest.raises(TypeError, match=r"recorder=\) cannot be pickled"):
        family.record(models, SEQ)


def test_fit_and_transform_equal_the_thread_backend(client, tiny_models, _tiny_fitted):
    new = _seeded(lambda: [RecurrentNetwork(3, 3, hidden_size=6, cell=c).eval()
                           for c in ("gru", "lstm", "rnn")], seed=7)
    expected = _tiny_fitted.transform(new)
    with dask_backend():
        emb = tiny_embedder(SEQ).fit(tiny_models)
        z_new = _tiny_fitted.transform(new)
    np.testing.assert_array_equal(emb.embeddings_, _tiny_fitted.embeddings_)
    np.testing.assert_allclose(z_new, expected, rtol=1e-5, atol=1e-6)
