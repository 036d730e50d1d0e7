"""Recording hidden trajectories and outputs of base models (skdynamo._recording)."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import CellLoop, assert_state_equal, state_snapshot
from skdynamo import Trajectories
from skdynamo._recording import input_width
from skdynamo.families._recurrent import record, record_population
from skdynamo.datasets import RecurrentNetwork, make_random_probes

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _seeded(fn, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


@pytest.fixture(scope="module")
def probes():
    return make_random_probes(7, 9, 3, random_state=0)


class StackedNet(nn.Module):
    """A multi-layer recurrent net, optionally started from a learned non-zero state."""

    def __init__(self, cell, num_layers=2, units=8, with_h0=None):
        super().__init__()
        self.rnn = CELLS[cell](3, units, num_layers=num_layers, batch_first=True)
        self.readout = nn.Linear(units, 3)
        self.with_h0 = with_h0
        n_state = 2 if cell == "lstm" else 1
        self.h0 = nn.Parameter(0.5 * torch.randn(n_state, num_layers, 1, units))

    def forward(self, x):
        if self.with_h0:
            h0 = self.h0.expand(-1, -1, x.shape[0], -1).contiguous()
            hx = (h0[0], h0[1]) if isinstance(self.rnn, nn.LSTM) else h0[0]
            if self.with_h0 == "keyword":
                return self.readout(self.rnn(x, hx=hx)[0])
            if self.with_h0 == "keywords":
                return self.readout(self.rnn(input=x, hx=hx)[0])
            return self.readout(self.rnn(x, hx)[0])
        return self.readout(self.rnn(x)[0])


class EncoderTimeMajor(nn.Module):
    """User-written module: Linear encoder, then a batch_first=False tanh RNN."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(3, 5)
        self.rnn = nn.RNN(5, 12)                  # time-major
        self.head = nn.Linear(12, 3)

    def forward(self, x):                         # x: (batch, time, 3)
        z = torch.tanh(self.encoder(x)).transpose(0, 1)
        h, _ = self.rnn(z)                        # (time, batch, 12)
        return self.head(h).transpose(0, 1)


