"""The embedding search (skdynamo._codes): the multi-start search shared by transform and
DynamoSemiSupervised, and fit_codes recovering a known embedding."""

import numpy as np
import pytest
import torch

from skdynamo._codes import _run, fit_codes, multi_start_search, search_candidates
from skdynamo._loss import DynamoLoss
from skdynamo.nn import ConditionedRNN


def _bowl(centres):
    """(M, S) loss of M problems: squared distance to each problem's centre."""
    def objective(theta):
        return ((theta - centres[:, None]) ** 2).sum(-1) + 0 * theta.sum(-1)
    return objective


def test_multi_start_search_refines_the_best_candidates_and_keeps_the_best():
    centres = torch.tensor([[1.0, 1.0], [-2.0, 0.5]])
    cand = torch.tensor([[0.0, 0.0], [1.2, 0.8], [-1.5, 0.0], [5.0, 5.0]])
    found = multi_start_search(_bowl(centres), cand, n_starts=2, max_iter=200, lr=0.05)
    assert found.theta.shape == (2, 2) and found.loss.shape == (2,)
    np.testing.assert_allclose(found.theta.numpy(), centres.numpy(), atol=1e-2)
    # the starts are the two best candidates of each problem, best first
    np.testing.assert_array_equal(found.starts[0].numpy(), cand[[1, 0]].numpy())
    np.testing.assert_array_equal(found.starts[1].numpy(), cand[[2, 0]].numpy())
    assert found.losses.shape == (2, 2)
    assert torch.equal(found.loss, found.losses.min(1).values)


def test_scoring_in_chunks_changes_nothing_and_no_steps_keeps_a_candidate():
    centres = torch.tensor([[0.3, -0.2]])
    cand = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    whole = multi_start_search(_bowl(centres), cand, n_starts=3, max_iter=5, lr=0.1)
    chunked = multi_start_search(_bowl(centres), cand, n_starts=3, max_iter=5, lr=0.1,
                                 score_chunk=16)
    assert torch.equal(whole.theta, chunked.theta)
    still = multi_start_search(_bowl(centres), cand, n_starts=3, max_iter=0, lr=0.1)
    assert any(torch.equal(still.theta[0], c) for c in cand)
    assert len(search_candidates(np.zeros((64, 2)))) == 64
    assert search_candidates(np.random.RandomState(0).rand(100, 2)).shape == (32, 2)


def test_search_leaves_the_meta_model_gradients_alone():
    meta = ConditionedRNN(2, 2, 2, hidden_size=4)
    x = torch.randn(3, 5, 2)

    def objective(theta):
        y, _ = _run(meta, x, theta)
        return (y ** 2).reshape(*theta.shape[:2], -1).mean(-1).expand(1, theta.shape[1])

    multi_start_search(objective, torch.randn(4, 2), n_starts=2, max_iter=3, lr=0.1)
    assert all(p.grad is None for p in meta.parameters())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_fit_codes_recovers_the_embedding_that_made_the_targets(cell):
    torch.manual_seed(0)
    meta = ConditionedRNN(3, 2, 2, hidden_size=8, cell=cell)
    probes = torch.randn(16, 6, 3)
    truth = torch.tensor([[0.8, -0.4], [-0.6, 0.9]])
    with torch.no_grad():
        y, g = _run(meta, probes, truth[:, None])
        y, g = y[:, 0], g[:, 0]                                     # (M, P, T, .)
    V = torch.randn(8, 4)
    hidden = g @ V                                                  # any linear code
    scale = y.reshape(2, -1, 2).var(1).sum(-1)
    cand = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    theta, loss = fit_codes(meta, probes, y, hidden, scale, cand,
                            loss=DynamoLoss("mse", embedding_l2=0.0), n_starts=2,
                            max_iter=150, lr=0.05)
    assert theta.shape == (2, 2) and loss.shape == (2,)
    np.testing.assert_allclose(theta, truth.numpy(), atol=0.1)
    assert np.all(loss < 0.05)
