"""Numerical faults: non-finite steps are skipped and counted, runs roll back, then stop with a diagnosis."""

import dataclasses
import json

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge.errors import TrainingError
from ganforge import checkpoint as ckpt
from ganforge.train.collapse import CollapseMonitor
from ganforge.train.trainer import Trainer


def _poison(trainer, bad_steps, once=False):
    """Make the D loss NaN on the given (1-based) iterations (only the first time each, if ``once``)."""
    adversarial = trainer.step_fn.adversarial
    remaining = set(bad_steps)

    def d_loss(real, fake, smoothing=0.0):
        loss = adversarial.d_loss(real, fake, smoothing)
        if trainer.step + 1 in remaining:
            if once:
                remaining.discard(trainer.step + 1)
            loss = loss * float("nan")
        return loss

    trainer.step_fn.adversarial = dataclasses.replace(adversarial, d_loss=d_loss)


def test_nan_step_is_skipped_and_counted(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=4", "train.log_every=1")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    _poison(t, {2})
    d_before = None
    t.train_step()
    d_before = [p.detach().clone() for p in t.D.parameters()]
    t.train_step()  # step 2: D update skipped
    assert all(torch.equal(a, b) for a, b in zip(d_before, t.D.parameters()))
    assert t.counters.skipped_steps == 1
    t.train()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in t.D.parameters())


def test_consecutive_bad_steps_roll_back_and_lower_the_learning_rate(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=12", "train.ckpt_every=4", "train.max_bad_steps=3",
                      "train.rollback_lr_factor=0.5")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    _poison(t, {6, 7, 8}, once=True)  # three bad iterations in a row after the step-4 checkpoint
    t.train()
    assert t.counters.rollbacks == 1 and t.step == 12
    assert t.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr_g * 0.5)
    events = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rollback = [e for e in events if e.get("event") == "rollback"]
    assert rollback and rollback[0]["step"] == 4 and rollback[0]["from_step"] == 8
    # the lowered rate survives a resume
    again = Trainer.resume(tmp_path / "run", dataset=tiny_dataset())
    assert again.counters.rollbacks == 1 and again.opt_d.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr_d * 0.5)


def test_persistent_divergence_stops_with_a_diagnosis(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=50", "train.max_bad_steps=2", "train.max_rollbacks=2")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    _poison(t, set(range(1, 100)))
    with pytest.raises(TrainingError, match="diverged"):
        t.train()
    assert t.counters.rollbacks == 2
    # nothing non-finite was ever written
    for _, path in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints"):
        c = ckpt.load_checkpoint(path)
        assert all(torch.isfinite(v).all() for m in c.weights.values() for v in m.values() if v.is_floating_point())


def test_collapse_monitor_warns(caplog):
    m = CollapseMonitor(patience=3)
    for step in range(5):
        m.check_losses(step, {"d_loss": 1e-5}, logistic=True)
    assert any("no signal" in r.message for r in caplog.records)
    varied = torch.randn(16, 1, 8, 8)
    m.check_diversity(1, varied)
    m.check_diversity(2, varied[:1].expand(16, -1, -1, -1) + 1e-3 * torch.randn(16, 1, 8, 8))
    assert any("mode collapse" in r.message for r in caplog.records)
