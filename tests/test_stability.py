"""embedding_disagreement: Procrustes-aligned disagreement between refits."""

import numpy as np
import pytest

from skdynamo._stability import embedding_disagreement


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
