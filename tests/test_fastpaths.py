"""The fast training paths train correctly: finite losses, and the same results as the reference path."""

import dataclasses

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge.train.precision import cpu_supports_bf16
from ganforge.train.trainer import Trainer


def _trainer(tmp_path, name, *overrides, dataset=None, **train):
    """A tiny trainer; ``train`` sets execution switches (as attributes, so they work before the config knows them)."""
    cfg = tiny_config(tmp_path, *overrides)
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return Trainer(cfg, tmp_path / name, dataset=dataset or tiny_dataset())


def _run(t, steps=2):
    return [t.train_step() for _ in range(steps)]


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _max_rel(a, b):
    return max(((x - y).norm() / y.norm().clamp_min(1e-12)).item() for x, y in zip(a, b))


REFERENCE = {"fast": False, "precision": "fp32"}


def test_default_resolves_to_the_fastest_correct_mode(tmp_path):
    t = _trainer(tmp_path, "run")
    assert t.precision.mode == ("bf16" if cpu_supports_bf16() else "fp32")
    assert t.plan.fused_optim and t.plan.skip_on_device
    assert t.opt_d.param_groups[0]["fused"] and t.opt_g.param_groups[0]["fused"]
    assert t.plan.reuse_fake
    assert not t.plan.batch_d  # DCGAN's D has BatchNorm: one forward would mix real and fake statistics
    assert "BatchNorm" in t.plan.reasons["batch_d"]
    assert not t.plan.cuda_graphs and t.plan.reasons["cuda_graphs"] == "CUDA only"
    mlp = _trainer(tmp_path, "mlp", "model.arch=mlp")
    assert mlp.plan.batch_d


def test_reference_path_switches_everything_off(tmp_path):
    t = _trainer(tmp_path, "run", **REFERENCE)
    assert t.precision.mode == "fp32"
    assert not t.plan.reuse_fake and not t.plan.batch_d and not t.plan.fused_optim and not t.plan.skip_on_device
    assert not t.opt_d.param_groups[0]["fused"]
    t2 = _trainer(tmp_path, "auto", fast=False)  # precision auto means fp32 on the reference path
    assert t2.precision.mode == "fp32"


def test_bf16_autocast_matches_fp32(tmp_path):
    ref = _run(_trainer(tmp_path, "fp32", **REFERENCE))
    bf16 = _run(_trainer(tmp_path, "bf16", fast=False, precision="bf16"))
    for a, b in zip(ref, bf16):
        for k in ("d_loss", "g_loss", "d_real", "d_fake"):
            assert torch.isfinite(torch.tensor(b[k]))
            assert b[k] == pytest.approx(a[k], abs=0.05), k


def test_bf16_keeps_parameters_and_optimizer_state_in_float32(tmp_path):
    t = _trainer(tmp_path, "run", precision="bf16")
    _run(t, 2)
    assert all(p.dtype == torch.float32 for p in t.G.parameters())
    state = t.opt_g.state[next(iter(t.G.parameters()))]
    assert state["exp_avg"].dtype == torch.float32


def test_channels_last_is_bit_close_to_contiguous(tmp_path):
    a = _trainer(tmp_path, "nchw", **REFERENCE)
    b = _trainer(tmp_path, "nhwc", "train.channels_last=true", **REFERENCE)
    la, lb = _run(a), _run(b)
    for x, y in zip(la, lb):
        assert y["d_loss"] == pytest.approx(x["d_loss"], rel=1e-4, abs=1e-5)
        assert y["g_loss"] == pytest.approx(x["g_loss"], rel=1e-4, abs=1e-5)
    assert _max_rel(_params(b.G), _params(a.G)) < 1e-4
    assert _max_rel(_params(b.D), _params(a.D)) < 1e-4


def test_fused_adam_matches_foreach_adam():
    torch.manual_seed(0)
    params = [torch.randn(17, 5), torch.randn(33), torch.randn(4, 3, 3, 3)]
    a = [p.clone().requires_grad_(True) for p in params]
    b = [p.clone().requires_grad_(True) for p in params]
    opt_a = torch.optim.Adam(a, lr=2e-4, betas=(0.5, 0.999), foreach=True)
    opt_b = torch.optim.Adam(b, lr=2e-4, betas=(0.5, 0.999), fused=True)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in params]
        for p, g in zip(a, grads):
            p.grad = g.clone()
        for p, g in zip(b, grads):
            p.grad = g.clone()
        opt_a.step()
        opt_b.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


def test_fused_adam_path_matches_unfused_in_the_trainer(tmp_path):
    common = dict(fast=True, precision="fp32")
    a = _trainer(tmp_path, "fused", **common)
    b = _trainer(tmp_path, "loop", fused_optim=False, **common)
    for x, y in zip(_run(a), _run(b)):
        assert x["g_loss"] == pytest.approx(y["g_loss"], rel=1e-5, abs=1e-6)
    assert _max_rel(_params(a.G), _params(b.G)) < 1e-5


