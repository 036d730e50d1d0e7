"""The Transformer family (skdynamo.families._transformer): recognition, residual-stream
recording, the causality check, mixed RNN + Transformer populations, persistence, the zoo."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from skdynamo import DynamoEmbedder, load_weights, save_weights
from skdynamo.baselines import LinearCKAEmbedding, OutputSpaceEmbedding
from skdynamo.datasets import (CausalTransformer, RecurrentNetwork, make_random_probes,
                               make_transformer_population)
from skdynamo.families import (FAMILIES, RecurrentFamily, TransformerFamily, family_for_probes,
                               family_of, resolve_family)
from skdynamo.families._transformer import record_transformer, transformer_blocks
from skdynamo.utils.validation import check_probe_inputs

PROBES = make_random_probes(16, 12, 3, random_state=0)


def _nets():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tfs = [CausalTransformer(3, 3, d_model=8, n_layers=n, n_heads=2).eval() for n in (1, 2)]
        rnns = [RecurrentNetwork(3, 3, hidden_size=8, cell=c).eval() for c in ("gru", "lstm")]
    return tfs, rnns


TFS, RNNS = _nets()


class NonCausal(nn.Module):
    """A Transformer block without a causal mask: every position sees the whole sequence."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.readout = nn.Linear(8, 3)

    def forward(self, x):
        return self.readout(self.block(self.embed(x)))


class SequenceFirst(nn.Module):
    """A causal Transformer written sequence-first (batch_first=False) with user names."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 8)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0),
                                             num_layers=2, enable_nested_tensor=False)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        h = self.encoder(self.inp(x).transpose(0, 1), mask=mask, is_causal=True)
        return self.out(h.transpose(0, 1))


@pytest.fixture(scope="module")
def mixed():
    """A DynamoEmbedder fitted on two Transformers, a GRU and an LSTM (do not mutate)."""
    return DynamoEmbedder(probe_inputs=PROBES, hidden_size=8, max_epochs=8, batch_size=32,
                          transform_max_iter=5, random_state=0).fit(TFS + RNNS)


def test_recognition_and_resolution():
    assert list(FAMILIES) == ["cnn", "transformer", "rnn"]
    assert TransformerFamily.is_member(TFS[0]) and TransformerFamily.is_member(SequenceFirst())
    assert not TransformerFamily.is_member(RNNS[0]) and RecurrentFamily.is_member(RNNS[0])
    for meta_model, probes in (("auto", PROBES), ("auto", None), ("rnn", PROBES),
                               ("transformer", None)):
        assert resolve_family(meta_model, probes, RNNS + TFS) is TransformerFamily
    assert resolve_family("auto", PROBES, RNNS) is RecurrentFamily
    assert family_for_probes(PROBES) is RecurrentFamily
    assert family_for_probes(PROBES, TFS) is TransformerFamily
    assert check_probe_inputs(PROBES, TFS + RNNS).shape == PROBES.shape
    with pytest.raises(ValueError, match="Model 0 .*width 3.*5 features"):
        check_probe_inputs(np.zeros((4, 6, 5)), TFS)


def test_records_the_residual_stream_after_each_block():
    net = TFS[1]
    rec = record_transformer(net, PROBES)
    assert rec.hidden.shape == (16, 12, 2 * 8) and rec.outputs.shape == (16, 12, 3)
    with torch.no_grad():   # the last block's stream is what the readout reads
        last = torch.from_numpy(rec.hidden[..., 8:])
        np.testing.assert_allclose(net.readout(net.norm(last)).numpy(), rec.outputs, atol=1e-5)
        np.testing.assert_allclose(net(torch.from_numpy(PROBES)).numpy(), rec.outputs, atol=1e-5)
    assert record_transformer(net, PROBES, layers="blocks.0").hidden.shape == (16, 12, 8)
    assert len(transformer_blocks(net, [nn.TransformerEncoderLayer, "blocks.1"])) == 2
    with pytest.raises(ValueError, match="names no block"):
        transformer_blocks(net, "nope")
    seq_first = SequenceFirst().eval()   # sequence-first blocks are recorded batch-first
    rec = record_transformer(seq_first, PROBES)
    assert rec.hidden.shape == (16, 12, 16)
    assert net.training is False and all(p.grad is None for p in net.parameters())


def test_non_causal_model_is_refused_naming_it():
    models = RNNS + [TFS[0], NonCausal().eval()]
    with pytest.raises(ValueError, match=r"Model 3 \(NonCausal\) is not causal"):
        DynamoEmbedder(probe_inputs=PROBES, max_epochs=1).fit(models)
    # causal through nn.TransformerEncoder's mask: accepted
    assert TransformerFamily().check_probes(PROBES, RNNS + [SequenceFirst().eval()]).shape == \
        PROBES.shape


def test_mixed_population_embeds_together(mixed):
    assert mixed.family_.name == "transformer" and mixed.family_.n_steps == 12
    assert mixed.embeddings_.shape == (4, 2)
    scores = mixed.emulation_scores_
    assert np.all(np.isfinite(scores.output_r2)) and np.all(np.isfinite(scores.hidden_r2))
    assert mixed.transform(TFS[:1] + RNNS[:1]).shape == (2, 2)
    assert mixed.record(TFS[:1])[0].hidden.shape == (16, 12, 8)


def test_baselines_take_transformer_members():
    models = TFS + RNNS
    assert OutputSpaceEmbedding(probe_inputs=PROBES).fit_transform(models).shape == (4, 2)
    cka = LinearCKAEmbedding(probe_inputs=PROBES).fit(models)
    assert cka.embeddings_.shape == (4, 2) and np.all(np.diag(cka.distances_) == 0)


def test_persistence_model_at_and_transform(mixed, tmp_path):
    z = mixed.transform(TFS)
    again = pickle.loads(pickle.dumps(mixed))
    np.testing.assert_allclose(again.transform(TFS), z)
    path = tmp_path / "mixed.skdw"
    save_weights(mixed, path)
    loaded = load_weights(path)
    assert loaded.family_.name == "transformer"
    np.testing.assert_allclose(loaded.transform(TFS), z, atol=1e-6)
    net = loaded.model_at(z[0])
    with torch.no_grad():
        out = net(torch.from_numpy(PROBES))
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (16, 12, 3)
    assert type(family_of(mixed.meta_model_)) is RecurrentFamily   # baking is shared


def test_transformer_zoo_is_seeded_and_cached(tmp_path):
    kw = dict(tasks=("delay",), n_seeds=1, d_model=8, n_heads=2, n_layers=(1,), n_steps=15,
              n_timesteps=10, n_probes=8, min_score=-np.inf, max_retries=0, data_home=tmp_path)
    pop = make_transformer_population(**kw)
    assert isinstance(pop.models[0], CausalTransformer) and pop.probe_inputs.shape == (8, 10, 3)
    assert list(pop.task) == ["delay"] and pop.learned.all() and list(pop.n_layers) == [1]
    cached = make_transformer_population(**kw, download_if_missing=False)
    for a, b in zip(pop.models[0].parameters(), cached.models[0].parameters()):
        assert torch.equal(a, b)