class StepLoop(nn.Module):
    """Calls a GRU once per time step (a hand-written loop)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 6, batch_first=True)
        self.readout = nn.Linear(6, 3)

    def forward(self, x):
        h, outs = None, []
        for t in range(x.shape[1]):
            o, h = self.rnn(x[:, t: t + 1], h)
            outs.append(o)
        return self.readout(torch.cat(outs, 1))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_record_each_cell_type(cell, probes):
    model = _seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8, cell=cell)).eval()
    tr = record(model, probes)
    assert isinstance(tr, Trajectories)
    assert tr.hidden.shape == (7, 9, 8)
    assert tr.outputs.shape == (7, 9, 3)
    assert tr.hidden.dtype == np.float32 and tr.outputs.dtype == np.float32
    x = torch.from_numpy(probes)
    with torch.no_grad():
        h = model.rnn(x)[0]                  # h_t for LSTMs too (not c_t)
        y = model(x)
    np.testing.assert_allclose(tr.hidden, h.numpy(), atol=1e-6)
    np.testing.assert_allclose(tr.outputs, y.numpy(), atol=1e-6)
    assert np.std(tr.hidden) > 1e-3          # a live recording, not zeros


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("with_h0", [None, "positional", "keyword", "keywords"])
def test_multilayer_records_every_layer(cell, with_h0, probes):
    units = 8
    model = _seeded(lambda: StackedNet(cell, num_layers=2, units=units, with_h0=with_h0))
    tr = record(model.eval(), probes)
    assert tr.hidden.shape == (7, 9, 2 * units)   # width = layers * units

    # Layer 0 equals a single-layer cell run with layer 0's weights; layer 1 equals a
    # single-layer cell run with layer 1's weights on layer 0's states.
    x = torch.from_numpy(probes)
    inp = x
    for layer in range(2):
        single = CELLS[cell](inp.shape[-1], units, batch_first=True)
        single.load_state_dict({k.replace(f"_l{layer}", "_l0"): v
                                for k, v in model.rnn.state_dict().items()
                                if k.endswith(f"_l{layer}")})
        hx = None
        if with_h0:
            h0 = model.h0[:, layer: layer + 1].expand(-1, -1, len(x), -1).contiguous()
            hx = (h0[0], h0[1]) if cell == "lstm" else h0[0]
        with torch.no_grad():
            inp = single(inp, hx)[0]
        np.testing.assert_allclose(tr.hidden[..., layer * units:(layer + 1) * units],
                                   inp.numpy(), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(tr.outputs, model(x).numpy(), atol=1e-6)


def test_time_major_rnn_behind_linear_encoder(probes):
    model = _seeded(EncoderTimeMajor).eval()
    assert input_width(model) == 3                 # read off the encoder
    tr = record(model, probes)
    assert tr.hidden.shape == (7, 9, 12)           # batch-first, whatever the layer's layout
    x = torch.from_numpy(probes)
    with torch.no_grad():
        h = model.rnn(torch.tanh(model.encoder(x)).transpose(0, 1))[0].transpose(0, 1)
        y = model(x)
    np.testing.assert_allclose(tr.hidden, h.numpy(), atol=1e-6)
    np.testing.assert_allclose(tr.outputs, y.numpy(), atol=1e-6)


def test_layer_called_per_step_concatenates_time(probes):
    model = _seeded(StepLoop).eval()
    tr = record(model, probes)
    assert tr.hidden.shape == (7, 9, 6)
    with torch.no_grad():
        h = model.rnn(torch.from_numpy(probes))[0]
    np.testing.assert_allclose(tr.hidden, h.numpy(), atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_cell_called_per_step_records_like_its_layer(cell, probes):
    layer_net = _seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8, cell=cell)).eval()
    model = CellLoop(layer_net, cell).eval()
    assert input_width(model) == 3
    tr, ref = record(model, probes), record(layer_net, probes)
    assert tr.hidden.shape == (7, 9, 8)                      # h_t of LSTMCells, not c_t
    np.testing.assert_allclose(tr.hidden, ref.hidden, atol=1e-5)
    np.testing.assert_allclose(tr.outputs, ref.outputs, atol=1e-5)
    parts = record(model, probes, batch_size=3)              # batches concatenate alike
    np.testing.assert_allclose(parts.hidden, tr.hidden, atol=1e-6)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_batched_recording_matches_one_pass(probes):
    model = _seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8, cell="lstm")).eval()
    whole = record(model, probes)
    parts = record(model, probes, batch_size=3)    # 3 + 3 + 1 probes
    np.testing.assert_allclose(parts.hidden, whole.hidden, atol=1e-6)
    np.testing.assert_allclose(parts.outputs, whole.outputs, atol=1e-6)


def test_double_precision_model(probes):
    model = _seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8, cell="gru")).double().eval()
    tr = record(model, probes)
    with torch.no_grad():
        y = model(torch.from_numpy(probes).double())
    assert tr.outputs.dtype == np.float32
    np.testing.assert_allclose(tr.outputs, y.numpy(), atol=1e-5)


def test_callable_recorder_overrides_hooks(probes):
    model = _seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8, cell="gru")).train()
    seen = {}

    def recorder(m, x):
        seen["training"] = m.training
        seen["inference"] = torch.is_inference_mode_enabled()
        seen["type"] = type(x)
        h, _ = m.rnn(x)
        return torch.cat([h, h ** 2], -1), m(x)[:, -1]   # custom state, last-step output

    tr = record(model, probes, recorder=recorder)
    assert seen == {"training": False, "inference": True, "type": torch.Tensor}
    assert model.training                       # restored
    assert tr.hidden.shape == (7, 9, 16)
    assert tr.outputs.shape == (7, 3)
    with torch.no_grad():
        h = model.rnn(torch.from_numpy(probes))[0]
    np.testing.assert_allclose(tr.hidden[..., 8:], h.numpy() ** 2, atol=1e-6)


def test_callable_recorder_may_return_numpy(probes):
    model = _seeded(lambda: RecurrentNetwork(3, 3, hidden_size=8, cell="rnn"))

    def recorder(m, x):
        return np.ones((len(x), x.shape[1], 4)), np.zeros((len(x), x.shape[1], 3))

    tr = record(model, probes, recorder=recorder)
    assert tr.hidden.shape == (7, 9, 4) and np.all(tr.hidden == 1)


def test_record_population_passes_trajectories_through(probes, tiny_models):
    pre = Trajectories(np.random.RandomState(0).randn(7, 9, 5), np.zeros((7, 9, 3)))
    trs = record_population([tiny_models[0], pre, tiny_models[2]], probes)
    assert trs[1] is pre
    np.testing.assert_allclose(trs[0].hidden, record(tiny_models[0], probes).hidden)
    parallel = record_population([tiny_models[0], pre, tiny_models[2]], probes, n_jobs=2)
    for a, b in zip(trs, parallel):                  # threads may differ by an ulp
        np.testing.assert_allclose(a.hidden, b.hidden, atol=1e-6)
        np.testing.assert_allclose(a.outputs, b.outputs, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: RecurrentNetwork(3, 3, hidden_size=8, cell="lstm"),
    lambda: StackedNet("gru", num_layers=3, with_h0="positional"),
    EncoderTimeMajor,
])
def test_model_left_unchanged(make, probes):
    model = _seeded(make)
    model.train()
    first = next(iter(model.children()))
    first.eval()                                  # a mixed-mode module (e.g. frozen encoder)
    flags = {name: m.training for name, m in model.named_modules()}
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    user_calls = []
    model.register_forward_hook(lambda *a: user_calls.append(1))
    hooks_before = {name: len(m._forward_hooks) for name, m in model.named_modules()}
    snapshot = state_snapshot(model)

    record(model, probes)

    assert {name: m.training for name, m in model.named_modules()} == flags
    assert {name: p.requires_grad for name, p in model.named_parameters()} == grads
    assert {name: len(m._forward_hooks) for name, m in model.named_modules()} == hooks_before
    assert all(len(m._forward_hooks) == 0 for m in model.modules() if m is not model)
    assert len(user_calls) == 1                   # the user's own hook still runs
    assert_state_equal(model, snapshot)


def test_no_hooks_left_after_failure(probes):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)

        def forward(self, x):
            self.rnn(x)
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        record(model, probes)
    assert model.training
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_auto_recorder_needs_a_recurrent_layer(probes):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="callable recorder") as info:
        record(model, probes)
    assert "model(x)[::-1]" in str(info.value)     # the recipe for (outputs, hidden) models
    with pytest.raises(ValueError, match=r"Recording model 1 \(Sequential\)"):
        record_population([RecurrentNetwork(3, 3, 4), model], probes)


@pytest.mark.parametrize("hidden, outputs, match", [
    (np.zeros((4, 5)), np.zeros((4, 5, 2)), "hidden must have shape"),
    (np.zeros((4, 5, 3)), np.zeros((4,)), "outputs must have shape"),
    (np.zeros((4, 5, 3)), np.zeros((3, 5, 2)), "4 probes"),
    (np.zeros((4, 5, 3)), np.zeros((4, 6, 2)), "5 time steps"),
])
def test_trajectories_validates_shapes(hidden, outputs, match):
    with pytest.raises(ValueError, match=match):
        Trajectories(hidden, outputs)


def test_trajectories_accepts_last_step_outputs():
    tr = Trajectories(np.zeros((4, 5, 3)), np.zeros((4, 2)), name="m")
    assert tr.n_probes == 4 and tr.outputs.shape == (4, 2)
    assert "m" in repr(tr)


class EncoderDecoder(nn.Module):
    """Two recurrent submodules in sequence; the model returns a tuple."""

    def __init__(self):
        super().__init__()
        self.enc = nn.GRU(3, 5, batch_first=True)
        self.dec = nn.LSTM(5, 7, batch_first=True)
        self.readout = nn.Linear(7, 3)

    def forward(self, x):
        e, _ = self.enc(x)
        d, (h, _) = self.dec(e)
        return self.readout(d), h


def test_several_recurrent_submodules_concatenate_units(probes):
    model = _seeded(EncoderDecoder).eval()
    tr = record(model, probes)
    assert tr.hidden.shape == (7, 9, 12)
    x = torch.from_numpy(probes)
    with torch.no_grad():
        e = model.enc(x)[0]
        d = model.dec(e)[0]
        y = model(x)[0]                            # a tuple output: its first element
    np.testing.assert_allclose(tr.hidden, torch.cat([e, d], -1).numpy(), atol=1e-6)
    np.testing.assert_allclose(tr.outputs, y.numpy(), atol=1e-6)


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("kind", ["bidirectional", "proj_size"])
def test_multilayer_variants_end_with_the_layer_output(kind, probes):
    if kind == "bidirectional":
        rnn = _seeded(lambda: nn.GRU(3, 4, num_layers=2, batch_first=True, bidirectional=True))
        width = 2 * 4
    else:
        rnn = _seeded(lambda: nn.LSTM(3, 6, num_layers=2, batch_first=True, proj_size=2))
        width = 2
    model = nn.Module()
    model.rnn = rnn
    model.forward = lambda x: model.rnn(x)[0]
    tr = record(model, probes)
    assert tr.hidden.shape == (7, 9, 2 * width)
    with torch.no_grad():
        top = rnn(torch.from_numpy(probes))[0].numpy()
    np.testing.assert_allclose(tr.hidden[..., width:], top, atol=1e-5)
    np.testing.assert_allclose(tr.outputs, top, atol=1e-6)


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_record_population_same_module_twice(n_jobs, probes, tiny_models):
    model = tiny_models[1]
    trs = record_population([model, tiny_models[0], model, model], probes, n_jobs=n_jobs)
    expected = record(model, probes)
    for i in (0, 2, 3):
        assert trs[i].hidden.shape == expected.hidden.shape
        np.testing.assert_allclose(trs[i].hidden, expected.hidden, atol=1e-6)
        np.testing.assert_allclose(trs[i].outputs, expected.outputs, atol=1e-6)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
