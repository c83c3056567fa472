"""Extending ganforge from outside the package: a loss and a task defined in this file only.

The toy task is 2x super-resolution of small gray images with an L1 + adversarial
generator loss, trained by a toy model family. Registered here, they train,
checkpoint, resume bit-identically, evaluate periodically, export (safetensors and
ONNX) and load back, with no edit to package code.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_same_weights, full_and_interrupted, tiny_config, tiny_dataset
from ganforge.errors import ConfigError
from ganforge.losses import AdversarialLoss, LOSSES, register_loss, unregister_loss
from ganforge.models import register_model, unregister_model
from ganforge.tasks import Batch, TaskScores, Fake, Task, register_task, unregister_task
from ganforge.train.trainer import Trainer


# --------------------------------------------------------------- toy family

class Upsampler(nn.Module):
    """(N, C, h, w) -> (N, C, 2h, 2w): nearest upsampling plus a learned residual."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(low, scale_factor=2, mode="nearest")
        return (up + self.body(up)).clamp(-1, 1)


class PairCritic(nn.Module):
    """D(x (N, C, H, W), low (N, C, H/2, W/2)) -> (N,) logits: the image beside its upsampled input."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2 * channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(torch.cat([x, F.interpolate(low, size=x.shape[-2:], mode="nearest")], 1)).mean((1, 2, 3))


def build_toy_sr(cfg):
    return Upsampler(cfg.data.channels, cfg.model.g_width), PairCritic(cfg.data.channels, cfg.model.d_width)


def toy_sr_inputs(cfg, batch, device="cpu"):
    """One forward pass of G and D for the memory pre-flight: (low,), (image, low)."""
    c, s = cfg.data.channels, cfg.data.image_size
    low = torch.zeros(batch, c, s // 2, s // 2, device=device)
    return (low,), (torch.zeros(batch, c, s, s, device=device), low)


# ----------------------------------------------------------------- toy task

class SuperResolution(Task):
    """G(low) restores the image that ``avg_pool2d(x, 2)`` made ``low``; D scores (image, low) pairs."""

    families = ("toy-sr",)
    dynamic_size = True

    def d_batch(self, real, labels):
        return Batch(real, F.avg_pool2d(real, 2))

    def generate(self, batch):
        return Fake(self.G(batch.cond))

    def g_loss(self, batch, fake):
        l1 = (fake.images.float() - batch.real.float()).abs().mean()
        adv = self.adversarial_g_loss(batch, self.D(fake.images, batch.cond))
        return 10.0 * l1 + adv, {"l1": l1.detach()}

    @classmethod
    def example_inputs(cls, cfg, batch, gen, size=None):
        s = (size or cfg.data.image_size) // 2
        return {"low": torch.rand(batch, cfg.data.channels, s, s, generator=gen) * 2 - 1}

    def _fixed(self) -> torch.Tensor:
        return tiny_dataset(8, seed=1).images.float().div(127.5).sub(1.0)

    @torch.no_grad()
    def preview(self, model, dataset=None, autocast=None):
        x = self._fixed()
        return torch.cat([x, model(F.avg_pool2d(x, 2))]), x.shape[0]

    @torch.no_grad()
    def evaluate(self, model, device):
        x = self._fixed()
        return TaskScores({"l1_sr8": (model(F.avg_pool2d(x, 2)) - x).abs().mean().item()}, primary="l1_sr8")


# ----------------------------------------------------------------- toy loss

SEEN = []  # what the toy loss's G term received as real logits


def softplus_pair_d(real, fake, smoothing=0.0):
    return F.softplus(fake.float() - real.float()).mean()


def softplus_pair_g(fake, real=None):
    SEEN.append(None if real is None else tuple(real.shape))
    return F.softplus(real.float() - fake.float()).mean()


@pytest.fixture
def toys():
    register_model("toy-sr", example_inputs=toy_sr_inputs)(build_toy_sr)
    register_task("toy-sr2x")(SuperResolution)
    register_loss("toy-pair", AdversarialLoss(softplus_pair_d, softplus_pair_g, logistic=False, g_needs_real=True))
    SEEN.clear()
    yield
    unregister_loss("toy-pair")
    unregister_task("toy-sr2x")
    unregister_model("toy-sr")


SR = ["task=toy-sr2x", "model.arch=toy-sr", "loss.name=toy-pair", "model.g_width=8", "model.d_width=8",
      "train.eval_every=3", "train.eval_n=8", "train.ckpt_every=3", "train.steps=6"]


def test_toy_loss_task_and_family_train_resume_and_evaluate(toys, tmp_path):
    cfg = tiny_config(tmp_path, *SR)
    ds = tiny_dataset()
    full = full_and_interrupted(cfg, tmp_path, ds, stop_after=3)
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    resumed.train()
    assert_same_weights(full, resumed)
    # The G term saw D's logits on the real batch (batch of 16), every G step.
    assert SEEN and set(SEEN) == {(16,)}
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [3, 6] and all(r["l1_sr8"] > 0 for r in evals)
    assert "l1" in next(r for r in records if "g_loss" in r)
    assert (tmp_path / "full" / "checkpoints" / "best" / "best.json").is_file()
    assert (tmp_path / "full" / "samples" / "step_00000006.png").is_file()


def test_toy_task_exports_and_loads_back(toys, tmp_path):
    pytest.importorskip("onnxruntime")
    from ganforge.artifacts import export_generator, load_generator
    from ganforge.onnx_export import export_run_onnx

    cfg = tiny_config(tmp_path, *SR, "train.eval_every=0")
    Trainer(cfg, tmp_path / "run", dataset=tiny_dataset()).train()
    G, _, _ = load_generator(tmp_path / "run")
    export_generator(tmp_path / "run", tmp_path / "exported")
    G2, cfg2, _ = load_generator(tmp_path / "exported")
    low = torch.rand(3, 1, 14, 14) * 2 - 1
    assert cfg2.task == "toy-sr2x" and torch.equal(G(low), G2(low))
    with pytest.raises(ConfigError, match="--checkpoint"):  # a saved folder has one set of weights
        load_generator(tmp_path / "exported", checkpoint=tmp_path / "run" / "checkpoints" / "step_00000006")
    report = export_run_onnx(tmp_path / "run", tmp_path / "onnx")
    assert report.kind == "toy-sr2x generator" and list(report.inputs) == ["low"]
    assert report.inputs["low"] == ["batch", 1, "height", "width"]
    assert report.max_abs_diff <= report.tolerance and report.max_abs_diff_other_batch <= report.tolerance


def test_sampling_a_task_that_does_not_draw_from_noise_is_one_line(toys, tmp_path):
    from ganforge.sampling import generate

    cfg = tiny_config(tmp_path, *SR)
    with pytest.raises(ConfigError, match="does not draw images from noise"):
        next(generate(nn.Identity(), cfg, 4))


def test_task_and_family_must_agree(toys, tmp_path):
    with pytest.raises(ConfigError, match="model.arch.*toy-sr"):
        Trainer(tiny_config(tmp_path, "task=toy-sr2x", "model.arch=dcgan"), tmp_path / "a", dataset=tiny_dataset())
    with pytest.raises(ConfigError, match="set task=toy-sr2x"):
        Trainer(tiny_config(tmp_path, "model.arch=toy-sr"), tmp_path / "b", dataset=tiny_dataset())
    with pytest.raises(ConfigError, match="task: must be one of generation, inpaint"):
        Trainer(tiny_config(tmp_path, "task=nonesuch"), tmp_path / "c", dataset=tiny_dataset())


def test_a_registered_loss_is_a_valid_config_choice(toys, tmp_path):
    assert tiny_config(tmp_path, "loss.name=toy-pair").loss.name == "toy-pair"
    unregister_loss("toy-pair")
    with pytest.raises(ConfigError, match="loss.name"):
        tiny_config(tmp_path, "loss.name=toy-pair")


def test_generator_phase_reads_real_logits_only_when_the_loss_asks(tmp_path):
    """The built-in losses never pay for D(real) in the G phase: one D call there, on the fakes."""
    from ganforge.tasks import GenerationTask

    calls = []
    trainer = Trainer(tiny_config(tmp_path, "train.steps=1", "train.fast=false"), tmp_path / "r",
                      dataset=tiny_dataset())
    real_g = GenerationTask.g_loss

    def counting_g_loss(self, batch, fake):
        before = len(calls)
        handle = self.D.register_forward_hook(lambda *a: calls.append(1))
        try:
            return real_g(self, batch, fake)
        finally:
            handle.remove()
            calls.append(("g_phase_d_calls", len(calls) - before))

    trainer.task.g_loss = counting_g_loss.__get__(trainer.task)
    trainer.train()
    assert ("g_phase_d_calls", 1) in calls


def test_readme_loss_table_is_the_registry():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| `loss.name` |"):]
    table = table[:table.index("\n\n")]
    names = [row.split("`")[1] for row in table.splitlines()[2:]]
    assert names == [n for n in LOSSES if n != "toy-pair"]


def test_train_help_lists_the_registries_without_importing_torch_to_build_it():
    code = ("import sys; from ganforge.cli import build_parser; p = build_parser(); "
            "assert 'torch' not in sys.modules; p.parse_args(['train', '--help'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("generation", "inpaint", "rpgan", "hinge", "dcgan", "resnet"):
        assert name in out.stdout, name


def test_one_registry_type_behind_every_concept():
    from ganforge.metrics.catalog import _REGISTRY as METRICS
    from ganforge.models.families import _REGISTRY as MODELS
    from ganforge.registry import Registry
    from ganforge.tasks import TASKS

    assert all(isinstance(r, Registry) for r in (LOSSES, TASKS, MODELS, METRICS))
    r = Registry("widget", "train.widget", lower=True)
    r.add("b", 2)
    r.add("a", 1)
    assert r.names() == ("b", "a") and dict(r) == {"b": 2, "a": 1}
    for bad in ("", "A", "x y", "x,y", "x=y"):
        with pytest.raises(ValueError):
            r.check_name(bad)
    with pytest.raises(ValueError, match="already registered"):
        r.add("a", 3)
    with pytest.raises(ConfigError) as err:
        r.get_or_error("c")
    assert err.value.where == "train.widget" and "must be one of b, a" in str(err.value)
    r.remove("a")
    r.remove("never")
    assert r.names() == ("b",)
