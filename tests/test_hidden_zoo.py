"""The hidden-head population: flip-flops, half of them trained with a head later removed."""

import numpy as np
import pytest
import torch
from sklearn.utils import Bunch

import skdynamo.datasets._hidden_zoo as hidden_zoo
from skdynamo.datasets import (RecurrentNetwork, make_flipflop, make_hidden_head_population,
                               make_task)

TINY = dict(cells=("rnn", "gru"), n_seeds=1, hidden_size=8, n_steps=15, n_timesteps=12,
            n_probes=10, min_score=-np.inf, max_retries=0)


def test_contents(tmp_path):
    pop = make_hidden_head_population(**TINY, data_home=tmp_path)
    assert isinstance(pop, Bunch)
    assert len(pop.models) == 4
    assert list(pop.group) == ["plain", "plain", "hidden_head", "hidden_head"]
    np.testing.assert_array_equal(pop.hidden_head, [False, False, True, True])
    assert list(pop.cell) == ["rnn", "gru", "rnn", "gru"]
    assert list(pop.seed) == [0, 0, 0, 0] and list(pop.hidden_size) == [8] * 4
    for name in ("score", "head_score", "decoding_score", "learned"):
        assert pop[name].shape == (4,)
    assert np.isnan(pop.head_score[:2]).all() and np.isfinite(pop.head_score[2:]).all()
    assert np.isfinite(pop.decoding_score).all() and np.isfinite(pop.score).all()
    assert pop.learned.all()
    assert pop.probe_inputs.shape == (10, 12, 3) and pop.probe_inputs.dtype == np.float32
    assert all(isinstance(m, RecurrentNetwork) and not m.training for m in pop.models)
    assert "integration" in pop.DESCR and "4 3-bit flip-flop networks" in pop.DESCR


def test_removed_head_members_output_only_the_flipflop(tmp_path):
    pop = make_hidden_head_population(**TINY, data_home=tmp_path)
    x, y = make_flipflop(5, 12, 3, random_state=0)
    for plain, with_head in ((0, 2), (1, 3)):
        a, b = pop.models[plain], pop.models[with_head]
        # Same architecture, same parameters by name and shape: nothing of the head is left.
        assert {k: v.shape for k, v in a.state_dict().items()} == \
               {k: v.shape for k, v in b.state_dict().items()}
        assert b.readout.out_features == 3
        assert sum(p.numel() for p in b.parameters()) == sum(p.numel() for p in a.parameters())
        with torch.no_grad():
            out = b(torch.from_numpy(x)).numpy()
        assert out.shape == y.shape                      # flip-flop outputs only
        # The hidden head changed the training: the weights differ.
        assert not all(torch.equal(a.state_dict()[k], b.state_dict()[k])
                       for k in a.state_dict())


def test_plain_and_hidden_head_partners_start_alike(tmp_path):
    # Without training steps a member and its hidden-head partner are the same network.
    pop = make_hidden_head_population(**{**TINY, "n_steps": 0}, data_home=tmp_path)
    for plain, with_head in ((0, 2), (1, 3)):
        sa, sb = pop.models[plain].state_dict(), pop.models[with_head].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_hidden_computation_survives_in_hidden_states(tmp_path):
    # A little training: the removed head's task is better decoded from the hidden states
    # of the member that computed it, while both outputs follow the flip-flop.
    pop = make_hidden_head_population(cells=("gru",), n_seeds=1, hidden_size=16, n_steps=250,
                                      n_timesteps=30, n_probes=8, min_score=0.0,
                                      max_retries=0, data_home=tmp_path)
    assert (pop.score > 0.6).all()
    assert pop.head_score[1] > 0.6
    assert pop.decoding_score[1] > pop.decoding_score[0] + 0.1


