"""CNN populations: the digits zoo and layer-as-time recording."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import assert_state_equal, state_snapshot
from skdynamo import Trajectories
from skdynamo.families._convolutional import (LayerTrajectories, align_depths, cnn_layers,
                                              record_cnn, record_cnn_population)
from skdynamo.datasets._cnn_zoo import (CNN_VARIANTS, ConvNetwork, digits_variant_labels,
                                        load_digits_images, make_cnn_population)

ZOO_KW = dict(variants=("digits", "parity"), widths=(8,), depths=(2,), n_seeds=2, n_steps=300,
              n_probes=40, max_retries=2, min_accuracy=0.6)


@pytest.fixture(scope="module")
def cnn_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cnn_zoo")


@pytest.fixture(scope="module")
def cnn_population(cnn_home):
    return make_cnn_population(data_home=cnn_home, **ZOO_KW)


@pytest.fixture(scope="module")
def images():
    return load_digits_images()[1][:24]


def _net(width=8, depth=2, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvNetwork(width, depth).eval()


# --- the zoo -------------------------------------------------------------------------------

def test_population_contents(cnn_population):
    pop = cnn_population
    assert len(pop.models) == 4
    assert pop.variant.tolist() == ["digits", "digits", "parity", "parity"]
    assert pop.seed.tolist() == [0, 1, 0, 1]
    assert pop.width.tolist() == [8] * 4 and pop.depth.tolist() == [2] * 4
    assert pop.accuracy.shape == (4,) and pop.learned.all() and (pop.train_time > 0).all()
    # Well above chance (10% for digits, 50% for parity) in 300 steps, retries allowed.
    assert (pop.accuracy >= 0.6).all()
    assert pop.probe_inputs.shape == (40, 1, 8, 8) and pop.probe_inputs.dtype == np.float32
    assert pop.probe_inputs.min() >= 0 and pop.probe_inputs.max() <= 1
    np.testing.assert_array_equal(pop.probe_inputs, pop.test_images[:40])
    assert len(pop.test_digits) == len(pop.test_images)
    assert all(not m.training for m in pop.models)
    assert "digits" in pop.DESCR
    # Same output space: 10 logits for every variant; seeds give different members.
    out = [m(torch.from_numpy(pop.probe_inputs)).detach().numpy() for m in pop.models]
    assert all(o.shape == (40, 10) for o in out)
    assert not np.allclose(out[0], out[1])
    # The stored accuracy is the test accuracy on the variant's labels.
    y = digits_variant_labels(pop.test_digits, "parity")
    with torch.no_grad():
        pred = pop.models[2](torch.from_numpy(pop.test_images)).argmax(1).numpy()
    assert np.mean(pred == y) == pytest.approx(pop.accuracy[2])


def test_population_is_cached(cnn_population, cnn_home):
    assert len(list((cnn_home / "cnn_population").glob("*.pt"))) == 4
    again = make_cnn_population(data_home=cnn_home, download_if_missing=False, **ZOO_KW)
    for a, b in zip(cnn_population.models, again.models):
        assert_state_equal(b, state_snapshot(a))
    np.testing.assert_array_equal(again.accuracy, cnn_population.accuracy)


def test_population_flags_members_that_fail(tmp_path):
    kw = {**ZOO_KW, "variants": ("digits",), "n_seeds": 1, "n_steps": 3, "min_accuracy": 0.99,
          "max_retries": 0}
    with pytest.warns(UserWarning, match="did not reach min_accuracy"):
        pop = make_cnn_population(data_home=tmp_path, **kw)
    assert not pop.learned.any()


def test_population_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="Unknown variants"):
        make_cnn_population(variants=("digits", "nope"), data_home=tmp_path)
    with pytest.raises(OSError, match="download_if_missing"):
        make_cnn_population(data_home=tmp_path, download_if_missing=False, **ZOO_KW)


def test_variant_labels():
    d = np.arange(10)
    assert digits_variant_labels(d, "digits").tolist() == d.tolist()
    assert digits_variant_labels(d, "parity").tolist() == [0, 1] * 5
    perm = digits_variant_labels(d, "permuted")
    assert sorted(perm) == d.tolist() and not np.any(perm == d)
    assert set(CNN_VARIANTS) == {"digits", "parity", "permuted"}
    with pytest.raises(ValueError, match="Unknown variant"):
        digits_variant_labels(d, "odd")


# --- recording -----------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 3])
def test_record_auto(depth, images):
    net = _net(width=8, depth=depth)
    t = record_cnn(net, images)
    assert isinstance(t, Trajectories) and isinstance(t, LayerTrajectories)
    names = [f"features.{i}.act" for i in range(depth)] + ["head:input"]
    assert t.layer_names == names
    assert t.hidden.shape == (24, depth + 1, 8) and t.outputs.shape == (24, 10)
    with torch.no_grad():
        np.testing.assert_allclose(t.outputs, net(torch.from_numpy(images)).numpy(), atol=1e-5)
        first = net.features[0].act(net.features[0].conv(torch.from_numpy(images)))
    np.testing.assert_allclose(t.layers[0], first.mean(dim=(2, 3)).numpy(), atol=1e-5)


def test_record_spatial_grid(images):
    net = _net(width=8, depth=3)
    t = record_cnn(net, images, spatial=2)
    # Conv maps keep a 2x2 grid (8 * 4 units); the penultimate features are a vector.
    assert t.n_units.tolist() == [32, 32, 32, 8]
    assert t.hidden.shape == (24, 4, 32)
    np.testing.assert_array_equal(t.hidden[:, 3, 8:], 0)  # zero-padding convention
    with torch.no_grad():
        first = net.features[0].act(net.features[0].conv(torch.from_numpy(images)))
    grid = nn.functional.adaptive_avg_pool2d(first, 2).flatten(1).numpy()
    np.testing.assert_allclose(t.layers[0], grid, atol=1e-5)
    # Pooling the grid gives back the global average.
    pooled = record_cnn(net, images).layers[0]
    np.testing.assert_allclose(t.layers[0].reshape(24, 8, 4).mean(-1), pooled, atol=1e-5)
    assert record_cnn(net, images, spatial=(1, 3)).n_units[0] == 24


def test_record_by_name_and_type(images):
    net = _net(width=8, depth=2)
    t = record_cnn(net, images, layers=nn.Conv2d)
    assert t.layer_names == ["features.0.conv", "features.1.conv"]
    # Steps follow the forward pass, not the order in which layers are listed.
    t = record_cnn(net, images, layers=["head", "features.1", nn.ReLU])
    assert t.layer_names == ["features.0.act", "features.1.act", "features.1", "head"]
    assert t.n_units.tolist() == [8, 8, 8, 10]
    np.testing.assert_allclose(t.layers[-1], t.outputs, atol=1e-6)
    assert t.hidden.shape == (24, 4, 10)
    np.testing.assert_array_equal(t.hidden[:, 0, 8:], 0)
    assert [n for n, _, _ in cnn_layers(net)] == ["features.0.act", "features.1.act",
                                                 "head:input"]


def test_auto_without_activation_module_records_conv_output(images):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 6, 3)
            self.fc = nn.Linear(6, 10)

        def forward(self, x):
            x = torch.relu(self.c2(torch.relu(self.c1(x))))
            return self.fc(x.mean(dim=(2, 3)))

    t = record_cnn(Functional(), images)
    assert t.layer_names == ["c1", "c2", "fc:input"] and t.n_units.tolist() == [4, 6, 6]


def test_align_depths(images):
    shallow, deep = record_cnn(_net(8, 1), images), record_cnn(_net(16, 3), images)
    a, b = align_depths([shallow, deep])
    assert a.hidden.shape == (24, 4, 8) and b.hidden.shape == (24, 4, 16)
    assert a.layer_names == ["features.0.act", "features.0.act", "head:input", "head:input"]
    assert b.layer_names == deep.layer_names
    a, b = align_depths([shallow, deep], n_steps="min")
    assert b.layer_names == ["features.0.act", "head:input"]
    assert [t.n_layers for t in align_depths([shallow, deep], n_steps=3)] == [3, 3]
    assert align_depths([deep], n_steps=1)[0].layer_names == ["head:input"]
    with pytest.raises(ValueError, match="n_steps"):
        align_depths([deep], n_steps=0)
    with pytest.raises(TypeError, match="LayerTrajectories"):
        align_depths([Trajectories(np.zeros((2, 3, 4)), np.zeros((2, 10)))])


def test_record_population(images):
    nets = [_net(8, 2), _net(16, 3, seed=1)]
    recs = record_cnn_population(nets + [nets[0]], images)
    assert [r.hidden.shape for r in recs] == [(24, 4, 8), (24, 4, 16), (24, 4, 8)]
    assert len(record_cnn_population(nets, images, align=None)[0].layers) == 3
    with pytest.raises(ValueError, match=r"Model 1 has outputs of shape \(3,\)"):
        record_cnn_population([nets[0], ConvNetwork(8, 2, n_classes=3)], images)
    with pytest.raises(ValueError, match="model 1 .*'features.2'"):
        record_cnn_population([_net(8, 3), _net(8, 2)], images, layers=["features.2"])


# --- bad input -----------------------------------------------------------------------------

def test_bad_layers(images):
    net = _net()
    with pytest.raises(ValueError, match="'features.7' does not exist"):
        record_cnn(net, images, layers=["features.0", "features.7"])
    with pytest.raises(ValueError, match="No layer of type BatchNorm2d"):
        record_cnn(net, images, layers=nn.BatchNorm2d)
    with pytest.raises(TypeError, match="layers must be"):
        record_cnn(net, images, layers=[3])
    with pytest.raises(ValueError, match="found no nn.Conv2d"):
        record_cnn(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), images)
    with pytest.raises(ValueError, match="spatial"):
        record_cnn(net, images, spatial="max")


def test_bad_images(images):
    net = _net()
    with pytest.raises(ValueError, match=r"images\[:, None\]"):
        record_cnn(net, images[:, 0])
    with pytest.raises(ValueError, match="3 channels.*'features.0.conv' expects 1"):
        record_cnn(net, np.repeat(images, 3, axis=1))
    bad = images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        record_cnn(net, bad)


def test_non_finite_activations_name_the_layer(images):
    net = _net(depth=3)
    with torch.no_grad():
        net.features[1].conv.weight[0, 0, 0, 0] = float("inf")
    before = state_snapshot(net)
    with pytest.raises(ValueError, match="Model 'm7': layer 'features.1.act' produced non-fin"):
        record_cnn(net, images, name="m7")
    assert_state_equal(net, before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_reused_module_is_an_error(images):
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.same = nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.same(self.same(self.conv(x))).mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="layer 'same' ran 2 times"):
        record_cnn(Reuse(), images)


def test_model_left_unchanged(images):
    net = _net(depth=3)
    net.train()
    net.features[1].eval()  # a submodule deliberately in the other mode
    flags = [m.training for m in net.modules()]
    before = state_snapshot(net)
    record_cnn(net, images, spatial=2, batch_size=7)
    assert [m.training for m in net.modules()] == flags
    assert_state_equal(net, before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())
    # Batching does not change the recording.
    np.testing.assert_allclose(record_cnn(net, images, batch_size=5).hidden,
                               record_cnn(net, images).hidden, atol=1e-6)
