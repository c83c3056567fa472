"""Schedules by images seen (rates, gamma, beta2), EMA as a half-life in images, their logs and resume."""

import json
import math

import pytest
import torch
from torch import nn

from conftest import assert_same_weights, full_and_interrupted, tiny_config, tiny_dataset
from ganforge.errors import ConfigError
from ganforge.train.ema import EMA
from ganforge.train.schedule import ImageSchedule, cosine_with_warmup
from ganforge.train.trainer import Trainer


def test_cosine_with_warmup_at_chosen_image_counts():
    f = lambda n: cosine_with_warmup(n, 1.0, 0.25, total=1000, warmup=200, start=0.0)  # noqa: E731
    assert [f(0), f(100), f(200)] == [0.0, 0.5, 1.0]
    assert f(600) == pytest.approx(0.25 + 0.75 * 0.5)  # half-way through the cosine
    assert f(400) == pytest.approx(0.25 + 0.75 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(1000) == pytest.approx(0.25) and f(5000) == pytest.approx(0.25)
    assert cosine_with_warmup(100, 0.9, 0.99, total=1000, warmup=200) == 0.9  # held during warm-up


def test_image_schedule_values(tmp_path):
    cfg = tiny_config(tmp_path, "optim.schedule_kimg=1", "optim.warmup_kimg=0.2", "optim.lr_decay_to=0.25",
                      "loss.gamma=1", "loss.gamma_decay_to=0.1", "optim.beta2=0.9", "optim.beta2_final=0.99")
    s = ImageSchedule.from_config(cfg)
    assert s.lr_factor(100) == pytest.approx(116 / 200)  # the step's own 16 images count
    assert s.gamma_factor(100) == 1.0 and s.beta2_at(100) == 0.9
    assert s.lr_factor(600) == pytest.approx(0.625)
    assert s.gamma_factor(600) == pytest.approx(0.55) and s.beta2_at(600) == pytest.approx(0.945)
    assert s.gamma_factor(1000) == pytest.approx(0.1) and s.beta2_at(1000) == pytest.approx(0.99)
    assert ImageSchedule.from_config(tiny_config(tmp_path)) is None
    constant_beta2 = ImageSchedule.from_config(tiny_config(tmp_path, "optim.schedule_kimg=1"))
    assert constant_beta2.beta2_at(500) == 0.999


def test_image_and_step_schedules_are_exclusive(tmp_path):
    for step_based in ("optim.lr_decay=cosine", "optim.lr_warmup=10"):  # refused when the config is read
        with pytest.raises(ConfigError, match="optim.schedule_kimg"):
            tiny_config(tmp_path, "optim.schedule_kimg=1", step_based)


def test_ema_half_life_in_images_with_ramp():
    ema = EMA(nn.Linear(2, 2), 0.0, halflife_images=1000, rampup=0.05, batch=16, images_per_step=16)
    # Step 10: 160 images seen, ramp 0.05 -> half-life 8 images -> beta 0.5 ** 2.
    assert ema.beta(10) == pytest.approx(0.25)
    assert ema.beta(10_000) == pytest.approx(0.5 ** (16 / 1000))  # ramp over: the configured half-life
    assert EMA(nn.Linear(2, 2), 0.0, halflife_images=1000, batch=16).beta(1) == pytest.approx(0.5 ** 0.016)
    assert EMA(nn.Linear(2, 2), 0.999).beta(5) == pytest.approx(6 / 15)  # the step-based ramp is unchanged


SCHEDULED = ["loss.name=rpgan", "loss.gamma=1", "loss.r1_every=1", "loss.gamma_decay_to=0.1",
             "optim.schedule_kimg=0.096", "optim.warmup_kimg=0.064", "optim.lr_decay_to=0.25",
             "optim.beta2_final=0.99", "train.ema_halflife_kimg=0.1", "train.ema_rampup=0.5"]


def test_every_scheduled_value_reaches_the_metrics_log(tmp_path):
    cfg = tiny_config(tmp_path, *SCHEDULED)  # 16 images per step: warm-up over steps 0-3
    trainer = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset(48))
    trainer.train()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "lr_g" in r]
    assert [r["step"] for r in records] == [2, 4, 6]
    s = trainer.hyper.image_schedule
    for r in records:
        seen_before = (r["step"] - 1) * 16  # the values of the step just logged
        assert r["lr_factor"] == pytest.approx(s.lr_factor(seen_before))
        assert r["lr_g"] == pytest.approx(cfg.optim.lr_g * s.lr_factor(seen_before))
        assert r["gamma"] == pytest.approx(s.gamma_factor(seen_before))
        assert r["beta2"] == pytest.approx(s.beta2_at(seen_before))
        assert r["ema_beta"] == pytest.approx(trainer.ema.beta(r["step"]))
    assert records[0]["lr_factor"] == pytest.approx(0.5)  # 16 + 16 of 64 warm-up images
    assert trainer.opt_d.param_groups[0]["betas"] == (cfg.optim.beta1, pytest.approx(s.beta2_at(80)))


def test_resume_in_the_middle_of_the_warm_up_is_bit_identical(tmp_path):
    cfg = tiny_config(tmp_path, *SCHEDULED, "optim.warmup_kimg=0.08", "train.ckpt_every=2")
    ds = tiny_dataset(48)
    full = full_and_interrupted(cfg, tmp_path, ds, stop_after=2)  # stops at 32 of 80 warm-up images
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    assert resumed.hyper.lr_factor == pytest.approx(0.6) and resumed.counters.images_seen == 32
    resumed.train()
    assert_same_weights(full, resumed)
    assert torch.equal(torch.tensor(full.opt_g.param_groups[0]["betas"]),
                       torch.tensor(resumed.opt_g.param_groups[0]["betas"]))
