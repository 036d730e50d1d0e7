"""The linear-CKA baseline: the measure, the distance matrix and the MDS embedding."""

import numpy as np
import pytest
import torch

from skdynamo.baselines import LinearCKAEmbedding, cka_distances, linear_cka
from skdynamo.datasets import (ConvNetwork, RecurrentNetwork, make_flipflop,
                               permute_hidden_units)


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, 3 * X @ Q + 2) == pytest.approx(1.0)
    assert linear_cka(X, rng.normal(size=(200, 4))) < 0.2
    assert linear_cka(X, np.ones((200, 3))) == 0.0
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(X, X[:10])


def test_permuted_twin_is_at_distance_zero_and_embedding_shape():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        models = [RecurrentNetwork(3, 3, 8, c) for c in ("gru", "gru", "lstm")]
    models.append(permute_hidden_units(models[0], random_state=0))
    probes, _ = make_flipflop(16, 12, random_state=0)
    D = cka_distances(models, probes)
    assert D.shape == (4, 4)
    np.testing.assert_allclose(D, D.T)
    np.testing.assert_allclose(np.diag(D), 0.0)
    assert D[0, 3] < 1e-6 < D[0, 1]
    emb = LinearCKAEmbedding(probes, n_components=2)
    Z = emb.fit_transform(models)
    assert Z.shape == (4, 2)
    np.testing.assert_allclose(Z[0], Z[3], atol=1e-4)
    assert emb.get_feature_names_out().tolist() == ["linearckaembedding0",
                                                     "linearckaembedding1"]


def test_cnns_and_errors():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnns = [ConvNetwork(4, d) for d in (2, 3)]
    images = np.random.default_rng(0).random((10, 1, 8, 8)).astype(np.float32)
    assert cka_distances(cnns, images).shape == (2, 2)
    with pytest.raises(ValueError, match="probe_inputs"):
        LinearCKAEmbedding().fit(cnns)
    with pytest.raises(ValueError, match="exceeds"):
        LinearCKAEmbedding(images, n_components=3).fit(cnns)
