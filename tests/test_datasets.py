"""Task generators, the cached model zoo and functionally identical twins."""

import numpy as np
import pytest
import torch
from sklearn.utils import Bunch

import skdynamo.datasets._zoo as zoo
from skdynamo.datasets import (PULSE_TASKS, RecurrentNetwork, get_data_home, make_delay,
                               make_flipflop, make_integration, make_leaky_integration,
                               make_pulses, make_random_probes, make_rnn_population,
                               make_running_max, make_sine_generation, make_task,
                               permute_hidden_units)

TASKS = sorted(PULSE_TASKS)
TINY_POP = dict(tasks=("flipflop",), cells=("rnn", "gru"), hidden_sizes=(8,), n_seeds=1,
                n_steps=15, n_probes=10, n_timesteps=12, min_score=0.0, max_retries=0)


def _last_pulse_sign(pulses):
    """Reference flip-flop: sign of the most recent non-zero pulse (0 before any)."""
    n, steps, c = pulses.shape
    out = np.zeros_like(pulses)
    for i in range(n):
        for ch in range(c):
            nz = np.flatnonzero(pulses[i, :, ch])
            for t in range(steps):
                before = nz[nz <= t]
                out[i, t, ch] = np.sign(pulses[i, before[-1], ch]) if len(before) else 0.0
    return out


@pytest.mark.parametrize("task", TASKS)
def test_pulse_task_shapes_and_seeds(task):
    x, y = make_task(task, 5, 20, 3, random_state=0)
    assert x.shape == y.shape == (5, 20, 3)
    assert x.dtype == np.float32 and y.dtype == np.float32
    x2, y2 = make_task(task, 5, 20, 3, random_state=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = make_task(task, 5, 20, 3, random_state=1)
    assert not np.array_equal(x, x3)
    # Every pulse task reads the same inputs from the same seed (one probe set for all).
    np.testing.assert_array_equal(x, make_pulses(5, 20, 3, random_state=0)[0])


def test_pulses_are_sparse_signed_and_noisy():
    x, p = make_pulses(200, 50, 3, pulse_prob=0.1, noise=0.05, random_state=0)
    assert set(np.unique(p)) == {-1.0, 0.0, 1.0}
    assert 0.07 < np.mean(p != 0) < 0.13
    assert 0.03 < np.std(x - p) < 0.07


def test_flipflop_holds_last_pulse_sign():
    x, y = make_flipflop(20, 40, 3, noise=0.0, pulse_prob=0.1, random_state=3)
    np.testing.assert_array_equal(y, _last_pulse_sign(x))
    assert set(np.unique(y)) == {-1.0, 0.0, 1.0}
    # Noisy inputs: the held value still follows the clean pulses.
    xn, yn = make_flipflop(20, 40, 3, noise=0.05, random_state=3)
    np.testing.assert_array_equal(yn, _last_pulse_sign(np.round(xn)))


@pytest.mark.parametrize("n_bits", [0, 1, 2])
def test_flipflop_untracked_channels_are_zero(n_bits):
    x, y = make_flipflop(20, 40, 3, n_bits=n_bits, noise=0.0, pulse_prob=0.1, random_state=0)
    assert np.all(y[:, :, n_bits:] == 0)
    assert np.any(x[:, :, n_bits:] != 0)          # the untracked channels do get pulses
    np.testing.assert_array_equal(y[:, :, :n_bits], _last_pulse_sign(x)[:, :, :n_bits])


@pytest.mark.parametrize("n_bits", [-1, 4])
def test_flipflop_bad_n_bits(n_bits):
    with pytest.raises(ValueError, match="n_bits"):
        make_flipflop(4, 10, 3, n_bits=n_bits)


@pytest.mark.parametrize("delay", [0, 1, 5])
def test_delay_shifts_pulses(delay):
    x, y = make_delay(10, 30, 3, delay=delay, noise=0.0, pulse_prob=0.2, random_state=0)
    np.testing.assert_array_equal(y[:, delay:], x[:, : 30 - delay])
    assert np.all(y[:, :delay] == 0)
    assert np.any(y != 0)


@pytest.mark.parametrize("delay", [-1, 30, 2.5])
def test_delay_bad_value(delay):
    with pytest.raises(ValueError, match="delay"):
        make_delay(4, 30, 3, delay=delay)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_integration_is_scaled_cumsum(scale):
    x, y = make_integration(10, 30, 3, scale=scale, noise=0.0, pulse_prob=0.2, random_state=0)
    np.testing.assert_allclose(y, scale * np.cumsum(x, axis=1), atol=1e-5)
    xn, yn = make_integration(10, 30, 3, scale=scale, random_state=0)
    np.testing.assert_allclose(yn, scale * np.cumsum(np.round(xn), axis=1), atol=1e-5)


def test_leaky_integration_decays():
    x, y = make_leaky_integration(5, 30, 3, leak=0.25, scale=1.0, noise=0.0, pulse_prob=0.2,
                                  random_state=0)
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-6)
    np.testing.assert_allclose(y[:, 1:], 0.75 * y[:, :-1] + x[:, 1:], atol=1e-5)
    _, y0 = make_leaky_integration(5, 30, 3, leak=0.0, random_state=0)
    np.testing.assert_allclose(y0, make_integration(5, 30, 3, random_state=0)[1])
    with pytest.raises(ValueError, match="leak"):
        make_leaky_integration(leak=1.5)


