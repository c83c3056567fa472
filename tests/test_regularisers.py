"""Regularisers around the models: spectral normalisation, the EMA generator, DiffAugment."""

import pytest
import torch
from torch import nn

from ganforge.augment import DiffAugment, color, cutout, translation
from ganforge.config import load_config
from ganforge.models import build_models
from ganforge.train.ema import EMA

# ----------------------------------------------------------- spectral norm


def _sn_modules(model):
    return [m for m in model.modules() if nn.utils.parametrize.is_parametrized(m, "weight")]


def _sigma(module) -> float:
    w = module.weight.detach()  # the normalised weight
    if isinstance(module, nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()


@pytest.mark.parametrize("arch", ["resnet", "mlp-res", "dcgan"])
def test_spectral_norm_keeps_largest_singular_value_near_one(arch):
    torch.manual_seed(0)
    cfg = load_config(None, [f"model.arch={arch}", "model.g_width=8", "model.d_width=8", "model.z_dim=12",
                             "model.num_classes=10", "model.spectral_norm_d=true", "model.spectral_norm_g=true"])
    G, D = build_models(cfg)
    modules = _sn_modules(G) + _sn_modules(D)
    assert len(modules) >= 4
    # Move the raw weights away from where SN estimated sigma at registration, as training would.
    with torch.no_grad():
        for m in modules:
            w = m.parametrizations.weight.original
            w.copy_(torch.randn_like(w) * 3.0 / w[0].numel() ** 0.5)  # largest singular value >= ~3
    G.train()
    D.train()
    for _ in range(20):  # each access to .weight in train mode runs one power iteration
        for m in modules:
            m.weight
    for m in modules:
        assert abs(_sigma(m) - 1.0) < 0.05, (m, _sigma(m))
        raw = m.parametrizations.weight.original.detach()
        raw = raw.transpose(0, 1) if isinstance(m, nn.ConvTranspose2d) else raw
        assert torch.linalg.matrix_norm(raw.reshape(raw.shape[0], -1), ord=2) > 1.5  # SN did the work


def test_spectral_norm_weight_is_frozen_in_eval_mode():
    lin = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 4))
    lin.eval()
    a = lin.weight.clone()
    b = lin.weight
    torch.testing.assert_close(a, b)  # no power iteration: sampling is deterministic


# --------------------------------------------------------------------- EMA


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.lin(x))


def _perturb(model, value):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(value)


def test_ema_warmup_copies_then_averages():
    torch.manual_seed(0)
    model = _Tiny()
    ema = EMA(model, decay=0.9, start=2)
    assert not any(p.requires_grad for p in ema.model.parameters())
    for step in (1, 2):  # warm-up: the copy follows G exactly
        _perturb(model, 0.5)
        ema.update(model, step)
        for e, p in zip(ema.model.parameters(), model.parameters()):
            torch.testing.assert_close(e, p)
    old = [p.clone() for p in ema.model.parameters()]
    _perturb(model, 1.0)
    model(torch.randn(8, 3))  # changes the BN running statistics
    ema.update(model, 3)
    d = min(0.9, 2 / 11)  # ramp: (1 + t) / (10 + t) with t = 1 step after the warm-up
    for e, o, p in zip(ema.model.parameters(), old, model.parameters()):
        torch.testing.assert_close(e, d * o + (1 - d) * p)
    for e, b in zip(ema.model.buffers(), model.buffers()):  # buffers are copied, not averaged
        torch.testing.assert_close(e, b)


def test_ema_decay_ramps_up_to_the_configured_value():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.5, start=0)
    old = ema.model.weight.clone()
    _perturb(model, 2.0)
    ema.update(model, 1)  # t = 1: ramp value 2/11 is below 0.5
    torch.testing.assert_close(ema.model.weight, (2 / 11) * old + (9 / 11) * model.weight.detach())
    old = ema.model.weight.clone()
    _perturb(model, 1.0)
    ema.update(model, 100)  # t = 100: ramp 101/110 > 0.5, so the configured decay applies
    torch.testing.assert_close(ema.model.weight, 0.5 * old + 0.5 * model.weight.detach())


# ------------------------------------------------------------- DiffAugment

POLICIES = ["color", "translation", "cutout", "translation,cutout,color"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("channels", [1, 3])
def test_diffaugment_seeded_and_shape_preserving(policy, channels):
    x = torch.rand(6, channels, 16, 16) * 2 - 1
    aug = DiffAugment(policy)
    a, b, c = aug(x, _gen(1)), aug(x, _gen(1)), aug(x, _gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)


@pytest.mark.parametrize("policy", POLICIES)
def test_diffaugment_is_differentiable(policy):
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = DiffAugment(policy)(x, _gen(0))
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_each_op_does_what_it_says():
    x = torch.rand(8, 3, 16, 16) + 0.5  # strictly positive, so zeroed pixels are visible
    t = translation(x, _gen(0))
    assert ((t == 0).flatten(1).any(1) | (t == x).flatten(1).all(1)).all()  # shifted in zeros (or no shift)
    k = cutout(x, _gen(0))
    zeros = (k == 0).all(1).flatten(1).sum(1)  # pixels zeroed in every channel
    assert (zeros > 0).all() and (zeros <= 8 * 8).all()  # a square of half the side, clipped at borders
    assert torch.equal(k[k != 0], x[k != 0])
    c = color(x, _gen(0))
    assert not torch.allclose(c, x)


def test_empty_policy_is_falsy():
    assert not DiffAugment("")
    assert DiffAugment("cutout")


def test_r2_penalises_the_gradient_on_generated_images(tmp_path):
    # A regulariser added through regularizers.py alone reaches the step, its log and the plan.
    from conftest import tiny_config, tiny_dataset
    from ganforge.regularizers import d_regularization
    from ganforge.train.trainer import Trainer

    cfg = tiny_config(tmp_path, "loss.r2_weight=2.0", "model.arch=mlp", "model.dropout=0")
    regs = d_regularization(cfg)
    (r2,) = [p for p in regs.penalties if p.name == "r2"]
    assert r2.weight == 1.0 and r2.every == 1 and regs.double_backward
    w = torch.randn(12)
    fake, real = torch.randn(4, 3, 2, 2), torch.zeros(4, 3, 2, 2)
    value = r2.fn(lambda x: x.flatten(1) @ w, real, fake, None)  # grad is w for every sample
    assert value.item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    logs = t.train_step()
    assert logs["r2"] > 0 and "r1" not in logs
