"""Loss values against hand-computed numbers, sign conventions, and the regularisers."""

import math

import pytest
import torch

from ganforge.losses import LOSSES, logistic_d_loss
from ganforge.regularizers import gradient_penalty, r1_penalty

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sp(x):  # softplus, by hand
    return math.log1p(math.exp(x))


def test_logistic_d_loss_matches_hand_computation():
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    want = (sp(-2.0) + sp(1.0)) / 2 + (sp(0.5) + sp(-3.0)) / 2
    assert LOSSES["ns"].d_loss(REAL, FAKE).item() == pytest.approx(want, rel=1e-6)
    assert LOSSES["minimax"].d_loss(REAL, FAKE).item() == pytest.approx(want, rel=1e-6)


def test_generator_losses_match_hand_computation():
    # minimax: log(1 - sigmoid(f)) = -softplus(f); ns: -log sigmoid(f) = softplus(-f)
    assert LOSSES["minimax"].g_loss(FAKE).item() == pytest.approx(-(sp(0.5) + sp(-3.0)) / 2, rel=1e-6)
    assert LOSSES["ns"].g_loss(FAKE).item() == pytest.approx((sp(-0.5) + sp(3.0)) / 2, rel=1e-6)
    assert LOSSES["wgan"].g_loss(FAKE).item() == pytest.approx(1.25)
    assert LOSSES["hinge"].g_loss(FAKE).item() == pytest.approx(1.25)
    assert LOSSES["ls"].g_loss(FAKE).item() == pytest.approx(0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2)


def test_other_discriminator_losses_match_hand_computation():
    assert LOSSES["wgan"].d_loss(REAL, FAKE).item() == pytest.approx(-1.25 - 0.5)
    hinge = (max(0, 1 - 2) + max(0, 1 + 1)) / 2 + (max(0, 1 + 0.5) + max(0, 1 - 3)) / 2
    assert LOSSES["hinge"].d_loss(REAL, FAKE).item() == pytest.approx(hinge)
    ls = 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.25 + 9) / 2
    assert LOSSES["ls"].d_loss(REAL, FAKE).item() == pytest.approx(ls)


def test_sign_convention_high_logit_means_real():
    confident = torch.full((4,), 8.0)
    for name, loss in LOSSES.items():
        good = loss.d_loss(confident, -confident).item()
        bad = loss.d_loss(-confident, confident).item()
        assert good < bad, name
        # G's loss falls as D scores its samples more real (than a real batch scored 0)
        real = torch.zeros(4)
        assert loss.g_loss(confident, real).item() < loss.g_loss(-confident, real).item(), name


def test_minimax_generator_saturates_where_nonsaturating_does_not():
    f = torch.tensor([-10.0], requires_grad=True)  # D confidently rejects the fake
    (g_mm,) = torch.autograd.grad(LOSSES["minimax"].g_loss(f), f)
    (g_ns,) = torch.autograd.grad(LOSSES["ns"].g_loss(f), f)
    assert abs(g_mm.item()) < 1e-4 < abs(g_ns.item())


def test_logistic_losses_stay_finite_for_extreme_logits():
    huge = torch.tensor([1e4, -1e4])
    for name in ("ns", "minimax"):
        assert torch.isfinite(LOSSES[name].d_loss(huge, huge))
        assert torch.isfinite(LOSSES[name].g_loss(huge))


def test_label_smoothing_changes_real_target():
    r = torch.tensor([3.0])
    f = torch.tensor([-3.0])
    s = 0.1
    want = -(0.9 * math.log(1 / (1 + math.exp(-3))) + 0.1 * math.log(1 - 1 / (1 + math.exp(-3)))) + sp(-3.0)
    assert logistic_d_loss(r, f, smoothing=s).item() == pytest.approx(want, rel=1e-5)


def test_losses_are_float32_under_bf16_inputs():
    r, f = REAL.bfloat16(), FAKE.bfloat16()
    for loss in LOSSES.values():
        assert loss.d_loss(r, f).dtype == torch.float32


def _tiny_critic():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))


def test_gradient_penalty_matches_finite_differences():
    critic = _tiny_critic().double()
    real = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    fake = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    alpha = torch.rand(3, 1, 1, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, alpha)
    x_hat = alpha * real + (1 - alpha) * fake
    eps, want = 1e-6, 0.0
    for i in range(3):
        grad = torch.zeros(12, dtype=torch.float64)
        flat = x_hat[i].reshape(-1)
        for j in range(12):
            up, dn = flat.clone(), flat.clone()
            up[j] += eps
            dn[j] -= eps
            grad[j] = (critic(up.view(1, 3, 2, 2)) - critic(dn.view(1, 3, 2, 2))).item() / (2 * eps)
        want += (grad.norm() - 1) ** 2
    assert gp.item() == pytest.approx(want.item() / 3, rel=1e-4)


def test_r1_matches_formula_for_a_linear_critic():
    w = torch.randn(12)
    real = torch.randn(4, 3, 2, 2)
    r1 = r1_penalty(lambda x: x.flatten(1) @ w, real)  # grad is w for every sample
    assert r1.item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)


def test_rpgan_matches_hand_computation_and_pairs_samples():
    # D: mean softplus(-(r_i - f_i)); G: mean softplus(-(f_i - r_i)), i-th real with i-th fake
    d_want = (sp(-(2.0 - 0.5)) + sp(-(-1.0 + 3.0))) / 2
    g_want = (sp(-(0.5 - 2.0)) + sp(-(-3.0 + 1.0))) / 2
    assert LOSSES["rpgan"].d_loss(REAL, FAKE).item() == pytest.approx(d_want, rel=1e-6)
    assert LOSSES["rpgan"].g_loss(FAKE, REAL).item() == pytest.approx(g_want, rel=1e-6)
    f = FAKE.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(LOSSES["rpgan"].g_loss(f, REAL), f)
    # d/df_i softplus(-(f_i - r_i)) / 2 = -sigmoid(-(f_i - r_i)) / 2
    want = [-1 / (1 + math.exp(f_i - r_i)) / 2 for f_i, r_i in zip(FAKE.tolist(), REAL.tolist())]
    assert grad.tolist() == pytest.approx(want, rel=1e-6)
    assert LOSSES["rpgan"].g_needs_real and not any(LOSSES[n].g_needs_real for n in LOSSES if n != "rpgan")
    with pytest.raises(ValueError, match="one to one"):
        LOSSES["rpgan"].d_loss(REAL, FAKE[:1])
