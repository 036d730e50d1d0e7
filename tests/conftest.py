"""Shared, session-cached fixtures.

The machine running the suite is small and shared: every torch op runs on one thread,
populations are tiny, and expensive fitted objects are built once per session. Fixtures
returning fitted objects must not be mutated by tests (deep-copy them first).
"""

import copy

import numpy as np
import pytest
from skorch.callbacks import Callback
import torch

torch.set_num_threads(1)

# A small population the embedder can emulate well in a few seconds: two tasks whose
# outputs differ, two gated cells, two seeds each; the held-out seeds are drawn apart.
POPULATION_KW = dict(tasks=("flipflop", "integration"), cells=("gru", "lstm"),
                     hidden_sizes=(16,), n_steps=300, n_probes=64, min_score=0.0,
                     max_retries=0, random_state=0)
EMBEDDER_KW = dict(n_components=2, hidden_size=16, max_epochs=100, batch_size=128,
                   transform_max_iter=20, random_state=0)


@pytest.fixture(scope="session")
def data_home(tmp_path_factory):
    """A temporary cache folder for populations (never the user's own data home)."""
    return tmp_path_factory.mktemp("skdynamo_data")


@pytest.fixture(scope="session")
def population(data_home):
    """8 trained networks: flipflop/integration x gru/lstm x 2 seeds (hidden 16)."""
    return make_population(data_home, n_seeds=2)


@pytest.fixture(scope="session")
def held_out_population(data_home):
    """One network per (task, cell) from seeds never seen in training (seed_offset=100)."""
    return make_population(data_home, n_seeds=1, seed_offset=100)


def make_population(data_home, **kw):
    from skdynamo.datasets import make_rnn_population
    return make_rnn_population(data_home=data_home, **POPULATION_KW, **kw)


@pytest.fixture(scope="session")
def fitted_embedder(population):
    """A DynamoEmbedder fitted on ``population`` (do not mutate)."""
    from skdynamo import DynamoEmbedder
    emb = DynamoEmbedder(probe_inputs=population.probe_inputs, **EMBEDDER_KW)
    return emb.fit(population.models)


@pytest.fixture(scope="session")
def random_networks():
    """Untrained networks of the population's architectures (fixed seed)."""
    from skdynamo.datasets import RecurrentNetwork
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        return [RecurrentNetwork(3, 3, hidden_size=16, cell=c).eval()
                for c in ("gru", "lstm", "gru", "lstm")]


@pytest.fixture(scope="session")
def tiny_probes():
    """12 probe sequences of 10 steps on the 3-channel pulse interface."""
    from skdynamo.datasets import make_random_probes
    return make_random_probes(12, 10, 3, random_state=0)


@pytest.fixture(scope="session")
def tiny_models():
    """Three untrained hidden-8 networks, one per cell type."""
    from skdynamo.datasets import RecurrentNetwork
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return [RecurrentNetwork(3, 3, hidden_size=8, cell=c).eval()
                for c in ("rnn", "gru", "lstm")]


def tiny_embedder(probes, **kw):
    from skdynamo import DynamoEmbedder
    params = dict(n_components=2, probe_inputs=probes, hidden_size=8, max_epochs=3,
                  transform_max_iter=3, n_starts=1, random_state=0)
    params.update(kw)
    return DynamoEmbedder(**params)


@pytest.fixture(scope="session")
def _tiny_fitted(tiny_models, tiny_probes):
    return tiny_embedder(tiny_probes).fit(tiny_models)


@pytest.fixture
def tiny_fitted(_tiny_fitted):
    """A cheaply fitted embedder that a test may mutate (a fresh deep copy each time)."""
    return copy.deepcopy(_tiny_fitted)


def state_snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_state_equal(module, snapshot):
    state = module.state_dict()
    assert state.keys() == snapshot.keys()
    for k, v in state.items():
        assert torch.equal(v, snapshot[k]), k


def r2(pred, target):
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    t = target.reshape(-1, target.shape[-1])
    ss_res = ((pred.reshape(t.shape) - t) ** 2).sum()
    return 1.0 - ss_res / ((t - t.mean(0)) ** 2).sum()


class RecordTrainDtype(Callback):
    """Records the net's autocast dtype of training steps (``None``: float32) in the
    history of every epoch."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("train_dtype", str(net.train_dtype))


CELL_MODULES = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}


class CellLoop(torch.nn.Module):
    """A hand-written loop over time around an ``nn.RNNCell``/``GRUCell``/``LSTMCell``,
    with the weights of the one-layer network ``layer_net`` (so both must record alike)."""

    def __init__(self, layer_net, cell):
        super().__init__()
        rnn = layer_net.rnn
        self.cell = CELL_MODULES[cell](rnn.input_size, rnn.hidden_size)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.cell, name).copy_(getattr(rnn, name + "_l0"))
        self.readout = layer_net.readout

    def forward(self, x):
        state, hs = None, []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            hs.append(state[0] if isinstance(state, tuple) else state)
        return self.readout(torch.stack(hs, 1))