def test_running_max_is_the_peak_of_the_sum():
    x, y = make_running_max(6, 40, 3, scale=1.0, noise=0.0, pulse_prob=0.3, random_state=0)
    s = np.cumsum(x, axis=1)
    ref = np.array([[[max(0.0, s[i, :t + 1, c].max()) for c in range(3)] for t in range(40)]
                    for i in range(6)])
    np.testing.assert_allclose(y, ref, atol=1e-5)
    # A negative pulse lowers the sum but never the peak.
    assert (np.diff(y, axis=1) >= 0).all() and (s < y - 0.5).any()


def test_sine_generation_frequency_range():
    x, y = make_sine_generation(50, 40, frequencies=(0.02, 0.08), random_state=0)
    assert x.shape == y.shape == (50, 40, 1)
    f = x[:, 0, 0]
    assert np.all(x == f[:, None, None])           # a static input
    assert np.all((f >= 0.02) & (f <= 0.08)) and np.ptp(f) > 0.03
    t = np.arange(1, 41)
    np.testing.assert_allclose(y[..., 0], np.sin(2 * np.pi * f[:, None] * t), atol=1e-5)
    np.testing.assert_array_equal(x, make_sine_generation(50, 40, random_state=0)[0])


@pytest.mark.parametrize("freq", [0.05, 0.1])
def test_sine_generation_oscillates_at_given_frequency(freq):
    x, y = make_sine_generation(3, 400, frequencies=[freq], random_state=0)
    assert np.all(x == np.float32(freq))
    crossings = np.sum(np.diff(np.sign(y[0, :, 0] + 1e-9)) != 0)
    assert abs(crossings - 2 * freq * 400) <= 2
    spectrum = np.abs(np.fft.rfft(y[0, :, 0]))
    assert np.fft.rfftfreq(400)[spectrum.argmax()] == pytest.approx(freq, abs=1 / 400)


def test_sine_generation_frequency_list():
    x, _ = make_sine_generation(60, 5, frequencies=[0.01, 0.03, 0.05], random_state=0)
    np.testing.assert_array_equal(np.unique(x[:, 0, 0]),
                                  np.array([0.01, 0.03, 0.05], dtype=np.float32))


@pytest.mark.parametrize("freqs", [(), [-0.1], [np.nan]])
def test_sine_generation_bad_frequencies(freqs):
    with pytest.raises(ValueError, match="frequencies"):
        make_sine_generation(4, 10, frequencies=freqs)


def test_random_probes():
    p = make_random_probes(20, 15, 4, random_state=0)
    assert p.shape == (20, 15, 4) and p.dtype == np.float32
    np.testing.assert_array_equal(p, make_random_probes(20, 15, 4, random_state=0))
    assert not np.array_equal(p, make_random_probes(20, 15, 4, random_state=1))


@pytest.mark.parametrize("kw", [dict(n_samples=0), dict(n_timesteps=-1),
                                dict(n_channels=2.5)])
