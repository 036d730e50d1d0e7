"""Probe augmentation (skdynamo._augment, DynamoEmbedder(probe_augmentation=...)): the
augmented probes, their seeding, the held-out split of original probes, bad values, and
the three families."""

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

import skdynamo._embedder as embedder_module
from skdynamo import DynamoEmbedder, Trajectories
from skdynamo._augment import augment_images, augment_sequences, n_augmented
from skdynamo.families import ConvolutionalFamily, RecurrentFamily, TransformerFamily
from skdynamo.datasets import CausalTransformer, ConvNetwork, make_random_probes

from conftest import tiny_embedder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _rng(seed=0):
    return np.random.RandomState(seed)


@pytest.fixture
def pulses():
    from skdynamo.datasets import make_pulses
    return make_pulses(40, 20, 3, random_state=0)[0]


def test_sequences_shape_seeding_and_input_untouched(pulses):
    before = pulses.copy()
    a = augment_sequences(pulses, 30, _rng(0))
    assert a.shape == (30, 20, 3) and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(pulses, before)
    np.testing.assert_array_equal(a, augment_sequences(pulses, 30, _rng(0)))
    assert not np.array_equal(a, augment_sequences(pulses, 30, _rng(1)))
    assert augment_sequences(pulses, 0, _rng(0)).shape == (0, 20, 3)
    # None of them is a plain copy of a probe.
    dist = np.abs(a[:, None] - pulses[None]).max(axis=(2, 3)).min(axis=1)
    assert np.all(dist > 0)


def test_sequences_include_denser_versions(pulses):
    """A quarter are two probes superposed: more pulses than any probe on average."""
    a = augment_sequences(pulses, 400, _rng(0))
    events = lambda x: (np.abs(x) > 0.5).sum(axis=(1, 2))  # noqa: E731
    assert np.quantile(events(a), 0.9) > np.quantile(events(pulses), 0.9)
    assert events(a).max() > events(pulses).max()


def test_images_shape_seeding_and_input_untouched():
    images = _rng(3).rand(10, 2, 8, 8).astype(np.float32)
    before = images.copy()
    a = augment_images(images, 12, _rng(0))
    assert a.shape == (12, 2, 8, 8) and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(images, before)
    np.testing.assert_array_equal(a, augment_images(images, 12, _rng(0)))
    assert not np.array_equal(a, augment_images(images, 12, _rng(1)))


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_augmenters_refuse_a_bad_count(pulses, bad):
    with pytest.raises(ValueError, match="non-negative int"):
        augment_sequences(pulses, bad, _rng())


def test_n_augmented_auto_counts_and_recordings(tiny_models):
    rnn = RecurrentFamily()
    assert n_augmented("auto", 10, tiny_models, rnn) == 10
    assert n_augmented("auto", 10, tiny_models, ConvolutionalFamily()) == 0
    assert n_augmented(0, 10, tiny_models, rnn) == 0
    assert n_augmented(7, 10, tiny_models, rnn) == 7
    rec = Trajectories(np.zeros((12, 10, 4), np.float32), np.zeros((12, 10, 3), np.float32))
    assert n_augmented("auto", 10, [*tiny_models, rec], rnn) == 0
    with pytest.raises(ValueError, match="model 3 is a Trajectories"):
        n_augmented(5, 10, [*tiny_models, rec], rnn)


@pytest.mark.parametrize("bad", [-1, 2.5, "more", None])
def test_bad_values_name_the_parameter(tiny_fitted, tiny_models, bad):
    before = tiny_fitted.embeddings_.copy()
    tiny_fitted.set_params(probe_augmentation=bad)
    with pytest.raises(InvalidParameterError, match="probe_augmentation"):
        tiny_fitted.fit(tiny_models)
    np.testing.assert_array_equal(tiny_fitted.embeddings_, before)


def test_recorded_member_with_augmentation_is_refused(tiny_fitted, tiny_models, tiny_probes):
    rec = DynamoEmbedder(probe_augmentation=0).set_params(
        **{k: v for k, v in tiny_fitted.get_params().items() if k != "probe_augmentation"})
    recording = rec._make_family(type(tiny_fitted.family_)).record(tiny_models[:1],
                                                                    tiny_probes)[0]
    before = tiny_fitted.embeddings_.copy()
    tiny_fitted.set_params(probe_augmentation=4)
    with pytest.raises(ValueError, match="model 3 is a Trajectories"):
        tiny_fitted.fit([*tiny_models, recording])
    np.testing.assert_array_equal(tiny_fitted.embeddings_, before)
    # 'auto' skips augmentation for such a population.
    tiny_fitted.set_params(probe_augmentation="auto").fit([*tiny_models, recording])
    assert tiny_fitted.n_models_ == 4


