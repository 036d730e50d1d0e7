"""PCA targets (skdynamo._targets): the sign rule and scaling the twin guarantee rests on.

Identical models must get identical targets, and so identical starting embeddings and
identical training updates: a model and a copy whose hidden units are permuted, sign
flipped, rotated or scaled must be reduced to the same PCA scores.
"""

import numpy as np
import pytest
from scipy.stats import ortho_group

from skdynamo._targets import initial_embeddings, output_variance, pad_targets, \
    reduce_hidden, reduce_layers


def _hidden(seed=0, probes=20, steps=7, units=6):
    rng = np.random.RandomState(seed)
    latent = rng.standard_normal((probes, steps, 3)) ** 3    # skewed: signs are defined
    mix = rng.standard_normal((3, units))
    return (latent @ mix + 0.01 * rng.standard_normal((probes, steps, units))).astype(
        np.float32)


TRAIN = np.arange(15)


@pytest.mark.parametrize("recode", ["permute", "flip", "rotate", "scale"])
def test_reparameterised_twins_get_identical_targets(recode):
    h = _hidden()
    rng = np.random.RandomState(1)
    if recode == "permute":
        twin = h[..., rng.permutation(h.shape[-1])]
    elif recode == "flip":
        twin = h * np.where(rng.rand(h.shape[-1]) < 0.5, -1, 1)
    elif recode == "rotate":
        twin = h @ ortho_group.rvs(h.shape[-1], random_state=2)
    else:
        twin = 3.7 * h
    a = reduce_hidden(h, TRAIN, n_pcs=4)
    b = reduce_hidden(twin.astype(np.float32), TRAIN, n_pcs=4)
    np.testing.assert_allclose(a, b, atol=2e-4)


def test_scores_have_unit_total_variance_and_positive_skew_on_the_training_probes():
    r = reduce_hidden(_hidden(), TRAIN, n_pcs=4)
    assert r.shape == (20, 7, 4) and r.dtype == np.float32
    train = r[TRAIN].astype(np.float64).reshape(-1, r.shape[-1])
    assert train.var(0, ddof=1).sum() == pytest.approx(1.0, rel=1e-4)
    centred = train - train.mean(0)
    assert np.all((centred ** 3).sum(0) > 0)                 # the sign rule


def test_components_are_capped_by_the_units_and_a_still_model_gets_zero_targets():
    assert reduce_hidden(_hidden(units=2), TRAIN, n_pcs=10).shape[-1] == 2
    still = np.ones((20, 7, 5), dtype=np.float32)
    r = reduce_hidden(still, TRAIN, n_pcs=3)
    assert r.shape == (20, 7, 3) and not r.any()


def test_layers_are_reduced_one_by_one_with_a_mask():
    rng = np.random.RandomState(0)
    layers = [rng.standard_normal((20, 8)), rng.standard_normal((20, 3))]
    reduced, mask = reduce_layers(layers, TRAIN, n_pcs=4)
    assert reduced.shape == (20, 2, 4)
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 1, 0]])
    assert not reduced[:, 1, 3].any()
    np.testing.assert_allclose(reduced[:, 0], reduce_hidden(
        layers[0][:, None].astype(np.float32), TRAIN, 4)[:, 0], atol=1e-5)
    for layer in range(2):
        assert reduced[TRAIN, layer].var(0, ddof=1).sum() == pytest.approx(1.0, rel=1e-4)


def test_pad_targets_and_output_variance():
    a, b = np.ones((4, 3, 2)), 2 * np.ones((4, 3, 4))
    out, mask = pad_targets([a, b], 4)
    assert out.shape == (2, 4, 3, 4) and not out[0, ..., 2:].any()
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 1]])
    assert output_variance(np.ones((4, 3, 2)), np.arange(4)) == 1e-6     # floored
    y = np.random.RandomState(0).standard_normal((50, 2))
    assert output_variance(y, np.arange(50)) == pytest.approx(y.var(0).sum())


def test_twins_start_from_identical_embeddings():
    h = _hidden()
    twin = (h @ ortho_group.rvs(h.shape[-1], random_state=3)).astype(np.float32)
    other = _hidden(seed=5)
    reduced = [reduce_hidden(x, TRAIN, 4) for x in (h, twin, other)]
    y = np.random.RandomState(0).standard_normal((20, 7, 2))
    outputs = [y, y.copy(), 2 * y + 1]
    scales = [output_variance(o, TRAIN) for o in outputs]
    init = initial_embeddings(outputs, reduced, scales, TRAIN, 2, np.random.RandomState(0))
    np.testing.assert_allclose(init[0], init[1], atol=1e-5)
    assert np.linalg.norm(init[0] - init[2]) > 0.1
    assert np.sqrt((init ** 2).sum(1).mean()) == pytest.approx(1.0, rel=1e-5)
