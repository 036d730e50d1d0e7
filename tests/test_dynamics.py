"""Tests of skdynamo.dynamics: fixed points, stability, slow points, topology along paths."""

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from skdynamo.dynamics import (FixedPoints, find_fixed_points, fixed_points_along_path,
                               fixed_points_at, fixed_points_on_grid, jacobian,
                               simulate_settled_states)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- toy systems


def tanh_map(w=2.0):
    """h -> tanh(w h): fixed points 0 and +-h* with h* = tanh(w h*) (for w > 1)."""
    layer = nn.RNN(1, 1, bias=False, batch_first=True)
    with torch.no_grad():
        layer.weight_hh_l0.fill_(w)
        layer.weight_ih_l0.fill_(1.0)
    return layer


class LinearMap(nn.Module):
    """h -> A h + B x + b: one fixed point (I - A)^-1 (B x + b), eigenvalues eig(A)."""

    def __init__(self, A, B, b):
        super().__init__()
        self.A = torch.as_tensor(A, dtype=torch.float32)
        self.B = torch.as_tensor(B, dtype=torch.float32)
        self.b = torch.as_tensor(b, dtype=torch.float32)
        self.hidden_size, self.n_inputs = self.A.shape[0], self.B.shape[1]

    def _apply(self, fn, recurse=True):  # follow .double() like buffers would
        self.A, self.B, self.b = fn(self.A), fn(self.B), fn(self.b)
        return self

    def recurrent_step(self, x, h):
        return h @ self.A.T + x @ self.B.T + self.b


class Bottleneck(nn.Module):
    """1-D map with one stable fixed point at -1 and a slow point (ghost) near +1.

    F(h) = h - 0.2 (h + 1) ((h - 1)^2 + 1e-3): F'(-1) = 0.1998, |F(h) - h| ~ 4e-4 at h ~ 1.
    """

    hidden_size, n_inputs = 1, 1

    def recurrent_step(self, x, h):
        return h - 0.2 * (h + 1) * ((h - 1) ** 2 + 1e-3) + 0 * x


class Drift(nn.Module):
    """F(h) = h + 1e-3 (1 + h^2): no fixed point, a slow point at 0 (speed 1e-3)."""

    hidden_size, n_inputs = 1, 1

    def recurrent_step(self, x, h):
        return h + 1e-3 * (1 + h ** 2) + 0 * x


class Ghost(nn.Module):
    """F(h) = h + 0.1 (h^2 + 1e-3) (2 - h): one stable point at 2 (F'(2) = 0.6), and a
    ghost near 0 (|F(h) - h| ~ 2e-4) between it and states in [-1, 1]."""

    hidden_size, n_inputs = 1, 1

    def recurrent_step(self, x, h):
        return h + 0.1 * (h ** 2 + 1e-3) * (2 - h) + 0 * x


class ToyMeta(nn.Module):
    def __init__(self, w_in):
        super().__init__()
        self.rnn = nn.RNN(len(w_in), 1, bias=False, batch_first=True)
        with torch.no_grad():
            self.rnn.weight_hh_l0.fill_(2.0)
            self.rnn.weight_ih_l0.copy_(torch.tensor([w_in], dtype=torch.float32))

    def cell_inputs(self, x, theta):
        return torch.cat([x, theta], dim=-1)


class ToyEmulated(nn.Module):
    """The EmulatedNetwork protocol: a shared ``meta.rnn`` fed ``meta.cell_inputs(x, theta)``.

    h -> tanh(2 h + x + theta . w): at x = 0, two stable points and a saddle for
    |theta . w| < 0.533, one stable point beyond (saddle-node bifurcation).
    """

    def __init__(self, theta, w_in=(1.0, 1.0)):
        super().__init__()
        self.meta = ToyMeta(w_in)
        self.register_buffer("theta", torch.as_tensor(theta, dtype=torch.float32).reshape(-1))
        self.hidden_size, self.n_inputs = 1, 1

    def recurrent_step(self, x_t, h):
        inp = torch.cat([x_t, self.theta[None].expand(len(x_t), -1)], dim=1)[:, None]
        return self.meta.rnn(inp, h[None].contiguous())[1][0]


