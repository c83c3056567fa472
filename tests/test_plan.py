"""The execution plan: every switch decided once, with a reason, from config + device + task + regularisers."""

import json

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.regularizers import d_regularization
from ganforge.tasks import task_class
from ganforge.train import precision
from ganforge.train.plan import SWITCHES, plan_from_dict, reference_plan, resolve_plan
from ganforge.train.trainer import Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _plan(tmp_path, *overrides, device=CPU, distributed=False):
    cfg = tiny_config(tmp_path, *overrides)
    _, D = build_models(cfg)
    return resolve_plan(cfg, device, task_class(cfg).capabilities_for(cfg, D), d_regularization(cfg), distributed)


def test_every_switch_has_a_reason(tmp_path):
    plan = _plan(tmp_path)
    assert set(plan.reasons) == set(SWITCHES)
    assert all(plan.reasons[name] for name in SWITCHES)
    assert plan_from_dict(json.loads(json.dumps(plan.as_dict()))) == plan


def test_reference_path_is_the_plan_with_every_switch_off(tmp_path):
    plan = _plan(tmp_path, "train.fast=false", "model.arch=mlp")
    ref = reference_plan(CPU)
    for name in SWITCHES:
        assert getattr(plan, name) == getattr(ref, name), name
    assert not plan.skip_on_device  # the host checks each update, as the plain loop does
    assert "reference" in plan.reasons["reuse_fake"]


@pytest.mark.parametrize("native", [True, False])
def test_cpu_precision_follows_native_bf16(tmp_path, monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: native)
    plan = _plan(tmp_path)
    assert plan.precision == ("bf16" if native else "fp32")
    assert ("natively" in plan.reasons["precision"]) == native


def test_batchnorm_in_d_forbids_one_d_pass(tmp_path):
    assert not _plan(tmp_path).batch_d  # DCGAN's D has BatchNorm
    assert _plan(tmp_path, "model.d_batchnorm=false").batch_d


def test_double_backward_keeps_d_eager_and_uncaptured(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cuda_supports_bf16", lambda device: True)
    gp = _plan(tmp_path, "loss.name=wgan-gp", "model.d_batchnorm=false", "train.compile=true", device=CUDA)
    assert gp.compile_g and not gp.compile_d and "double backward" in gp.reasons["compile_d"]
    assert not gp.cuda_graphs and "gradient penalty" in gp.reasons["cuda_graphs"]
    # Eager CUDA steps run fp32 under precision=auto (bf16's casts cost more than they save there).
    assert gp.precision == "fp32" and "eager" in gp.reasons["precision"]


def test_cuda_graph_eligibility(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cuda_supports_bf16", lambda device: True)
    plain = _plan(tmp_path, device=CUDA)
    assert plain.cuda_graphs and plain.precision == "bf16" and plain.cudnn_benchmark
    conditional = _plan(tmp_path, "model.arch=resnet", "model.num_classes=10", device=CUDA)
    assert conditional.cuda_graphs
    for overrides, why in [(("train.augment=translation",), "outside the recorded draws"),
                           (("loss.r1_weight=1",), "penalty"),
                           (("model.arch=inpaint",), "outside the recorded draws"),
                           (("train.fused_optim=false",), "fused"),
                           (("train.precision=fp16",), "fp16")]:
        plan = _plan(tmp_path, *overrides, device=CUDA)
        assert not plan.cuda_graphs and why in plan.reasons["cuda_graphs"], overrides
    ddp = _plan(tmp_path, device=CUDA, distributed=True)
    assert not ddp.cuda_graphs and "torchrun" in ddp.reasons["cuda_graphs"]


def test_tf32_is_a_cuda_switch_set_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cuda_supports_bf16", lambda device: True)
    assert _plan(tmp_path, device=CUDA).tf32
    assert not _plan(tmp_path, "train.tf32=false", device=CUDA).tf32
    cpu = _plan(tmp_path)
    assert not cpu.tf32 and cpu.reasons["tf32"] == "CUDA only"
    before = torch.get_float32_matmul_precision()
    cpu.apply_backend_flags()  # a switch that is off leaves torch's default alone
    assert torch.get_float32_matmul_precision() == before


def test_execution_keys_are_config_keys_and_resumable(tmp_path):
    from ganforge.config import to_flat_dict
    from ganforge.train.plan import EXECUTION_KEYS

    flat = to_flat_dict(tiny_config(tmp_path))
    assert all(k in flat for k in EXECUTION_KEYS) and "train.tf32" in EXECUTION_KEYS


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(ConfigError, match="train.precision"):
        _plan(tmp_path, "train.precision=fp16")


def test_a_run_writes_and_prints_its_plan(tmp_path, caplog):
    cfg = tiny_config(tmp_path, "train.steps=1")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    with caplog.at_level("INFO"):
        t.train()
    saved = json.loads((tmp_path / "run" / "execution.json").read_text())
    assert plan_from_dict(saved) == t.plan
    assert "execution plan (cpu):" in caplog.text and "reuse_fake=on" in caplog.text
    assert len(t.plan.describe().splitlines()) == len(SWITCHES) + 3  # a line per switch, threads, the allocator
    assert saved["keep_freed_memory"]["reason"] == t.plan.allocator_reason != ""
    assert f"keep_freed_memory={'on' if t.plan.keep_freed_memory else 'off'}" in caplog.text


def test_failed_capture_drops_the_graph_and_the_bf16_chosen_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cuda_supports_bf16", lambda device: True)
    auto = _plan(tmp_path, device=CUDA)
    assert auto.cuda_graphs and auto.precision == "bf16"
    eager = auto.without_cuda_graphs("capture failed: RuntimeError: sync")
    assert not eager.cuda_graphs and eager.reasons["cuda_graphs"] == "capture failed: RuntimeError: sync"
    assert eager.precision == "fp32" and "capture failed" in eager.reasons["precision"]
    explicit = _plan(tmp_path, "train.precision=bf16", device=CUDA).without_cuda_graphs("capture failed: x")
    assert explicit.precision == "bf16" and not explicit.cuda_graphs  # asked for: kept


def test_trainer_continues_eagerly_in_fp32_after_a_failed_capture(tmp_path):
    """What the trainer does when the graph runner reports a failure (simulated here: no CUDA)."""
    from ganforge.train.plan import _BF16_IN_GRAPH

    cfg = tiny_config(tmp_path, "train.steps=3")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    t.plan = t.plan.replace(precision="bf16", cuda_graphs=True, reasons={"precision": _BF16_IN_GRAPH})
    t.precision = t.step_fn.precision = precision.Precision("bf16", CPU)

    class FailedCapture:  # what GraphedStep is after a failed capture: it ran the step eagerly
        failed = "RuntimeError: operation not permitted when stream is capturing"

        def __call__(self, batches, iteration):
            return t.step_fn(batches, iteration)

    t.runner = FailedCapture()
    t.train_step()
    assert t.runner is t.step_fn and not t.plan.cuda_graphs
    assert t.plan.precision == "fp32" and t.precision.mode == "fp32" and t.step_fn.precision is t.precision
    saved = plan_from_dict(json.loads((tmp_path / "run" / "execution.json").read_text()))
    assert saved.precision == "fp32" and not saved.cuda_graphs
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "cuda_graph_failed" for e in events)
    assert all(torch.isfinite(p).all() for p in t.G.parameters())
    logs = t.train_step()  # and the next step runs eagerly in fp32
    assert logs and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