def test_bad_sizes(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        make_flipflop(**kw)


def test_bad_task_name():
    with pytest.raises(ValueError, match="Unknown task 'flipflap'"):
        make_task("flipflap")


def test_bad_task_name_in_population(tmp_path):
    # Rejected before any member is trained.
    with pytest.raises(ValueError, match=r"Unknown tasks \['flipflap'\]"):
        make_rnn_population(**{**TINY_POP, "tasks": ("flipflap",)}, data_home=tmp_path)


@pytest.mark.parametrize("kw", [dict(tasks=()), dict(cells=()), dict(n_seeds=0)])
def test_population_bad_grid(kw, tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        make_rnn_population(**{**TINY_POP, **kw}, data_home=tmp_path)


def test_recurrent_network_bad_cell():
    with pytest.raises(ValueError, match="cell"):
        RecurrentNetwork(3, 3, cell="transformer")


def test_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDYNAMO_DATA", str(tmp_path / "from_env"))
    assert get_data_home() == tmp_path / "from_env"
    assert (tmp_path / "from_env").is_dir()
    assert get_data_home(tmp_path / "explicit") == tmp_path / "explicit"


def test_population_is_cached(tmp_path, monkeypatch):
    pop = make_rnn_population(**TINY_POP, data_home=tmp_path)
    assert isinstance(pop, Bunch)
    assert len(pop.models) == 2
    assert list(pop.task) == ["flipflop", "flipflop"] and list(pop.cell) == ["rnn", "gru"]
    assert list(pop.seed) == [0, 0] and list(pop.hidden_size) == [8, 8]
    assert pop.score.shape == (2,) and pop.learned.all()
    assert pop.probe_inputs.shape == (10, 12, 3) and pop.probe_inputs.dtype == np.float32
    assert all(not m.training for m in pop.models)
    files = sorted((tmp_path / "rnn_population").glob("*.pt"))
    assert len(files) == 2
    mtimes = [f.stat().st_mtime_ns for f in files]

    # The second call must load from the cache: training is made impossible.
    def no_training(*args, **kwargs):
        raise AssertionError("make_rnn_population retrained a cached member")

    monkeypatch.setattr(zoo, "_train_member", no_training)
    again = make_rnn_population(**TINY_POP, data_home=tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    np.testing.assert_array_equal(again.score, pop.score)
    np.testing.assert_array_equal(again.probe_inputs, pop.probe_inputs)
    for a, b in zip(pop.models, again.models):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)

    # A member with other settings is not in the cache.
    with pytest.raises(OSError, match="not cached"):
        make_rnn_population(**{**TINY_POP, "n_seeds": 2}, data_home=tmp_path,
                            download_if_missing=False)
    with pytest.raises(AssertionError, match="retrained"):
        make_rnn_population(**{**TINY_POP, "n_seeds": 2}, data_home=tmp_path)


def test_population_env_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDYNAMO_DATA", str(tmp_path))
    make_rnn_population(**{**TINY_POP, "cells": ("rnn",)})
    assert len(list((tmp_path / "rnn_population").glob("*.pt"))) == 1


def test_population_seeds_are_reproducible(tmp_path):
    a = make_rnn_population(**{**TINY_POP, "cells": ("gru",)}, data_home=tmp_path / "a")
    b = make_rnn_population(**{**TINY_POP, "cells": ("gru",)}, data_home=tmp_path / "b")
    c = make_rnn_population(**{**TINY_POP, "cells": ("gru",)}, data_home=tmp_path / "c",
                            seed_offset=100)
    sa, sb, sc = (p.models[0].state_dict() for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert list(c.seed) == [100]


def test_population_reports_members_that_did_not_learn(tmp_path):
    with pytest.warns(UserWarning, match="did not reach min_score"):
        pop = make_rnn_population(**{**TINY_POP, "cells": ("rnn",), "min_score": 1.01},
                                  data_home=tmp_path)
    assert list(pop.learned) == [False]
    assert pop.score[0] < 1.01


def test_trained_members_learn(population):
    # The session population (300 steps) does learn its tasks.
    assert np.all(population.score > 0.6)
    assert np.median(population.score) > 0.8


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_permute_hidden_units_is_a_functional_twin(cell):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RecurrentNetwork(3, 3, hidden_size=12, cell=cell).eval()
    twin = permute_hidden_units(model, random_state=0)
    x = torch.from_numpy(make_random_probes(6, 20, 3, random_state=0))
    with torch.no_grad():
        np.testing.assert_allclose(twin(x).numpy(), model(x).numpy(), atol=1e-5)
        h, ht = model.rnn(x)[0].numpy(), twin.rnn(x)[0].numpy()
    # Same units, different order (and signs for tanh RNNs), different weights.
    assert not np.allclose(ht, h, atol=1e-3)
    assert not torch.allclose(twin.rnn.weight_hh_l0, model.rnn.weight_hh_l0)
    corr = np.corrcoef(h.reshape(-1, 12).T, ht.reshape(-1, 12).T)[:12, 12:]
    match = np.abs(corr).argmax(0)               # the original unit behind each twin unit
    assert sorted(match) == list(range(12))      # a permutation
    signs = corr[match, np.arange(12)]
    np.testing.assert_allclose(np.abs(signs), 1.0, atol=1e-4)
    np.testing.assert_allclose(ht, h[..., match] * np.sign(signs), atol=1e-5)
    assert np.any(signs < 0) == (cell == "rnn")  # sign flips only for tanh RNNs


def test_permute_hidden_units_sign_flips_only_for_tanh():
    model = RecurrentNetwork(3, 3, hidden_size=4, cell="gru")
    with pytest.raises(ValueError, match="tanh"):
        permute_hidden_units(model, flip_signs=True)
    with pytest.raises(TypeError, match="RecurrentNetwork"):
        permute_hidden_units(torch.nn.GRU(3, 4))


# ------------------------------------------------------------------ cognitive tasks
from skdynamo.datasets import (COGNITIVE_TASKS, make_cognitive_population,  # noqa: E402
                               make_cognitive_task, response_period)

TINY_COGNITIVE = dict(tasks=("perceptual_decision", "interval_discrimination"),
                      cells=("gru",), n_seeds=1, hidden_size=8, n_steps=5, n_timesteps=20,
                      n_probes=6, min_score=0.0, max_retries=0)


@pytest.mark.parametrize("task", COGNITIVE_TASKS)
def test_cognitive_task_shapes_targets_and_seeds(task):
    x, y = make_cognitive_task(task, 64, 30, random_state=0)
    assert x.shape == (64, 30, 3) and x.dtype == np.float32
    assert y.shape == (64, 30) and y.dtype == np.int64
    mask = response_period(task, 30)
    assert mask.dtype == bool and mask[-1] and not mask[0]
    # Fixate (action 0) before the response period, choose 1 or 2 in it (both occur).
    assert np.all(y[:, ~mask] == 0)
    assert set(np.unique(y[:, mask])) == {1, 2}
    assert np.all(y[:, mask] == y[:, [-1]])
    # The fixation cue is on until the response period.
    clean, _ = make_cognitive_task(task, 4, 30, noise=0.0, random_state=0)
    np.testing.assert_array_equal(clean[:, :, 0], np.broadcast_to(~mask, (4, 30)))
    x2, y2 = make_cognitive_task(task, 64, 30, random_state=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, make_cognitive_task(task, 64, 30, random_state=1)[0])


def test_cognitive_task_answers():
    x, y = make_cognitive_task("interval_discrimination", 50, 40, noise=0.0, random_state=0)
    first, second = x[:, :14, 1].sum(1), x[:, 14:, 1].sum(1)
    np.testing.assert_array_equal(y[:, -1], np.where(first > second, 1, 2))
    x, y = make_cognitive_task("match_to_sample", 50, 40, noise=0.0, random_state=0)
    sample, test = x[:, 4:10, 1:].sum(1).argmax(1), x[:, 22:28, 1:].sum(1).argmax(1)
    np.testing.assert_array_equal(y[:, -1], np.where(sample == test, 1, 2))
    x, y = make_cognitive_task("perceptual_decision", 50, 40, noise=0.0, random_state=0)
    np.testing.assert_array_equal(y[:, -1], np.where((x[:, :, 1] - x[:, :, 2]).sum(1) > 0,
                                                     1, 2))


@pytest.mark.parametrize("kw, match", [
    (dict(task="flipflop"), "Unknown task"),
    (dict(n_timesteps=10), "at least 20"),
    (dict(n_samples=0), "n_samples"),
    (dict(noise=-1.0), "noise"),
])
def test_cognitive_task_bad_arguments(kw, match):
    args = {**dict(task="perceptual_decision", n_samples=4, n_timesteps=30), **kw}
    with pytest.raises(ValueError, match=match):
        make_cognitive_task(args.pop("task"), args.pop("n_samples"), args.pop("n_timesteps"),
                            **args)


def test_cognitive_population_is_cached_and_flags_failures(tmp_path):
    with pytest.warns(UserWarning, match="did not reach min_score"):
        pop = make_cognitive_population(**{**TINY_COGNITIVE, "min_score": 1.01},
                                        data_home=tmp_path)
    assert not pop.learned.any()
    assert len(pop.models) == 2 and list(pop.task) == list(TINY_COGNITIVE["tasks"])
    assert isinstance(pop.models[0], RecurrentNetwork)
    assert pop.probe_inputs.shape == (6, 20, 3) and pop.probe_inputs.dtype == np.float32
    assert np.all((0 <= pop.score) & (pop.score <= 1))
    with torch.no_grad():
        assert pop.models[1](torch.from_numpy(pop.probe_inputs)).shape == (6, 20, 3)
    assert len(list((tmp_path / "cognitive_population").glob("*.pt"))) == 2
    # Cached: loading again does not train (nothing missing even when training is off).
    with pytest.warns(UserWarning, match="did not reach min_score"):
        again = make_cognitive_population(**{**TINY_COGNITIVE, "min_score": 1.01},
                                          data_home=tmp_path, download_if_missing=False)
    np.testing.assert_array_equal(again.score, pop.score)
    for a, b in zip(again.models, pop.models):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    assert "cognitive agents" in pop.DESCR


@pytest.mark.parametrize("kw, match", [
    (dict(tasks=("flipflop",)), "Unknown tasks"),
    (dict(cells=("transformer",)), "Unknown tasks"),
    (dict(n_seeds=0), "non-empty"),
    (dict(n_timesteps=10), "at least 20"),
])
def test_cognitive_population_bad_arguments(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make_cognitive_population(**{**TINY_COGNITIVE, **kw}, data_home=tmp_path)


# ------------------------------------------------------------------ the population builder
from skdynamo.datasets import make_classifier_population  # noqa: E402
from skdynamo.datasets._builder import (check_grid, check_names, grid,  # noqa: E402
                                        member_seed, train_with_retries)


def test_builder_grid_seed_rule_and_checks():
    specs = grid(2, 10, task=["a", "b"], cell=["gru"])
    assert specs == [{"task": "a", "cell": "gru", "seed": 10},
                     {"task": "a", "cell": "gru", "seed": 11},
                     {"task": "b", "cell": "gru", "seed": 10},
                     {"task": "b", "cell": "gru", "seed": 11}]
    assert [list(s) for s in specs] == [["task", "cell", "seed"]] * 4  # names the cache file
    assert member_seed(3, 0, 17) == 3 * 7919 + 17
    assert member_seed(3, 2, 17) == 3 * 7919 + 2 * 104729 + 17
    with pytest.raises(ValueError, match="^tasks, cells and widths must be non-empty and "
                                         r"n_seeds >= 1\.$"):
        check_grid(1, tasks=["a"], cells=[], widths=[1])
    with pytest.raises(ValueError, match=r"^Unknown tasks \['x'\] or cells \[\]; tasks are "
                                         r"\['a', 'b'\] and cells \['gru', 'rnn'\]\.$"):
        check_names(tasks=(["x", "a"], ("a", "b")), cells=(["gru"], {"rnn": 0, "gru": 1}))
    calls = []

    def attempt(i):
        calls.append(i)
        return f"model {i}", {"score": i}, i == 1
    assert train_with_retries(attempt, 3) == ("model 1", {"score": 1, "attempts": 1})
    assert calls == [0, 1]
    assert train_with_retries(lambda i: (i, {}, False), 2) == (2, {"attempts": 2})


def test_cache_file_names_are_stable(tmp_path):
    # Populations cached by earlier versions stay valid: the file names are pinned (and
    # without retries min_score does not enter the classifiers' names).
    make_rnn_population(**TINY_POP, data_home=tmp_path)
    make_classifier_population((0.0, 0.2), n_seeds=1, n_steps=3, n_timesteps=8, n_probes=10,
                               min_score=0.0, data_home=tmp_path)
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.pt"))
    assert names == ["classifier_population/ab94189200a55886.pt",
                     "classifier_population/adfc894c00d918b9.pt",
                     "rnn_population/7a04cf0f2be6d980.pt",
                     "rnn_population/8b065ba4530102a1.pt"]


def test_classifier_population_flags_and_retries(tmp_path):
    kw = dict(leaks=(0.1,), n_seeds=1, hidden_sizes=(4,), n_steps=3, n_timesteps=8,
              n_probes=10, data_home=tmp_path)
    with pytest.warns(UserWarning, match=r"1 members did not reach min_score=0.8 after 0 "
                                         r"retries: #0 \(leak 0.1/gru/seed 0: accuracy="):
        once = make_classifier_population(**kw)
    assert once.learned.dtype == bool and list(once.learned) == [False]
    with pytest.warns(UserWarning, match="after 1 retries"):
        retried = make_classifier_population(**kw, min_score=1.01, max_retries=1)
    assert list(retried.learned) == [False]
    # A retry draws another seed, and retries are part of the cache key.
    sa, sb = once.models[0].state_dict(), retried.models[0].state_dict()
    assert not all(torch.equal(sa[k], sb[k]) for k in sa)
    records = [torch.load(p, weights_only=True)
               for p in sorted((tmp_path / "classifier_population").glob("*.pt"))]
    assert sorted(r["attempts"] for r in records) == [0, 1]
    ok = make_classifier_population(**kw, min_score=0.0, max_retries=1)
    assert ok.learned.all()
