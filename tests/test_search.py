"""The embedding search (skdynamo._codes): the multi-start search shared by transform and
DynamoSemiSupervised, fit_codes recovering a known embedding, and the batched search of
transform (candidates scored in closed form, guarded refinement, chunks through joblib)."""

import numpy as np
import pytest
import torch

from skdynamo._codes import (_chunk_objective, _run, candidate_scores, candidate_states,
                             embed_chunk, fit_codes, multi_start_search, search_candidates)
from skdynamo._loss import DynamoLoss
from skdynamo.nn import ConditionedCNN, ConditionedRNN


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


def test_the_final_objective_picks_the_winner_among_the_refined_starts():
    # Refined on a bowl at (1, 1), judged by a bowl at (-2, 0.5): the start nearer the
    # second bowl wins, and the returned losses are the final objective's.
    cand = torch.tensor([[1.2, 0.8], [-1.5, 0.0], [5.0, 5.0]])
    near, far = _bowl(torch.tensor([[1.0, 1.0]])), _bowl(torch.tensor([[-2.0, 0.5]]))
    found = multi_start_search(near, cand, n_starts=2, max_iter=0, lr=0.1,
                               final_objective=far)
    assert torch.equal(found.theta[0], cand[1])
    assert torch.equal(found.losses, far(found.starts_refined))
    plain = multi_start_search(near, cand, n_starts=2, max_iter=0, lr=0.1)
    assert torch.equal(plain.theta[0], cand[0])


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


# --------------------------------------------------------------------------- batched search
def _problem(meta, probes, n_models=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        truth = torch.randn(n_models, 2, generator=gen)
        y, g = _run(meta, probes, truth[:, None])
        y, g = y[:, 0], g[:, 0]
    V = torch.randn(g.shape[-1], 4, generator=gen)
    hidden = g @ V + 0.01 * torch.randn(*g.shape[:-1], 4, generator=gen)
    scale = y.reshape(n_models, -1, y.shape[-1]).var(1).sum(-1).clamp_min(1e-3)
    return truth, y, hidden, scale


@pytest.mark.parametrize("kind", ["rnn", "rnn-last-step", "cnn"])
def test_candidate_scores_equal_the_search_objective_at_every_candidate(kind):
    torch.manual_seed(0)
    if kind.startswith("rnn"):
        meta, probes = ConditionedRNN(3, 2, 2, hidden_size=8), torch.randn(12, 6, 3)
        loss = DynamoLoss("mse", hidden_weight=0.7, embedding_l2=0.01,
                          last_only=kind == "rnn-last-step")
    else:
        meta = ConditionedCNN(1, 3, 2, n_steps=2, image_size=(8, 8), hidden_size=4)
        probes, loss = torch.rand(12, 1, 8, 8), DynamoLoss("kl", embedding_l2=0.01)
    _, y, hidden, scale = _problem(meta, probes)
    if loss.last_only:  # sequence classifiers: the models' outputs are their last step
        y = y[:, :, -1]
    cand = torch.randn(7, 2, generator=torch.Generator().manual_seed(1))
    batched = candidate_scores(meta, probes, cand, y, hidden, scale, loss=loss)
    one_by_one = _chunk_objective(meta, probes, y, hidden, scale, loss)(cand[None])
    assert batched.shape == (5, 7)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)
    # States computed once (as transform does for all its chunks) give the same scores.
    states = candidate_states(meta, probes, cand)
    torch.testing.assert_close(candidate_scores(meta, probes, cand, y[:2], hidden[:2],
                                                scale[:2], loss=loss, states=states),
                               batched[:2], rtol=1e-5, atol=1e-6)


def test_embed_chunk_never_returns_worse_than_the_best_candidate():
    torch.manual_seed(0)
    meta, probes = ConditionedRNN(3, 2, 2, hidden_size=8), torch.randn(16, 6, 3)
    truth, y, hidden, scale = _problem(meta, probes, n_models=4)
    cand = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    loss = DynamoLoss("mse", embedding_l2=0.0)
    best = candidate_scores(meta, probes, cand, y, hidden, scale, loss=loss).min(1).values
    kept, kept_loss = embed_chunk(meta, probes, y, hidden, scale, cand, loss=loss,
                                  n_starts=2, max_iter=0, lr=0.05, n_refine=4)
    assert all(any(np.array_equal(k, c) for c in cand.numpy()) for k in kept)
    np.testing.assert_allclose(kept_loss, best.numpy(), rtol=1e-6)
    theta, refined = embed_chunk(meta, probes, y, hidden, scale, cand, loss=loss,
                                 n_starts=2, max_iter=30, lr=0.05, n_refine=4)
    assert np.all(refined <= kept_loss + 1e-7)
    # 30 steps on 4 of the 16 probes move every model towards its true embedding
    assert np.all(np.linalg.norm(theta - truth.numpy(), axis=1)
                  <= np.linalg.norm(kept - truth.numpy(), axis=1) + 1e-6)
    assert np.any(refined < kept_loss)


def test_fit_codes_chunks_and_joblib_backends_give_the_same_embeddings():
    from joblib import parallel_config
    torch.manual_seed(0)
    meta, probes = ConditionedRNN(3, 2, 2, hidden_size=8), torch.randn(16, 6, 3)
    _, y, hidden, scale = _problem(meta, probes, n_models=7)
    cand = torch.randn(6, 2, generator=torch.Generator().manual_seed(2))
    kw = dict(loss=DynamoLoss("mse"), n_starts=2, max_iter=5, lr=0.02, n_refine=8)
    whole, whole_loss = fit_codes(meta, probes, y, hidden, scale, cand, chunk=64, **kw)
    parts, parts_loss = fit_codes(meta, probes, y, hidden, scale, cand, chunk=3, **kw)
    with parallel_config(backend="threading", n_jobs=2):
        threads, _ = fit_codes(meta, probes, y, hidden, scale, cand, chunk=3, **kw)
    assert whole.shape == (7, 2) and whole_loss.shape == (7,)
    np.testing.assert_allclose(parts, whole, atol=1e-5)
    np.testing.assert_allclose(parts_loss, whole_loss, rtol=1e-4)
    np.testing.assert_array_equal(threads, parts)


def test_precomputed_scores_replace_the_candidate_scoring():
    centres = torch.tensor([[1.0, 1.0]])
    cand = torch.tensor([[0.0, 0.0], [1.2, 0.8], [5.0, 5.0]])
    calls = []

    def objective(theta):
        calls.append(theta.shape[1])
        return _bowl(centres)(theta)

    # scores that rank the far candidate first: it is the one refined
    found = multi_start_search(objective, cand, n_starts=1, max_iter=0, lr=0.1,
                               scores=torch.tensor([[2.0, 1.0, 0.0]]))
    assert torch.equal(found.starts[0, 0], cand[2]) and 3 not in calls