class _Spy:
    """Records what the fit recorded, trained on and validated on (wraps the real
    objects): ``datasets`` holds ``(training probes, held-out probes)`` per fit, the
    probes of the training pairs and of the held-out pair sample."""

    def __init__(self, monkeypatch, family_cls):
        self.recorded, self.datasets = [], []
        real_record = family_cls.record_targets
        real_dataset = embedder_module.PairDataset
        real_pairs = embedder_module.held_out_pairs

        def record(family, models, probes, *args, **kwargs):
            self.recorded.append(np.array(probes))
            return real_record(family, models, probes, *args, **kwargs)

        def dataset(probes, outputs, hidden, **kwargs):
            ds = real_dataset(probes, outputs, hidden, **kwargs)
            self.datasets.append(ds.probes[ds.probe_ids].cpu().numpy())
            self._probes = ds.probes.cpu().numpy()
            return ds

        def pairs(*args):
            chosen = real_pairs(*args)
            self.datasets.append(self._probes[np.unique(np.asarray(chosen)[:, 1])])
            return chosen

        monkeypatch.setattr(family_cls, "record_targets", record)
        monkeypatch.setattr(embedder_module, "PairDataset", dataset)
        monkeypatch.setattr(embedder_module, "held_out_pairs", pairs)


def test_held_out_split_is_made_of_original_probes(monkeypatch, tiny_models, tiny_probes):
    spy = _Spy(monkeypatch, RecurrentFamily)
    emb = tiny_embedder(tiny_probes, probe_augmentation=20).fit(tiny_models)
    n = len(tiny_probes)
    recorded = spy.recorded[0]
    assert recorded.shape == (n + 20, *tiny_probes.shape[1:])
    np.testing.assert_array_equal(recorded[:n], tiny_probes)
    train, valid = spy.datasets
    assert len(train) == len(emb._train_idx) + 20
    np.testing.assert_array_equal(valid, tiny_probes[emb._valid_idx])
    np.testing.assert_array_equal(train[:len(emb._train_idx)], tiny_probes[emb._train_idx])
    # Augmented probes are made from training probes and are not kept.
    np.testing.assert_array_equal(emb.probe_inputs_, tiny_probes)
    assert set(emb._valid_idx).isdisjoint(emb._train_idx)
    assert np.all(np.isfinite(emb.emulation_scores_.output_r2))


def test_auto_augments_recurrent_populations(monkeypatch, tiny_models, tiny_probes):
    spy = _Spy(monkeypatch, RecurrentFamily)
    emb = tiny_embedder(tiny_probes, probe_augmentation="auto").fit(tiny_models)
    assert len(spy.recorded[0]) == len(tiny_probes) + len(emb._train_idx)
    tiny_embedder(tiny_probes).fit(tiny_models)  # the default: none
    assert len(spy.recorded[-1]) == len(tiny_probes)


def test_augmentation_is_seeded_and_zero_is_off(tiny_models, tiny_probes):
    fit = lambda **kw: tiny_embedder(tiny_probes, **kw).fit(tiny_models).embeddings_  # noqa: E731
    np.testing.assert_array_equal(fit(probe_augmentation=8), fit(probe_augmentation=8))
    assert not np.allclose(fit(probe_augmentation=8), fit(probe_augmentation=0))
    assert not np.allclose(fit(probe_augmentation=8), fit(probe_augmentation=8,
                                                          random_state=1))


def test_cnn_family_augments_images(monkeypatch):
    spy = _Spy(monkeypatch, ConvolutionalFamily)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnns = [ConvNetwork(width=4, depth=d).eval() for d in (2, 3)]
    images = _rng(0).rand(16, 1, 8, 8).astype(np.float32)
    emb = DynamoEmbedder(probe_inputs=images, hidden_size=8, max_epochs=2,
                         probe_augmentation=6, random_state=0).fit(cnns)
    assert spy.recorded[0].shape == (22, 1, 8, 8)
    assert len(spy.datasets[0]) == len(emb._train_idx) + 6
    np.testing.assert_array_equal(spy.datasets[1], images[emb._valid_idx])
    assert emb.transform(cnns).shape == (2, 2)


def test_transformer_family_augments_sequences(monkeypatch):
    spy = _Spy(monkeypatch, TransformerFamily)
    probes = make_random_probes(16, 12, 3, random_state=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tfs = [CausalTransformer(3, 3, d_model=8, n_layers=n, n_heads=2).eval() for n in (1, 2)]
    emb = DynamoEmbedder(probe_inputs=probes, hidden_size=8, max_epochs=2, batch_size=32,
                         probe_augmentation=5, random_state=0).fit(tfs)
    assert type(emb.family_) is TransformerFamily
    assert spy.recorded[0].shape == (21, 12, 3)
    assert len(spy.datasets[0]) == len(emb._train_idx) + 5
    np.testing.assert_array_equal(spy.datasets[1], probes[emb._valid_idx])
    # 'auto' augments only the families it was measured on (recurrent).
    DynamoEmbedder(probe_inputs=probes, hidden_size=8, max_epochs=1, batch_size=32,
                   probe_augmentation="auto", random_state=0).fit(tfs)
    assert spy.recorded[-1].shape == (16, 12, 3)