def test_reuse_fake_runs_the_generator_once_per_iteration(tmp_path):
    counts = {}

    def count(name):
        def hook(module, args, out):
            counts[name] = counts.get(name, 0) + 1
        return hook

    ref = _trainer(tmp_path, "ref", fast=True, precision="fp32", reuse_fake=False)
    fast = _trainer(tmp_path, "fast", fast=True, precision="fp32")
    ref.G.register_forward_hook(count("ref"))
    fast.G.register_forward_hook(count("fast"))
    g0 = _params(fast.G)
    logs = _run(ref, 2), _run(fast, 2)
    assert counts == {"ref": 4, "fast": 2}
    for run in logs:
        for step in run:
            assert all(torch.isfinite(torch.tensor(v)) for v in step.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, fast.G.parameters()))
    # The first D step sees the same fakes either way (same noise draw), so D's first loss agrees.
    assert logs[0][0]["d_loss"] == pytest.approx(logs[1][0]["d_loss"], rel=1e-5)


def test_reuse_fake_with_several_d_steps_keeps_the_last_fakes(tmp_path):
    t = _trainer(tmp_path, "run", "optim.n_dis=3", fast=True)
    logs = _run(t, 2)
    assert all(torch.isfinite(torch.tensor(v)) for step in logs for v in step.values())
    assert t.step == 2 and t.counters.images_seen == 2 * 3 * 16


def test_one_d_forward_matches_two(tmp_path):
    # An MLP discriminator without dropout has no batch-dependent layer: one forward on
    # cat(real, fake) is the same function as two forwards.
    common = ("model.arch=mlp", "model.dropout=0")
    a = _trainer(tmp_path, "two", *common, fast=True, precision="fp32", batch_d=False)
    b = _trainer(tmp_path, "one", *common, fast=True, precision="fp32", batch_d=True)
    assert b.plan.batch_d and not a.plan.batch_d
    for x, y in zip(_run(a), _run(b)):
        for k in ("d_loss", "g_loss", "d_real", "d_fake"):
            assert y[k] == pytest.approx(x[k], rel=1e-5, abs=1e-6), k
    assert _max_rel(_params(b.D), _params(a.D)) < 1e-5


def test_one_d_forward_with_gradient_penalty_and_labels(tmp_path):
    t = _trainer(tmp_path, "gp", "loss.name=wgan-gp", "model.d_batchnorm=false", "model.num_classes=10",
                 fast=True)
    assert t.plan.batch_d
    logs = _run(t, 2)
    assert all(torch.isfinite(torch.tensor(step[k])) for step in logs for k in ("d_loss", "g_loss", "gp"))


def test_fast_path_skips_a_non_finite_update_on_the_device(tmp_path):
    t = _trainer(tmp_path, "run", fast=True)
    t.train_step()
    d0 = _params(t.D)
    p0 = next(iter(t.D.parameters()))
    step0 = t.opt_d.state[p0]["step"].clone()
    moment0 = t.opt_d.state[p0]["exp_avg"].clone()
    adversarial = t.step_fn.adversarial
    t.step_fn.adversarial = dataclasses.replace(
        adversarial, d_loss=lambda real, fake, s=0.0: adversarial.d_loss(real, fake, s) * float("nan"))
    t.train_step()
    assert t.counters.skipped_steps == 1 and t.counters.bad_in_a_row == 1
    assert all(torch.equal(a, b) for a, b in zip(d0, t.D.parameters()))
    assert torch.equal(t.opt_d.state[p0]["step"], step0)  # the fused kernel undid its step count
    assert torch.equal(t.opt_d.state[p0]["exp_avg"], moment0)
    t.step_fn.adversarial = adversarial
    t.train_step()
    assert t.counters.bad_in_a_row == 0 and not all(torch.equal(a, b) for a, b in zip(d0, t.D.parameters()))


def test_a_checkpoint_of_the_reference_path_resumes_on_the_fast_path(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=4", "train.ckpt_every=2")
    for key, value in REFERENCE.items():
        setattr(cfg.train, key, value)
    ds = tiny_dataset()
    Trainer(cfg, tmp_path / "run", dataset=ds).train(stop_after=2)
    cfg.train.fast, cfg.train.precision = True, "auto"
    t = Trainer.resume(tmp_path / "run", cfg, dataset=ds)
    assert t.opt_g.param_groups[0]["fused"]  # the implementation follows this run, not the checkpoint
    assert t.opt_g.state[next(iter(t.G.parameters()))]["step"].item() == 2
    summary = t.train()
    assert summary["step"] == 4


@pytest.mark.slow
def test_compiled_forward_passes_match_eager(tmp_path):
    pytest.importorskip("torch._inductor")
    a = _trainer(tmp_path, "eager", fast=True, precision="fp32")
    b = _trainer(tmp_path, "compiled", "train.compile=true", fast=True, precision="fp32")
    for x, y in zip(_run(a, 2), _run(b, 2)):
        assert y["d_loss"] == pytest.approx(x["d_loss"], rel=1e-3, abs=1e-4)
        assert y["g_loss"] == pytest.approx(x["g_loss"], rel=1e-3, abs=1e-4)