class StepOnly(nn.Module):
    """Hides everything but recurrent_step, to force the generic path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.hidden_size, self.n_inputs = inner.hidden_size, inner.n_inputs

    def recurrent_step(self, x_t, h):
        return self.inner.recurrent_step(x_t, h)


def kicks(n=8, steps=10):
    """Inputs that push the toy meta-model into both of its wells: a +-2 kick, then 0."""
    x = np.zeros((n, steps, 1))
    x[:, 0, 0] = np.where(np.arange(n) % 2, 2.0, -2.0)
    return x


# Fold of h = tanh(2h + b): sech^2(u) = 1/2 at u = 2h + b, h = tanh(u).
FOLD_U = np.arccosh(np.sqrt(2.0))
FOLD_B = 2 * np.tanh(FOLD_U) - FOLD_U  # ~0.533


# ----------------------------------------------------------------------------- known answers


def test_tanh_map_fixed_points_and_eigenvalues():
    fp = find_fixed_points(tanh_map(2.0), n_initial=64, random_state=0)
    h_star = brentq(lambda h: np.tanh(2 * h) - h, 0.1, 1.0)
    assert (fp.n_fixed, fp.n_stable, fp.n_unstable, fp.n_slow) == (3, 2, 1, 0)
    stable = np.sort(fp.stable_points.ravel())
    np.testing.assert_allclose(stable, [-h_star, h_star], atol=1e-10)
    unstable = fp.points[fp.stability == "unstable"].ravel()
    np.testing.assert_allclose(unstable, [0.0], atol=1e-10)
    # eigenvalue of the 1-D map at h is w (1 - h^2)
    lam = fp.eigenvalues[:, 0].real
    np.testing.assert_allclose(np.sort(lam), np.sort(2 * (1 - fp.points.ravel() ** 2)),
                               rtol=1e-8)
    assert np.all(fp.speeds <= 1e-8)
    assert fp.n_unstable_modes.tolist() == [int(x == "unstable") for x in fp.stability]


def test_tanh_map_with_gain_below_one_has_single_stable_point():
    fp = find_fixed_points(tanh_map(0.5), n_initial=32, random_state=0)
    assert (fp.n_fixed, fp.n_stable) == (1, 1)
    np.testing.assert_allclose(fp.points, [[0.0]], atol=1e-10)


def test_constant_input_moves_fixed_points():
    # h -> tanh(2h + x*) with x* = 1 > 0.533: a single stable point.
    fp = find_fixed_points(tanh_map(2.0), constant_input=[1.0], n_initial=64, random_state=0)
    assert (fp.n_stable, fp.n_unstable) == (1, 0)
    h = fp.points[0, 0]
    assert abs(np.tanh(2 * h + 1.0) - h) < 1e-10


@pytest.mark.parametrize("eigs, n_unstable_modes, label", [
    ([0.5, -0.3, 0.2], 0, "stable"),
    ([1.5, 0.3, -0.2], 1, "unstable"),
    ([1.5, -2.0, 0.2], 2, "unstable"),
])
def test_linear_map(eigs, n_unstable_modes, label):
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    A = Q @ np.diag(eigs) @ Q.T
    B = rng.standard_normal((3, 2))
    b = rng.standard_normal(3)
    x_star = np.array([0.3, -0.7])
    fp = find_fixed_points(LinearMap(A, B, b), constant_input=x_star,
                           initial_states=rng.standard_normal((16, 3)) * 3)
    expected = np.linalg.solve(np.eye(3) - A, B @ x_star + b)
    assert fp.n_fixed == 1
    np.testing.assert_allclose(fp.points[0], expected, atol=1e-5)  # A is float32
    np.testing.assert_allclose(np.sort(np.abs(fp.eigenvalues[0])), np.sort(np.abs(eigs)),
                               atol=1e-5)
    assert fp.n_unstable_modes[0] == n_unstable_modes
    assert fp.stability[0] == label


def test_simulation_agrees_with_finder_on_tanh_map():
    fp = find_fixed_points(tanh_map(2.0), n_initial=64, random_state=0)
    sim = simulate_settled_states(tanh_map(2.0), n_initial=64, random_state=1)
    assert sim.n_attractors == fp.n_stable == 2
    assert sim.n_unsettled == 0 and sim.counts.sum() == 64
    d = np.abs(sim.states[:, None, 0] - fp.stable_points[None, :, 0]).min(axis=1)
    assert np.all(d < 1e-6)


def test_slow_point_is_reported_apart_and_never_counted():
    sys = Bottleneck()
    fp = find_fixed_points(sys, initial_states=np.linspace(-2, 2, 41)[:, None])
    assert (fp.n_fixed, fp.n_stable) == (1, 1)
    np.testing.assert_allclose(fp.points[0], [-1.0], atol=1e-10)
    assert fp.n_slow == 1
    assert abs(fp.slow_points[0, 0] - 1.0) < 1e-2
    assert 1e-4 < fp.slow_speeds[0] < 1e-3
    # Long runs pass the bottleneck and settle at the single true attractor.
    sim = simulate_settled_states(sys, initial_states=np.linspace(-2, 2, 41)[:, None])
    assert sim.n_attractors == 1 and sim.n_unsettled == 0
    np.testing.assert_allclose(sim.states, [[-1.0]], atol=1e-6)
    assert "slow points" in fp.summary()


def test_relaxed_starts_reach_an_attractor_behind_a_ghost():
    # Newton steps from states in [-1, 1] all stall at the ghost; runs of the update pass
    # it. Sampled starts (uniform in [-1, 1] without inputs) are half relaxed first.
    fp = find_fixed_points(Ghost(), n_initial=32, random_state=0)
    assert fp.converged and (fp.n_fixed, fp.n_stable) == (1, 1)
    np.testing.assert_allclose(fp.stable_points[0], [2.0], atol=1e-8)
    # Given initial states are searched from as they are: here, only the ghost.
    with pytest.warns(ConvergenceWarning, match="No fixed point of Ghost"):
        raw = find_fixed_points(Ghost(), initial_states=np.linspace(-1, 1, 17)[:, None])
    assert raw.n_stable == 0 and raw.n_slow == 1 and abs(raw.slow_points[0, 0]) < 0.05


def test_no_fixed_point_warns_and_returns_slow_points():
    with pytest.warns(ConvergenceWarning, match="No fixed point of Drift met tol"):
        fp = find_fixed_points(Drift(), initial_states=np.linspace(-1, 1, 9)[:, None])
    assert not fp.converged and fp.n_fixed == 0 and fp.n_stable == 0
    assert fp.n_slow == 1 and abs(fp.slow_points[0, 0]) < 1e-3
    assert "WARNING" in fp.summary() and "speeds ||F(h)-h|| 1.0e-03" in fp.summary()


def test_summary_and_repr():
    fp = find_fixed_points(tanh_map(2.0), n_initial=16, random_state=0)
    assert repr(fp) == ("FixedPoints(n_fixed=3, n_stable=2, n_unstable=1, n_marginal=0, "
                        "n_slow=0)")
    text = str(fp)
    assert "3 fixed points (2 stable, 1 unstable" in text
    assert "unstable (1 unstable mode)" in text
    assert isinstance(fp, FixedPoints) and len(fp) == 3


# ----------------------------------------------------------------------------- cells


def _layers():
    torch.manual_seed(0)
    return [nn.RNN(3, 6, batch_first=True), nn.RNN(3, 6, nonlinearity="relu"),
            nn.GRU(3, 6, batch_first=True), nn.LSTM(3, 6, batch_first=True),
            nn.GRU(3, 6, bias=False, batch_first=True)]


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: repr(m))
def test_update_written_from_weights_matches_layer(layer):
    from skdynamo.dynamics._systems import as_system

    sys = as_system(layer)
    x = torch.randn(4, 9, 3)
    states = sys.record(x.double())
    ref = layer(x if layer.batch_first else x.transpose(0, 1))[0]
    ref = ref if layer.batch_first else ref.transpose(0, 1)
    np.testing.assert_allclose(states[..., :6].numpy(), ref.detach().numpy(), atol=1e-5)
    assert sys.state_size == (12 if isinstance(layer, nn.LSTM) else 6)


@pytest.mark.parametrize("layer", _layers()[2:4], ids=["gru", "lstm"])
def test_autograd_jacobian_matches_torch(layer):
    from skdynamo.dynamics._systems import as_system

    sys = as_system(layer)
    h = torch.randn(5, sys.state_size, dtype=torch.float64) * 0.5
    x = torch.randn(5, 3, dtype=torch.float64)
    J = jacobian(sys.step, x, h)
    for b in range(5):
        ref = torch.autograd.functional.jacobian(lambda v: sys.step(x[b:b + 1], v[None])[0],
                                                 h[b])
        np.testing.assert_allclose(J[b].numpy(), ref.numpy(), atol=1e-12)


def test_module_holding_a_layer_and_lstm_joint_state():
    from skdynamo.datasets import RecurrentNetwork

    torch.manual_seed(0)
    net = RecurrentNetwork(3, 3, hidden_size=5, cell="lstm")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((8, 20, 3)).astype(np.float32)
    fp = find_fixed_points(net, x, n_initial=32, random_state=0)
    assert fp.points.shape[1] == 10  # [h, c]
    assert fp.n_fixed >= 1
    sim = simulate_settled_states(net, x, n_initial=32, random_state=0)
    assert sim.n_attractors == fp.n_stable
    for k, v in net.state_dict().items():  # the caller's module is untouched
        assert torch.equal(v, before[k]) and v.dtype == torch.float32
    assert net.training  # training flag restored after recording
    assert not net.rnn._forward_pre_hooks  # hook removed


# ----------------------------------------------------------------------------- bad input


def test_wrong_input_width():
    with pytest.raises(ValueError, match="constant_input has 2 entries but RNN takes 1"):
        find_fixed_points(tanh_map(), constant_input=[0.0, 0.0])
    with pytest.raises(ValueError, match="inputs have 4 features per step but RNN takes 1"):
        find_fixed_points(tanh_map(), np.zeros((2, 5, 4)))
    from skdynamo.datasets import RecurrentNetwork

    with pytest.raises(ValueError, match="could not be run through RecurrentNetwork"):
        find_fixed_points(RecurrentNetwork(3, 3, 4), np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="initial_states must have shape"):
        find_fixed_points(tanh_map(), initial_states=np.zeros((3, 2)))


def test_module_without_recurrent_update():
    with pytest.raises(TypeError, match="Sequential has no recurrent update"):
        find_fixed_points(nn.Sequential(nn.Linear(3, 3), nn.Tanh()))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        find_fixed_points(np.eye(3))
    two = nn.Module()
    two.a, two.b = nn.GRU(2, 3), nn.GRU(3, 3)
    with pytest.raises(ValueError, match="holds 2 recurrent layers"):
        find_fixed_points(two)
    with pytest.raises(ValueError, match="num_layers=2"):
        find_fixed_points(nn.GRU(2, 3, num_layers=2))


def test_non_finite_states():
    with pytest.raises(ValueError, match="non-finite"):
        find_fixed_points(tanh_map(), np.full((2, 5, 1), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        find_fixed_points(tanh_map(), initial_states=[[np.inf]])
    with pytest.raises(ValueError, match="non-finite"):
        find_fixed_points(tanh_map(), constant_input=[np.nan])

    class Blowup(nn.Module):
        hidden_size, n_inputs = 1, 1

        def recurrent_step(self, x, h):
            return torch.where(h > 5, torch.full_like(h, np.nan), 0.5 * h)

    with pytest.warns(RuntimeWarning, match="1 of 3 initial states of Blowup led to non-finite"):
        fp = find_fixed_points(Blowup(), initial_states=[[0.3], [-0.2], [10.0]])
    assert fp.n_stable == 1


def test_bad_parameters():
    for kw in (dict(n_initial=0), dict(tol=-1.0), dict(max_iter=-1), dict(dedup_tol=0)):
        with pytest.raises(ValueError):
            find_fixed_points(tanh_map(), **kw)


# ----------------------------------------------------------------------------- meta-models


def test_meta_protocol_layer_path_matches_recurrent_step():
    from skdynamo.dynamics._systems import _LayerSystem, _StepSystem, as_system

    sys = as_system(ToyEmulated([0.2]))
    assert isinstance(sys, _LayerSystem)
    assert isinstance(as_system(StepOnly(ToyEmulated([0.2]))), _StepSystem)
    fast = find_fixed_points(ToyEmulated([0.2]), n_initial=64, random_state=0)
    slow = find_fixed_points(StepOnly(ToyEmulated([0.2])), n_initial=64, random_state=0)
    assert (fast.n_stable, fast.n_unstable) == (slow.n_stable, slow.n_unstable) == (2, 1)
    np.testing.assert_allclose(np.sort(fast.points.ravel()), np.sort(slow.points.ravel()),
                               atol=1e-9)


def test_real_emulated_network_is_understood():
    from skdynamo.dynamics._systems import _LayerSystem, as_system
    from skdynamo.nn import ConditionedRNN, EmulatedNetwork

    torch.manual_seed(0)
    for cell in ("gru", "lstm"):
        meta = ConditionedRNN(3, 3, 2, hidden_size=8, cell=cell)
        net = EmulatedNetwork(meta, np.array([0.3, -0.5], dtype=np.float32))
        sys = as_system(net)
        assert isinstance(sys, _LayerSystem) and sys.state_size == net.hidden_size
        h = net.initial_state(4).double()
        x = torch.randn(4, 3, dtype=torch.float64)
        ref = net.double().recurrent_step(x, h)
        np.testing.assert_allclose(sys.step(sys.full_input(x), h).numpy(),
                                   ref.detach().numpy(), atol=1e-10)


def test_path_counts_follow_the_saddle_node_bifurcation():
    res = fixed_points_along_path(ToyEmulated, start=np.array([0.0]), end=np.array([1.0]),
                                  n_points=21, inputs=kicks(), n_initial=32, noise=1.0,
                                  random_state=0)
    theta = res.embeddings[:, 0]
    assert res.n_stable.shape == (21,) and len(res.fixed_points) == 21
    np.testing.assert_array_equal(res.n_stable, np.where(theta < FOLD_B, 2, 1))
    np.testing.assert_array_equal(res.n_unstable, np.where(theta < FOLD_B, 1, 0))
    # every count checked against long autonomous runs
    for z, fp in zip(res.embeddings[::5], res.fixed_points[::5]):
        sim = simulate_settled_states(ToyEmulated(z), initial_states=np.linspace(-1, 1, 20)[:,
                                                                                          None])
        assert sim.n_attractors == fp.n_stable


def test_path_batched_equals_one_by_one_and_generic_path():
    Z = np.linspace(-1, 1, 7)[:, None]
    batched = fixed_points_at(ToyEmulated, Z, constant_input=[0.0], n_initial=32, noise=1.0,
                              random_state=0, inputs=kicks())
    generic = fixed_points_at(lambda z: StepOnly(ToyEmulated(z)), Z, constant_input=[0.0],
                              inputs=kicks(), n_initial=32, noise=1.0, random_state=0)
    for a, b in zip(batched, generic):
        assert (a.n_stable, a.n_unstable) == (b.n_stable, b.n_unstable)


def test_grid_and_explicit_path():
    factory = lambda z: ToyEmulated(z, w_in=(1.0, 1.0, 0.5))  # noqa: E731
    grid = fixed_points_on_grid(factory, grid_size=(5, 4), bounds=((-1, 1), (-1, 1)),
                                center=np.zeros(2), inputs=kicks(), n_initial=24,
                                random_state=0)
    assert grid.n_stable.shape == (4, 5) and grid.embeddings.shape == (4, 5, 2)
    drive = grid.xx + 0.5 * grid.yy
    np.testing.assert_array_equal(grid.n_stable, np.where(np.abs(drive) < FOLD_B, 2, 1))
    path = fixed_points_along_path(factory, path=[[0, 0], [0.2, 0], [1, 0]],
                                   inputs=kicks(), n_initial=24)
    assert path.n_stable.tolist() == [2, 2, 1]
    np.testing.assert_allclose(path.t, [0, 0.2, 1])


def test_path_bad_arguments():
    with pytest.raises(ValueError, match="Pass start and end"):
        fixed_points_along_path(ToyEmulated)
    with pytest.raises(ValueError, match="model index"):
        fixed_points_along_path(ToyEmulated, 0, 1)
    with pytest.raises(TypeError, match="fitted DynamoEmbedder"):
        fixed_points_along_path(42, [0.0], [1.0])


# ----------------------------------------------------------------------------- trained nets


@pytest.fixture(scope="session")
def flipflop_2bit():
    """One small trained 2-bit tanh flip-flop (cached on disk; ~10 s to train once)."""
    from skdynamo.datasets._flipflop_zoo import make_flipflop_population, make_flipflop_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pop = make_flipflop_population(bits=(2,), cells=("rnn",), n_seeds=1)
    x, _ = make_flipflop_trials(32, 100, 3, n_bits=2, random_state=0)
    return pop.models[0], x, pop


def test_trained_flipflop_has_2_to_the_bits_stable_points(flipflop_2bit):
    model, x, pop = flipflop_2bit
    assert pop.attractors_ok[0] and pop.n_attractors[0] == 4
    fp = find_fixed_points(model, x, random_state=0)
    sim = simulate_settled_states(model, x, random_state=1)
    assert fp.n_stable == 4 == sim.n_attractors
    assert sim.n_unsettled == 0
    dist = np.linalg.norm(sim.states[:, None] - fp.stable_points[None], axis=2).min(axis=1)
    assert np.all(dist < 1e-4)
    # each attractor holds a distinct sign pattern of the two tracked outputs
    with torch.no_grad():
        y = model.readout(torch.from_numpy(fp.stable_points).float()).numpy()
    assert len({tuple(np.sign(r[:2])) for r in y}) == 4
    assert np.all(np.abs(y[:, 2]) < 0.2)


def test_plots_smoke(flipflop_2bit):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skdynamo.plotting import plot_bifurcation, plot_fixed_points, plot_stability_map

    model, x, _ = flipflop_2bit
    fp = find_fixed_points(model, x, random_state=0)
    ax = plot_fixed_points(fp)
    assert "4 stable" in ax.get_title()
    plot_fixed_points(fp, n_components=3)
    res = fixed_points_along_path(ToyEmulated, start=[0.0], end=[1.0], n_points=5,
                                  inputs=kicks(), n_initial=16)
    axes = plot_bifurcation(res)
    assert len(axes) == 2
    grid = fixed_points_on_grid(lambda z: ToyEmulated(z, w_in=(1.0, 1.0, 0.5)), grid_size=3,
                                bounds=((-1, 1), (-1, 1)), center=np.zeros(2),
                                inputs=kicks(), n_initial=8)
    plot_stability_map(grid, embeddings=np.zeros((3, 2)), labels=[1, 2, 2])
    plt.close("all")


@pytest.mark.slow
@pytest.mark.parametrize("bits", [1, 2, 3])
def test_zoo_flipflops_form_2_to_the_bits_attractors(bits):
    from skdynamo.datasets._flipflop_zoo import make_flipflop_population, make_flipflop_trials

    pop = make_flipflop_population(bits=(bits,))
    x, _ = make_flipflop_trials(64, 100, 3, n_bits=bits, random_state=0)
    for model in pop.models:
        fp = find_fixed_points(model, x, random_state=0)
        sim = simulate_settled_states(model, x, random_state=1)
        assert fp.n_stable == sim.n_attractors == 2 ** bits


def test_with_a_fitted_dynamo_embedder():
    """Integration with the real embedder: model_at, embeddings_ and probe_inputs_."""
    from skdynamo import DynamoEmbedder
    from skdynamo.datasets import RecurrentNetwork

    torch.manual_seed(0)
    models = [RecurrentNetwork(3, 3, hidden_size=6, cell=c) for c in ("rnn", "gru", "lstm")]
    probes = np.random.default_rng(0).standard_normal((16, 12, 3)).astype(np.float32)
    emb = DynamoEmbedder(n_components=2, probe_inputs=probes, hidden_size=8, max_epochs=2,
                         random_state=0).fit(models)
    net = emb.model_at(emb.embeddings_[0])
    fp = find_fixed_points(net, probes, n_initial=32, random_state=0)
    sim = simulate_settled_states(net, probes, n_initial=32, random_state=0)
    # The default meta-model is an LSTM: its fixed points live in [h, c], 2 x 8 wide.
    assert fp.points.shape[1] == 2 * 8 and sim.n_attractors == fp.n_stable
    path = fixed_points_along_path(emb, 0, 2, n_points=4, n_initial=16, random_state=0)
    assert path.embeddings.shape == (4, 2)
    np.testing.assert_allclose(path.embeddings[[0, -1]], emb.embeddings_[[0, 2]])
    assert path.fixed_points[0].n_stable == fp.n_stable
    grid = fixed_points_on_grid(emb, grid_size=2, n_initial=8, random_state=0)
    assert grid.n_stable.shape == (2, 2)
    with pytest.raises(ValueError, match="out of range"):
        fixed_points_along_path(emb, 0, 7)
    with pytest.raises(ValueError, match="not fitted"):
        fixed_points_along_path(DynamoEmbedder(), 0, 1)


def test_midpoint_search_finds_the_saddle_between_attractors():
    # Trajectories sit in the two wells of h -> tanh(2h + x); only the second pass, from
    # the midpoint of the two attractors, reaches the saddle at 0.
    kw = dict(inputs=kicks(), constant_input=[0.0], n_initial=32, noise=0.0, random_state=0)
    without = find_fixed_points(ToyEmulated([0.0]), midpoints=False, **kw)
    with_mid = find_fixed_points(ToyEmulated([0.0]), **kw)
    assert (without.n_stable, without.n_unstable) == (2, 0)
    assert (with_mid.n_stable, with_mid.n_unstable) == (2, 1)
    np.testing.assert_allclose(with_mid.points[with_mid.stability == "unstable"], [[0.0]],
                               atol=1e-10)


# ----------------------------------------------------------------------------- cells run per step


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_module_holding_a_cell_has_its_layers_update(cell):
    from conftest import CellLoop
    from skdynamo.datasets import RecurrentNetwork
    from skdynamo.dynamics._systems import as_system

    torch.manual_seed(0)
    layer_net = RecurrentNetwork(3, 3, hidden_size=5, cell=cell)
    model = CellLoop(layer_net, cell)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    np.testing.assert_allclose(as_system(model).record(x).numpy(),
                               as_system(layer_net).record(x).numpy(), atol=1e-12)
    np.testing.assert_allclose(as_system(model.cell).record(x).numpy(),
                               as_system(layer_net.rnn).record(x).numpy(), atol=1e-12)
    assert not model.cell._forward_pre_hooks  # hook removed


def test_trained_flipflop_as_a_cell_loop_keeps_its_attractors(flipflop_2bit):
    from conftest import CellLoop

    model, x, _ = flipflop_2bit
    looped = CellLoop(model, "rnn")
    fp = find_fixed_points(looped, x, random_state=0)
    assert fp.n_stable == 4
    np.testing.assert_allclose(np.sort(fp.stable_points, axis=0),
                               np.sort(find_fixed_points(model, x, random_state=0)
                                       .stable_points, axis=0), atol=1e-6)
