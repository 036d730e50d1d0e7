"""embedding_disagreement and model_disagreement: Procrustes-aligned disagreement between
refits, for the whole map and per model."""

import numpy as np
import pytest

from skdynamo._stability import embedding_disagreement, model_disagreement


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def test_similarity_transforms_agree():
    Z = np.random.default_rng(0).normal(size=(12, 2))
    flipped = Z * np.array([1.0, -1.0])
    refits = [Z, 2.5 * Z @ _rotation(1.0) + [3.0, -1.0], 0.1 * flipped @ _rotation(-2.0)]
    assert embedding_disagreement(refits) < 1e-10


def test_small_noise_is_small_and_unrelated_maps_are_large():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(20, 2))
    noisy = embedding_disagreement([Z, Z @ _rotation(0.3) + 0.02 * rng.normal(size=Z.shape)])
    assert 0 < noisy < 0.05
    unrelated = embedding_disagreement([rng.normal(size=(20, 2)) for _ in range(3)])
    assert unrelated > 0.5


def test_relative_to_the_spread_of_the_reference():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(15, 3))
    E = 0.05 * rng.normal(size=Z.shape)
    # Scaling the whole problem does not change the figure.
    assert embedding_disagreement([Z, Z + E]) == pytest.approx(
        embedding_disagreement([10 * Z, 10 * (Z + E)]), rel=1e-9)


@pytest.mark.parametrize("bad, match", [
    ([np.zeros((4, 2))], "at least two"),
    ([np.zeros((4, 2)), np.zeros((5, 2))], "same shape"),
    ([np.ones(4), np.ones(4)], "2-d"),
    ([np.full((3, 2), np.nan), np.zeros((3, 2))], "NaN"),
    ([np.zeros((3, 2)), np.eye(3, 2)], "one point"),
])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        embedding_disagreement(bad)


def test_model_disagreement_is_zero_under_similarity_transforms():
    Z = np.random.default_rng(3).normal(size=(9, 2))
    per = model_disagreement([Z, 4.0 * Z @ _rotation(0.7) - 2.0, Z * np.array([-1.0, 1.0])])
    assert per.shape == (9,) and np.all(per < 1e-10)


def test_model_disagreement_points_at_the_model_that_moves():
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(25, 2))
    moved = Z @ _rotation(-0.4) + 0.01 * rng.normal(size=Z.shape)
    moved[7] += 3.0 * _rotation(-0.4)[0]  # one model lands elsewhere in the second refit
    per = model_disagreement([Z, moved])
    assert int(np.argmax(per)) == 7
    assert per[7] > 10 * np.median(per)


def test_model_disagreement_adds_up_to_the_map_figure():
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(15, 3))
    refits = [Z + s * rng.normal(size=Z.shape) for s in (0.05, 0.1, 0.2)]
    per, whole = model_disagreement(refits), embedding_disagreement(refits)
    rms = np.sqrt(np.mean(per ** 2))
    assert whole <= rms + 1e-12 and rms < 1.2 * whole
    # two refits: one pair each way; the root mean square over models is the map figure
    # when both directions disagree alike (the same spread on both sides)
    Z2 = Z[:, :2]
    two = [Z2, Z2 @ _rotation(0.2) + 0.05 * rng.normal(size=Z2.shape)]
    assert np.sqrt(np.mean(model_disagreement(two) ** 2)) == pytest.approx(
        embedding_disagreement(two), rel=0.05)


def test_model_disagreement_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        model_disagreement([np.zeros((4, 2))])


def test_pair_disagreements_are_the_ordered_pairs_whose_mean_is_the_figure():
    from skdynamo._stability import pair_disagreements
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(12, 2))
    maps = [Z, 2 * Z + 1, Z + 0.3 * rng.normal(size=Z.shape)]
    pairs = pair_disagreements(maps)
    assert pairs.shape == (3, 3) and np.isnan(np.diag(pairs)).all()
    assert pairs[0, 1] == pytest.approx(0.0, abs=1e-9)  # a similarity transform
    assert pairs[0, 2] > 0.05 and pairs[1, 2] == pytest.approx(pairs[0, 2], rel=1e-6)
    assert np.nanmean(pairs) == pytest.approx(embedding_disagreement(maps))
    assert pairs[0, 2] == pytest.approx(embedding_disagreement([maps[0], maps[2]]) * 2
                                        - pairs[2, 0])
