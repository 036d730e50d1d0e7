"""Model families (skdynamo.families): resolution, the protocol, and baking (a standalone
module equals the meta-model at its embedding)."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_embedder

from skdynamo import StandaloneCNN, StandaloneRNN
from skdynamo._standalone import bake
from skdynamo.datasets import RecurrentNetwork
from skdynamo.datasets._cnn_zoo import ConvNetwork
from skdynamo.families import (DEFAULT_FAMILY, FAMILIES, ConvolutionalFamily, ModelFamily,
                               RecurrentFamily, family_of, resolve_family)
from skdynamo.families._convolutional import LayerTrajectories
from skdynamo.nn import ConditionedCNN, ConditionedRNN, EmulatedNetwork

RNN, CNN = RecurrentNetwork(3, 3, hidden_size=4), ConvNetwork(width=4, depth=2)
SEQ, IMG = np.zeros((4, 5, 3)), np.zeros((4, 1, 8, 8))


def test_every_family_implements_the_protocol():
    assert DEFAULT_FAMILY is RecurrentFamily
    assert list(FAMILIES) == ["cnn", "transformer", "rnn"]
    for name, family in FAMILIES.items():
        assert issubclass(family, ModelFamily) and family.name == name
        # a family extending another (transformer -> rnn) shares its meta-model
        assert FAMILIES[family.meta_class.kind].meta_class is family.meta_class
        assert not getattr(family, "__abstractmethods__", None)
        assert family.standalone_class in (StandaloneRNN, StandaloneCNN)
    with pytest.raises(TypeError):
        ModelFamily()                                   # abstract


@pytest.mark.parametrize("meta_model, probes, models, expected", [
    ("auto", SEQ, [RNN], RecurrentFamily),
    ("auto", IMG, [CNN], ConvolutionalFamily),
    ("auto", None, [RNN], RecurrentFamily),
    ("auto", None, [CNN, CNN], ConvolutionalFamily),
    ("auto", None, [LayerTrajectories([np.zeros((4, 2))], np.zeros((4, 3)))],
     ConvolutionalFamily),
    ("cnn", None, [RNN], ConvolutionalFamily),
    ("rnn", IMG, [CNN], RecurrentFamily),
])
def test_resolution_follows_meta_model_then_the_probes(meta_model, probes, models,
                                                       expected):
    assert resolve_family(meta_model, probes, models) is expected


def test_probes_of_another_family_name_the_member():
    with pytest.raises(ValueError, match=r"Model 1 \(ConvNetwork\) is convolutional"):
        resolve_family("auto", SEQ, [RNN, CNN])
    with pytest.raises(ValueError, match=r"model 0 \(RecurrentNetwork\) is recurrent"):
        resolve_family("auto", IMG, [RNN])


def test_the_fitted_embedder_holds_its_family(tiny_fitted, tiny_models):
    family = tiny_fitted.family_
    assert isinstance(family, RecurrentFamily) and family.n_steps == 10
    recs = tiny_fitted.record(tiny_models)
    assert [r.hidden.shape for r in recs] == [(12, 10, 8)] * 3
    assert family_of(tiny_fitted.meta_model_).name == "rnn"


@pytest.mark.parametrize("conditioning", ["bilinear", "concat"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_baked_rnn_equals_the_meta_model_at_its_embedding(cell, conditioning):
    torch.manual_seed(0)
    meta = ConditionedRNN(3, 2, 2, hidden_size=6, cell=cell, conditioning=conditioning).eval()
    if conditioning == "bilinear":  # a readout that depends on theta (it starts at zero)
        torch.nn.init.normal_(meta.readout_theta.weight)
    z = np.array([0.4, -1.3])
    net = bake(meta, z)
    assert isinstance(net, StandaloneRNN) and not net.training
    assert all(not p.requires_grad for p in net.parameters())
    x = torch.randn(5, 7, 3)
    with torch.no_grad():
        want_g, want_y = EmulatedNetwork(meta, z).trajectories(x)
        got_g, got_y = net.trajectories(x)
    torch.testing.assert_close(got_y, want_y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_g, want_g, atol=1e-5, rtol=1e-5)
    again = StandaloneRNN(**net.config)
    again.load_state_dict(net.state_dict())
    torch.testing.assert_close(again(x), got_y)


@pytest.mark.parametrize("grid", [None, (2, 2)])
def test_baked_cnn_equals_the_meta_model_at_its_embedding(grid):
    torch.manual_seed(0)
    meta = ConditionedCNN(1, 4, 2, n_steps=3, image_size=(8, 8), hidden_size=5,
                          grid=grid).eval()
    z = np.array([-0.7, 0.2])
    net = bake(meta, z)
    assert isinstance(net, StandaloneCNN) and net.input_shape == (1, 8, 8)
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        want_s, want_y = EmulatedNetwork(meta, z).trajectories(x)
        got_s, got_y = net.trajectories(x)
    torch.testing.assert_close(got_y, want_y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_s, want_s, atol=1e-5, rtol=1e-5)
    again = StandaloneCNN(**net.config)
    again.load_state_dict(net.state_dict())
    torch.testing.assert_close(again(x), got_y)


def test_family_of_an_unknown_meta_model():
    with pytest.raises(TypeError, match="not the meta-model of a known family"):
        family_of(nn.Linear(2, 2))


def test_conditioned_rnn_refuses_an_unknown_conditioning():
    with pytest.raises(ValueError, match="conditioning must be one of"):
        ConditionedRNN(3, 2, 2, conditioning="film")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("conditioning", ["bilinear", "concat"])
def test_the_embedder_builds_the_conditioning_it_is_given(tiny_probes, tiny_models,
                                                           conditioning):
    emb = tiny_embedder(tiny_probes, conditioning=conditioning).fit(tiny_models)
    assert emb.meta_model_.conditioning == conditioning
    # The meta-model at an embedding is the baked plain network, either way.
    x = torch.as_tensor(tiny_probes[:4], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(emb.model_at(emb.embeddings_[0])(x),
                                   bake(emb.meta_model_, emb.embeddings_[0])(x),
                                   atol=1e-5, rtol=1e-5)
