"""Learning-rate warm-up and decay: the factor, its use by the trainer, resume, and in-place tensor rates."""

import json
import math

import pytest
import torch

from conftest import assert_same_weights, full_and_interrupted, tiny_config, tiny_dataset
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.train.schedule import LearningRateSchedule
from ganforge.train.trainer import Trainer


def test_warmup_ramps_linearly_to_one():
    s = LearningRateSchedule(warmup=4, steps=100)
    assert [s.factor(i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert not s.constant and LearningRateSchedule(warmup=1).constant and LearningRateSchedule().constant


def test_linear_decay_starts_late_and_ends_at_its_floor():
    s = LearningRateSchedule(decay="linear", decay_start=0.5, decay_to=0.1, steps=100)
    assert s.factor(0) == s.factor(50) == 1.0
    assert s.factor(75) == pytest.approx(1 - 0.9 * 0.5)
    assert s.factor(100) == pytest.approx(0.1)
    values = [s.factor(i) for i in range(101)]
    assert all(b <= a for a, b in zip(values, values[1:]))


def test_cosine_decay_is_half_way_at_the_middle_of_its_span():
    s = LearningRateSchedule(decay="cosine", decay_start=0.0, decay_to=0.0, steps=10)
    assert s.factor(0) == 1.0 and s.factor(5) == pytest.approx(0.5) and s.factor(10) == pytest.approx(0.0)
    assert s.factor(2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))


def test_a_time_budget_ends_the_decay_when_it_comes_first():
    s = LearningRateSchedule(decay="linear", steps=1000, max_seconds=10.0)
    assert s.uses_time
    assert s.factor(10, seconds=5.0) == pytest.approx(0.5)  # time says half-way, steps 1%
    assert s.factor(900, seconds=1.0) == pytest.approx(0.1)  # steps say 90%
    assert s.factor(10, seconds=50.0) == 0.0
    assert not LearningRateSchedule(warmup=5, steps=1000, max_seconds=10.0).uses_time


@pytest.mark.parametrize("override, key", [("optim.lr_decay=step", "optim.lr_decay"),
                                           ("optim.lr_decay_start=1.0", "optim.lr_decay_start"),
                                           ("optim.lr_decay_to=1.5", "optim.lr_decay_to"),
                                           ("optim.lr_warmup=-1", "optim.lr_warmup")])
def test_bad_schedule_settings_name_the_option(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def _rates(t):
    return float(t.opt_g.param_groups[0]["lr"]), float(t.opt_d.param_groups[0]["lr"])


def test_trainer_applies_the_factor_before_each_step_and_logs_it(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=8", "train.log_every=1", "optim.lr_warmup=2", "optim.lr_decay=linear",
                      "optim.lr_decay_start=0.5", "optim.lr_decay_to=0.0", "optim.lr_g=4e-4", "optim.lr_d=1e-4")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    seen = []
    real_step = Trainer.train_step

    def spy(self):
        seen.append(_rates(self))
        return real_step(self)

    t.train_step = spy.__get__(t)
    t.train()
    expected = [t.hyper.schedule.factor(i) for i in range(8)]
    assert expected == [0.5, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
    assert seen == [pytest.approx((4e-4 * f, 1e-4 * f)) for f in expected]
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr_factor"] for r in records if "d_loss" in r] == pytest.approx(expected)


def test_constant_rates_log_no_factor(tmp_path):
    t = Trainer(tiny_config(tmp_path), tmp_path / "run", dataset=tiny_dataset())
    t.train()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("lr_factor" not in r for r in records)
    assert _rates(t) == (2e-4, 2e-4)


def test_a_scheduled_run_resumes_bit_identically(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=8", "train.ckpt_every=100", "optim.lr_warmup=3",
                      "optim.lr_decay=cosine", "optim.lr_decay_start=0.25", "optim.lr_decay_to=0.1")
    ds = tiny_dataset(n=40)
    full = full_and_interrupted(cfg, tmp_path, ds, stop_after=5)
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    assert resumed.hyper.lr_factor == pytest.approx(resumed.hyper.schedule.factor(5))
    resumed.train()
    assert_same_weights(full, resumed)


def test_under_a_time_budget_the_decay_follows_train_seconds(tmp_path, one_second_steps):
    cfg = tiny_config(tmp_path, "train.steps=1000", "train.max_seconds=4", "train.log_every=1",
                      "train.sample_every=100", "train.ckpt_every=100", "optim.lr_decay=linear")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    t.counters.clock = one_second_steps()
    assert t.train()["step"] == 4
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # Before step k+1, k seconds of the 4 have passed: the rates are 1 - k/4 of the base.
    assert [r["lr_factor"] for r in records if "d_loss" in r] == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_graph_style_tensor_rates_are_filled_in_place_and_saved_as_numbers(tmp_path):
    """With CUDA graphs the rates are tensors the captured step keeps reading; checked here on the CPU."""
    from ganforge import checkpoint as ckpt
    from ganforge.train.optim import apply_plan, set_learning_rates

    t = Trainer(tiny_config(tmp_path, "train.fused_optim=true"), tmp_path / "run", dataset=tiny_dataset())
    plan = t.plan.replace(cuda_graphs=True, fused_optim=True)
    apply_plan(t.opt_g, plan)
    lr = t.opt_g.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and lr.item() == pytest.approx(2e-4)
    set_learning_rates(t.opt_g, 2e-4, 0.5)
    assert t.opt_g.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(1e-4)
    # The update uses the tensor's current value: with a zero rate nothing moves.
    lr.fill_(0.0)
    before = [p.detach().clone() for p in t.G.parameters()]
    for p in t.G.parameters():
        p.grad = torch.ones_like(p)
    t.opt_g.step()
    assert all(torch.equal(a, p) for a, p in zip(before, t.G.parameters()))
    _, meta = ckpt.optimizer_to_flat("opt_g", t.opt_g)
    assert json.loads(json.dumps(meta))["param_groups"][0]["lr"] == 0.0
    apply_plan(t.opt_g, plan.replace(cuda_graphs=False))
    assert t.opt_g.param_groups[0]["lr"] == 0.0 and not torch.is_tensor(t.opt_g.param_groups[0]["lr"])