def test_population_is_cached(tmp_path, monkeypatch):
    pop = make_hidden_head_population(**TINY, data_home=tmp_path)
    files = sorted((tmp_path / "hidden_head_population").glob("*.pt"))
    assert len(files) == 4
    mtimes = [f.stat().st_mtime_ns for f in files]

    def no_training(*args, **kwargs):
        raise AssertionError("make_hidden_head_population retrained a cached member")

    monkeypatch.setattr(hidden_zoo, "_train_joint", no_training)
    again = make_hidden_head_population(**TINY, data_home=tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    np.testing.assert_array_equal(again.score, pop.score)
    np.testing.assert_array_equal(again.head_score, pop.head_score)
    np.testing.assert_array_equal(again.probe_inputs, pop.probe_inputs)
    for a, b in zip(pop.models, again.models):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # Other settings (another head task, more seeds) are other cache entries.
    for kw in ({"hidden_task": "delay"}, {"n_seeds": 2}, {"head_weight": 2.0}):
        with pytest.raises(OSError, match="not cached"):
            make_hidden_head_population(**{**TINY, **kw}, data_home=tmp_path,
                                        download_if_missing=False)


def test_env_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDYNAMO_DATA", str(tmp_path))
    make_hidden_head_population(**{**TINY, "cells": ("lstm",)})
    assert len(list((tmp_path / "hidden_head_population").glob("*.pt"))) == 2


def test_reports_members_that_did_not_learn(tmp_path):
    with pytest.warns(UserWarning, match="did not reach min_score"):
        pop = make_hidden_head_population(**{**TINY, "cells": ("rnn",), "min_score": 1.01},
                                          data_home=tmp_path)
    assert list(pop.learned) == [False, False]


@pytest.mark.parametrize("kw, match", [
    ({"cells": ()}, "non-empty"),
    ({"n_seeds": 0}, "n_seeds"),
    ({"cells": ("rnn", "transformer")}, "Unknown cells"),
    ({"hidden_task": "flipflop"}, "hidden_task"),
    ({"hidden_task": "sorting"}, "hidden_task"),
    ({"head_weight": 0.0}, "head_weight"),
    ({"task": "sorting"}, "task must be"),
    ({"task": "delay", "hidden_task": "delay"}, "hidden_task"),
    ({"hidden_task": ("delay", "delay")}, "distinct"),
    ({"hidden_task": ()}, "hidden_task"),
    ({"hidden_task": ("delay", "running_max"), "task_params": {"leak": 0.1}}, "task_params"),
])
def test_bad_arguments(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make_hidden_head_population(**{**TINY, **kw}, data_home=tmp_path)
    assert not list(tmp_path.rglob("*.pt"))


def test_several_hidden_tasks(tmp_path):
    """One group per hidden task, each trained with its own head on the main task."""
    pop = make_hidden_head_population(
        cells=("gru",), n_seeds=1, hidden_size=8, n_steps=30, n_timesteps=12, n_probes=10,
        task="leaky_integration", hidden_task=("delay", "running_max"),
        task_params={"delay": {"delay": 5}}, min_score=-1e9, data_home=tmp_path)
    assert list(pop.group) == ["plain", "delay", "running_max"]
    assert list(pop.head_task) == ["", "delay", "running_max"]
    np.testing.assert_array_equal(pop.hidden_head, [False, True, True])
    assert np.isnan(pop.head_score[0]) and np.isfinite(pop.head_score[1:]).all()
    assert "'leaky_integration'" in pop.DESCR and "'running_max'" in pop.DESCR
    # The probes are the main task's inputs; the members output that task's width.
    x, _ = make_task("leaky_integration", 10, 12, 3, random_state=0)
    np.testing.assert_array_equal(pop.probe_inputs, x)
    a, b, c = (m.state_dict() for m in pop.models)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(b[k], c[k]) for k in b)
    # The head's parameters (delay=5) are part of what is cached.
    with pytest.raises(OSError, match="not cached"):
        make_hidden_head_population(
            cells=("gru",), n_seeds=1, hidden_size=8, n_steps=30, n_timesteps=12,
            n_probes=10, task="leaky_integration", hidden_task=("delay", "running_max"),
            min_score=-1e9, data_home=tmp_path, download_if_missing=False)
