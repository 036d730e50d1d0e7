"""The loss (skdynamo._loss): output losses, the data term, the penalty and R^2."""

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from skdynamo._loss import (OUTPUT_LOSSES, DynamoLoss, KLOutput, MSEOutput, as_numpy_r2,
                            hidden_loss, pooled_r2, resolve_output_loss)
from skdynamo.families import ConvolutionalFamily, RecurrentFamily


def _t(*shape, seed=0):
    return torch.as_tensor(np.random.RandomState(seed).standard_normal(shape),
                           dtype=torch.float64)


def test_pooled_r2_is_sklearns_variance_weighted_r2_per_model():
    y, p = _t(3, 20, 5, 4), _t(3, 20, 5, 4, seed=1)
    p = y + 0.3 * p
    got = pooled_r2(p, y).numpy()
    for m in range(3):
        want = r2_score(y[m].reshape(-1, 4), p[m].reshape(-1, 4),
                        multioutput="variance_weighted")
        assert got[m] == pytest.approx(want, rel=1e-10)
    assert as_numpy_r2(p[0].numpy(), y[0].numpy()) == pytest.approx(got[0], rel=1e-12)


def test_pooled_r2_floors_a_constant_target():
    y = torch.ones(1, 10, 2, dtype=torch.float64)
    r2 = pooled_r2(y + 1e-3, y)
    assert torch.isfinite(r2).all() and r2.item() > -1.0
    assert pooled_r2(y, y).item() == 1.0


def test_mse_output_is_one_minus_r2_and_kl_compares_probabilities():
    y = _t(2, 30, 3)
    scale = torch.as_tensor([float(y[i].reshape(-1, 3).var(0, unbiased=False).sum())
                             for i in range(2)], dtype=torch.float64)
    mse = MSEOutput()
    np.testing.assert_allclose(mse(y, y, scale), 0.0)
    mean = y.mean(1, keepdim=True).expand_as(y)
    np.testing.assert_allclose(mse(mean, y, scale).numpy(), 1.0, rtol=1e-10)
    np.testing.assert_allclose(mse(y + 0.1 * _t(2, 30, 3, seed=3), y, scale).numpy(),
                               1 - pooled_r2(y + 0.1 * _t(2, 30, 3, seed=3), y).numpy(),
                               rtol=1e-10)
    kl = KLOutput()
    np.testing.assert_allclose(kl(y + 5.0, y, None).numpy(), 0.0, atol=1e-12)  # shift-free
    assert torch.all(kl(_t(2, 30, 3, seed=4), y, None) > 0)
    assert kl.classifies and not mse.classifies
    np.testing.assert_allclose(kl.behaviour(np.zeros((2, 4))), 0.25)
    r2, agreement = kl.scores(y, y)
    np.testing.assert_allclose(r2, 1.0)
    np.testing.assert_allclose(agreement, 1.0)
    assert mse.scores(y, y)[1] is None
    assert set(OUTPUT_LOSSES) == {"mse", "kl"}


def test_dynamo_loss_forward_is_the_mean_of_the_per_model_loss():
    n, b, t, o, k = 3, 5, 4, 2, 6
    y_hat, h_hat = _t(n, b, t, o).float(), _t(n, b, t, k, seed=1).float()
    y, h = _t(n, b, t, o, seed=2).float(), _t(n, b, t, k, seed=3).float()  # models first
    scale = torch.tensor([1.0, 2.0, 0.5])
    loss = DynamoLoss("mse", hidden_weight=0.7, embedding_l2=0.1, output_scale=scale)
    per = loss.per_model(y_hat, y, h_hat, h, scale)
    assert per.shape == (n,)
    assert loss((y_hat, h_hat), (y, h)).item() == pytest.approx(per.mean().item(), rel=1e-6)
    want = MSEOutput()(y_hat, y, scale) + 0.7 * hidden_loss(h_hat, h)
    np.testing.assert_allclose(per.numpy(), want.numpy(), rtol=1e-6)
    # (model, probe) pairs: each row one probe of one model, scaled by that model's scale.
    models = torch.tensor([2, 0, 2, 1])
    rows = [(2, 0), (0, 3), (2, 4), (1, 1)]
    pick = lambda a: torch.stack([a[m, p] for m, p in rows])[:, None]  # noqa: E731
    pairs = loss((pick(y_hat), pick(h_hat)), (pick(y), pick(h)), models)
    want = torch.stack([loss.per_model(y_hat[m, p][None, None], y[m, p][None, None],
                                       h_hat[m, p][None, None], h[m, p][None, None],
                                       scale[m][None]) for m, p in rows]).mean()
    assert pairs.item() == pytest.approx(want.item(), rel=1e-6)
    theta = torch.ones(4, 2)
    np.testing.assert_allclose(loss.penalty(theta).numpy(), 0.2)


