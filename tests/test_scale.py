"""Training whose cost per step does not grow with the population, and targets streamed
member by member (skdynamo._net, families' record_targets)."""

import weakref

import numpy as np
import pytest
import torch

from skdynamo._net import (EPOCH_STEPS, MIN_EPOCH_STEPS, VALID_PAIRS, PairDataset,
                           PairSampler, held_out_pairs, training_plan)
from skdynamo.families import RecurrentFamily
from skdynamo.nn import DynamoModule

from conftest import tiny_embedder


@pytest.mark.parametrize("n_models", [3, 27, 100, 300, 1000, 100_000])
def test_step_and_epoch_do_not_grow_with_the_population(n_models):
    per_step, probes, steps = training_plan(n_models, 205, 256)
    assert per_step * probes <= 256
    assert steps <= EPOCH_STEPS
    if n_models <= 256:
        assert per_step == n_models         # every model in every step
    else:
        assert (per_step, probes) == (256, 1)


def test_small_population_keeps_the_whole_population_batches():
    # 27 models, 205 training probes, 256 pairs: 9 probes for all 27 models, 23 steps.
    assert training_plan(27, 205, 256) == (27, 9, 23)
    # A tiny population still gets MIN_EPOCH_STEPS steps per epoch.
    assert training_plan(3, 16, 256) == (3, 1, MIN_EPOCH_STEPS)


def test_sampler_covers_pairs_evenly_and_is_seeded():
    sampler = PairSampler(10, 7, 4, 3, steps=35, seed=0)
    index = np.array(list(sampler))
    assert len(index) == len(sampler) == 35 * 12
    models, probes = index // 7, index % 7
    # Each step: 4 distinct models x the same 3 distinct probes.
    for step in index.reshape(35, 12):
        m, p = step // 7, step % 7
        assert len(set(m)) == 4 and len(set(p)) == 3
        assert all(set(p[m == mm]) == set(p) for mm in set(m))
    # Without replacement across steps: 35 steps use each model 14 times, each probe 15.
    np.testing.assert_array_equal(np.bincount(models, minlength=10) // 3, 14)
    np.testing.assert_array_equal(np.bincount(probes, minlength=7) // 4, 15)
    again = np.array(list(PairSampler(10, 7, 4, 3, steps=35, seed=0)))
    other = np.array(list(PairSampler(10, 7, 4, 3, steps=35, seed=1)))
    np.testing.assert_array_equal(index, again)
    assert not np.array_equal(index, other)


def test_all_models_in_every_step_when_they_fit():
    index = np.array(list(PairSampler(5, 20, 5, 4, steps=6, seed=0))).reshape(6, 20)
    for step in index:
        assert sorted(set(step // 20)) == list(range(5))


def test_held_out_pairs_are_bounded_and_cover_small_populations():
    rng = np.random.RandomState(0)
    valid = np.arange(40, 51)
    small = held_out_pairs(27, valid, rng)
    assert len(small) == 27 * 11
    for n in (1000, 10_000):
        pairs = held_out_pairs(n, valid, rng)
        assert len(pairs) <= VALID_PAIRS
        assert set(pairs[:, 1]) <= set(valid)
    assert len(set(held_out_pairs(1000, valid, rng)[:, 0])) == 1000  # every model kept


def test_pair_forward_matches_the_whole_population_forward():
    torch.manual_seed(0)
    params = dict(kind="rnn", n_inputs=3, n_outputs=2, n_components=2, hidden_size=8)
    module = DynamoModule(params, n_models=4, n_targets=3,
                          init_embeddings=torch.randn(4, 2))
    with torch.no_grad():
        module.map_weight.normal_()
        module.map_bias.normal_()
    x = torch.randn(5, 6, 3)
    y_all, h_all = module(x)                      # (4, 5, ...)
    models = torch.tensor([2, 0, 3, 3, 1])
    y, h = module(x, models)                      # (5, 1, ...)
    assert y.shape == (5, 1, 6, 2) and h.shape == (5, 1, 6, 3)
    for r, m in enumerate(models):
        torch.testing.assert_close(y[r, 0], y_all[m, r])
        torch.testing.assert_close(h[r, 0], h_all[m, r])


def test_pair_dataset_batches_hold_each_pairs_recording():
    probes = np.random.RandomState(0).rand(6, 4, 3).astype(np.float32)
    outputs = np.random.RandomState(1).rand(3, 6, 4, 2).astype(np.float32)
    hidden = np.random.RandomState(2).rand(3, 6, 4, 5).astype(np.float32)
    ds = PairDataset(probes, outputs, hidden, probe_ids=[1, 4, 5])
    assert len(ds) == 9
    X, (y, h) = ds.__getitems__([0, 4, 8])        # pairs (0, 1), (1, 4), (2, 5)
    np.testing.assert_array_equal(X["models"].numpy(), [0, 1, 2])
    np.testing.assert_array_equal(X["x"].numpy(), probes[[1, 4, 5]])
    np.testing.assert_array_equal(y[:, 0].numpy(), outputs[[0, 1, 2], [1, 4, 5]])
    np.testing.assert_array_equal(h[:, 0].numpy(), hidden[[0, 1, 2], [1, 4, 5]])
    fixed = ds.with_pairs([(2, 0), (0, 3)])
    assert len(fixed) == 2 and fixed.hidden is ds.hidden and len(ds) == 9
    np.testing.assert_array_equal(fixed.__getitems__([1])[0]["x"].numpy(), probes[[3]])


def test_fit_samples_models_when_they_do_not_fit_in_a_step(tiny_models, tiny_probes):
    models = list(tiny_models) * 2                # 6 listings of 3 distinct networks
    emb = tiny_embedder(tiny_probes, batch_size=2, max_epochs=4).fit(models)
    counts = emb.history_[:, "train_batch_count"]
    sizes = {b["train_batch_size"] for ep in emb.history_[:, "batches"] for b in ep
             if "train_batch_size" in b}
    assert sizes == {2} and max(counts) <= EPOCH_STEPS
    assert np.all(np.isfinite(emb.embeddings_)) and emb.embeddings_.shape == (6, 2)
    assert np.all(np.isfinite(emb.emulation_scores_.output_r2))


def test_recordings_are_reduced_as_they_are_made(tiny_models, tiny_probes):
    alive = weakref.WeakSet()
    seen = []

    class Watching(RecurrentFamily):
        def record_member(self, index, model, probes):
            t = super().record_member(index, model, probes)
            alive.add(t)
            return t

        def reduce_member(self, recording, train_idx):
            seen.append(len(alive))
            return super().reduce_member(recording, train_idx)

    rec = Watching(n_pcs=4).record_targets(list(tiny_models) * 1, tiny_probes,
                                           np.arange(8))
    assert seen == [1, 1, 1]                      # never two raw recordings at once
    assert len(alive) == 0
    assert rec.hidden.dtype == np.float32 and rec.outputs.dtype == np.float32
    assert rec.hidden.shape == (3, 12, 10, 4)
    # The same targets as reducing recordings held all at once.
    family = RecurrentFamily(n_pcs=4)
    full = family.targets(family.record(tiny_models, tiny_probes), tiny_probes, np.arange(8))
    np.testing.assert_array_equal(rec.hidden, full.hidden)
    np.testing.assert_array_equal(rec.mask, full.mask)
