"""R1, R2 and their sum under one gamma (R3GAN): values against gradients worked out by hand, weights, laziness."""

import pytest
import torch

from conftest import tiny_config
from ganforge.errors import ConfigError
from ganforge.regularizers import d_regularization, grad_sq_norm, r1_penalty


def _critic(W, v):
    """D(x) = v . tanh(W x) per sample: x (N, 1, 2, 2) -> (N,)."""
    return lambda x: torch.tanh(x.reshape(x.shape[0], -1) @ W.T) @ v


def _by_hand(W, v, x):
    """E ||W^T (v * (1 - tanh(W x)^2))||^2: the input gradient of the critic above, squared."""
    h = torch.tanh(x.reshape(x.shape[0], -1) @ W.T)
    grads = (v * (1 - h ** 2)) @ W  # (N, 4)
    return grads.pow(2).sum(1).mean()


@pytest.fixture
def tiny_net():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)


def test_r1_and_r2_equal_the_hand_computed_gradient_norms(tiny_net):
    W, v = tiny_net
    real = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    fake = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    critic = _critic(W, v)
    torch.testing.assert_close(r1_penalty(critic, real), _by_hand(W, v, real).float())
    torch.testing.assert_close(grad_sq_norm(critic, fake), _by_hand(W, v, fake).float())


def test_the_penalty_is_differentiable_in_the_weights(tiny_net):
    W, v = (t.clone().requires_grad_(True) for t in tiny_net)
    x = torch.randn(4, 1, 2, 2, dtype=torch.float64)
    (gw,) = torch.autograd.grad(grad_sq_norm(_critic(W, v), x), W)
    (want,) = torch.autograd.grad(_by_hand(W, v, x), W)
    torch.testing.assert_close(gw, want)


def test_gamma_weights_r1_plus_r2_by_half_gamma_lazily(tmp_path, tiny_net):
    W, v = tiny_net
    regs = d_regularization(tiny_config(tmp_path, "loss.name=rpgan", "loss.gamma=0.2", "loss.r1_every=4"))
    (p,) = regs.penalties
    assert p.name == "r1r2" and p.double_backward and p.scheduled and regs.lazy and regs.double_backward
    real, fake = torch.randn(5, 1, 2, 2, dtype=torch.float64), torch.randn(5, 1, 2, 2, dtype=torch.float64)
    critic = _critic(W, v)
    want = 0.1 * 4 * (_by_hand(W, v, real) + _by_hand(W, v, fake))
    total, logs = regs.penalty(8, critic, real, fake, None)
    torch.testing.assert_close(total, want.float())
    torch.testing.assert_close(logs["r1r2"], (_by_hand(W, v, real) + _by_hand(W, v, fake)).float())
    assert regs.penalty(9, critic, real, fake, None) == (None, {})  # not due: no work at all
    regs.gamma_factor = 0.5  # the schedule's multiplier
    torch.testing.assert_close(regs.penalty(0, critic, real, fake, None)[0], 0.5 * want.float())


def test_r1_and_r2_stay_usable_alone(tmp_path):
    regs = d_regularization(tiny_config(tmp_path, "loss.r1_weight=1", "loss.r2_weight=2", "loss.r1_every=2"))
    assert [(p.name, p.weight, p.every, p.scheduled) for p in regs.penalties] == [
        ("r1", 0.5, 2, False), ("r2", 1.0, 1, False)]
    assert d_regularization(tiny_config(tmp_path)).penalties == []  # gamma 0: off


def test_gamma_with_separate_r1_weight_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="loss.gamma"):  # when the config is read, before any work
        tiny_config(tmp_path, "loss.gamma=1", "loss.r1_weight=1")


def test_the_plan_keeps_gamma_out_of_graphs_and_compiled_d(tmp_path):
    from ganforge.tasks.base import TaskCapabilities
    from ganforge.train.plan import resolve_plan

    cfg = tiny_config(tmp_path, "loss.name=rpgan", "loss.gamma=1", "train.compile=true")
    plan = resolve_plan(cfg, torch.device("cpu"), TaskCapabilities(False, True), d_regularization(cfg))
    assert not plan.compile_d and "double backward" in plan.reasons["compile_d"]