def test_last_only_compares_the_last_step():
    y_hat = _t(2, 5, 4, 3).float()
    loss = DynamoLoss("kl", last_only=True)
    last = y_hat[:, :, -1]
    np.testing.assert_allclose(loss.per_model(y_hat, last, torch.zeros(2, 5, 4, 1),
                                              torch.zeros(2, 5, 4, 1), None).numpy(), 0.0,
                               atol=1e-6)
    out_r2, hid_r2, agreement = loss.scores(y_hat, last, torch.zeros(2, 5, 4, 1),
                                            torch.zeros(2, 5, 4, 1))
    np.testing.assert_allclose(agreement, 1.0)


def test_output_loss_resolution():
    assert resolve_output_loss("auto", RecurrentFamily(), (10, 3)).name == "mse"
    assert resolve_output_loss("auto", ConvolutionalFamily(), (10,)).name == "kl"
    assert resolve_output_loss("auto", ConvolutionalFamily(), (1,)).name == "mse"
    assert resolve_output_loss("kl", RecurrentFamily(), (10, 3)).name == "kl"
    with pytest.raises(ValueError, match="softmax over one output is constant"):
        resolve_output_loss("kl", RecurrentFamily(), (10, 1))


def test_the_fitted_embedder_exposes_the_loss_it_trained_with(tiny_fitted):
    loss = tiny_fitted.loss_
    assert isinstance(loss, DynamoLoss) and loss.output.name == "mse"
    assert loss.hidden_weight == tiny_fitted.hidden_weight
    assert loss.embedding_l2 == tiny_fitted.embedding_l2 and not loss.last_only


def test_reverse_loss_is_the_per_member_least_squares_residual():
    from skdynamo._loss import reverse_loss
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, 7, 3, generator=gen)                 # 6 rows, 7 steps, 3 components
    models = torch.tensor([0, 0, 1, 1, 1, 2])
    lin = torch.randn(3, 3, 5, generator=gen)               # one affine map per member
    g = torch.einsum("rtk,rkw->rtw", h, lin[models]) + 0.3
    assert reverse_loss(g, h, models, ridge=0.0) < 1e-6      # explained (float32 sums)
    g_extra = g + torch.randn(6, 7, 5, generator=gen)        # dynamics the members lack
    want = 0.0
    for m in range(3):
        rows = models == m
        design = torch.cat([h[rows].reshape(-1, 3), torch.ones(int(rows.sum()) * 7, 1)], 1)
        target = g_extra[rows].reshape(-1, 5)
        coef = torch.linalg.lstsq(design.double(), target.double()).solution
        want += float(((design.double() @ coef - target.double()) ** 2).sum())
    got = float(reverse_loss(g_extra, h, models, ridge=0.0))
    np.testing.assert_allclose(got, want / (6 * 7 * 5), rtol=1e-4)


def test_member_balance_weighs_the_members_emulated_worst_more_in_training_steps():
    # 3 members, 2 rows each; member 2's hidden error is 16 times the others'.
    r, t, k = 6, 4, 2
    models = torch.tensor([0, 0, 1, 1, 2, 2])
    y = _t(r, 1, t, 1).float()
    y_hat = y + 0.1
    h = torch.zeros(r, 1, t, k)
    h_hat = torch.full_like(h, 0.1)
    h_hat[models == 2] = 0.4
    scale = torch.ones(3)
    plain = DynamoLoss("mse", output_scale=scale)
    balanced = DynamoLoss("mse", member_balance=1.0, n_models=3, output_scale=scale)
    args = ((y_hat, h_hat), (y, h), models)
    # Held-out passes are never weighted; training steps are, and fold in the errors.
    assert balanced(*args).item() == pytest.approx(plain(*args).item())
    assert torch.equal(balanced.member_errors, torch.ones(3, 2))
    for _ in range(200):
        trained = balanced(*args, training=True)
    out, hid = MSEOutput()(y_hat, y, scale[models]), hidden_loss(h_hat, h)
    np.testing.assert_allclose(balanced.member_errors.numpy(),
                               torch.stack([out, hid], 1)[::2].numpy(), rtol=1e-4)
    # Weights proportional to the members' errors (gamma = 1), mean 1 over the rows:
    # the outputs' equal, the hidden term's 16 times as much for member 2.
    w_hid = torch.tensor([1.0, 1, 1, 1, 16, 16]) / 6
    assert trained.item() == pytest.approx((out.mean() + (w_hid * hid).mean()).item(),
                                           rel=1e-3)
    assert trained.item() > plain(*args).item()
    # gamma = 0 is the unweighted loss.
    assert DynamoLoss("mse", output_scale=scale)(*args, training=True).item() == \
        pytest.approx(plain(*args).item())


def test_a_balanced_fit_weighs_its_members_by_their_running_errors(tiny_models, tiny_probes):
    from conftest import tiny_embedder
    est = tiny_embedder(tiny_probes, member_balance=1.0, max_epochs=2).fit(tiny_models)
    errors = est.loss_.member_errors
    assert errors.shape == (3, 2) and not torch.equal(errors, torch.ones(3, 2))
    assert torch.all(errors > 0)
    plain = tiny_embedder(tiny_probes, max_epochs=2).fit(tiny_models)
    assert plain.loss_.member_errors.numel() == 0
    assert not np.allclose(est.embeddings_, plain.embeddings_)
