"""What changes while a run trains: the learning rates, gamma, Adam's beta2 and the EMA's beta.

One object applies, before every generator step, everything that moves those values:
the rollback factor (``train.rollback_lr_factor`` per rollback), the step- or
time-based learning-rate schedule (:class:`~ganforge.train.schedule.LearningRateSchedule`)
and the schedule by images seen (:class:`~ganforge.train.schedule.ImageSchedule`: rates,
gamma, beta2), and reports their current values for ``metrics.jsonl``. Under CUDA
graphs the rates are device tensors filled in place, so a captured step stays valid.
"""

from __future__ import annotations

from typing import Callable

from ganforge.config import RunConfig
from ganforge.regularizers import DRegularization
from ganforge.train.optim import set_beta2, set_learning_rates
from ganforge.train.schedule import ImageSchedule, LearningRateSchedule


class Hyperparameters:
    """The values a run schedules. ``apply(...)`` before a step, ``values(step)`` for its log line."""

    def __init__(self, cfg: RunConfig, regs: DRegularization):
        self.cfg, self.regs = cfg, regs
        self.schedule = LearningRateSchedule.from_config(cfg)
        self.image_schedule = ImageSchedule.from_config(cfg)
        self.lr_factor = 1.0  # the rates now, as a multiple of optim.lr_g / lr_d

    @property
    def constant(self) -> bool:
        """Nothing is scheduled: the rates change only at a rollback."""
        return self.schedule.constant and self.image_schedule is None

    def apply(self, opt_g, opt_d, step: int, images: int, rollbacks: int, seconds: Callable[[], float]) -> None:
        """Set the optimizers' rates (and beta2, and the scheduled penalties' gamma) for the next step.

        ``seconds()`` gives the run's train_seconds (read only by a time-based schedule).
        """
        factor = self.cfg.train.rollback_lr_factor ** rollbacks
        if not self.schedule.constant:
            factor *= self.schedule.factor(step, seconds() if self.schedule.uses_time else 0.0)
        sched = self.image_schedule
        if sched is not None:
            factor *= sched.lr_factor(images)
            self.regs.gamma_factor = sched.gamma_factor(images)
            for opt in (opt_g, opt_d):
                set_beta2(opt, sched.beta2_at(images))
        for opt, lr in ((opt_g, self.cfg.optim.lr_g), (opt_d, self.cfg.optim.lr_d)):
            set_learning_rates(opt, lr, factor)
        self.lr_factor = factor

    def values(self, opt_g, ema, step: int) -> dict[str, float]:
        """Every scheduled value now (for metrics.jsonl): rates, gamma, beta2, EMA beta; empty if none."""
        out: dict[str, float] = {}
        if not self.constant:
            out.update(lr_factor=self.lr_factor, lr_g=self.cfg.optim.lr_g * self.lr_factor,
                       lr_d=self.cfg.optim.lr_d * self.lr_factor)
        if self.image_schedule is not None:
            out["beta2"] = float(opt_g.param_groups[0]["betas"][1])
            if self.regs.scheduled:
                out["gamma"] = self.cfg.loss.gamma * self.regs.gamma_factor
        if ema is not None and ema.halflife > 0:
            out["ema_beta"] = ema.beta(step)
        return out
