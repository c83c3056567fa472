"""Schedules: the step-based learning-rate schedule, and schedules by images seen.

Step-based (``optim.lr_warmup`` / ``optim.lr_decay``, :class:`LearningRateSchedule`):
linear warm-up, then constant, then an optional decay to the run's end.

Both players' rates follow the same multiplier ``factor(step, progress)``, which
:class:`~ganforge.train.trainer.Trainer` applies before every generator step
(on top of the rollback factor)::

    warm-up:  min(1, (step + 1) / optim.lr_warmup)            (step = completed G steps)
    decay:    1 until progress p reaches s = optim.lr_decay_start, then over t = (p - s) / (1 - s):
              linear  1 - (1 - f) t
              cosine  f + (1 - f) (1 + cos(pi t)) / 2          (f = optim.lr_decay_to)

``progress`` is where the run is between its start (0) and its end (1). The run
ends at ``train.steps``, or after ``train.max_seconds`` of training if that comes
first, so progress is ``max(step / train.steps, train_seconds / train.max_seconds)``.
With a time budget the rates therefore depend on the machine's speed: such a run
decays on time on any GPU, but it is not repeatable step for step (without one
the schedule is a function of the step count, and a resumed run is bit-identical).

Why decay at all: at a constant rate Adam keeps G and D moving around an
equilibrium, and the last checkpoints are as noisy as the middle ones; lowering
the rates near the end lets a time-limited run settle (the SNGAN reference
implementation of Miyato et al. 2018 decays Adam's rate linearly to 0; Li et al.
2020, "Budgeted Training", found a linear decay to the end of the budget a strong
default for fixed compute). Warm-up guards the first Adam steps of large batches and high
rates, before the second-moment estimates mean anything.

By images seen (``optim.schedule_kimg``, :class:`ImageSchedule`, R3GAN, Huang et al.
2024): the rates, gamma (``loss.gamma``) and Adam's beta2 follow one warm-up + cosine
timeline measured in real images shown to D, which does not change with the batch
size or ``optim.n_dis`` and is held by checkpoints (bit-identical resume). R3GAN
decays gamma (strong regularisation early, while G and D are far apart) and raises
beta2 (a longer second-moment memory once gradients are smaller and steadier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ganforge.config import RunConfig


@dataclass(frozen=True)
class LearningRateSchedule:
    """The multiplier of ``optim.lr_g`` and ``optim.lr_d``; see the module docstring."""

    warmup: int = 0
    decay: str = "none"  # none | linear | cosine
    decay_start: float = 0.0
    decay_to: float = 0.0
    steps: int = 1
    max_seconds: float = 0.0

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "LearningRateSchedule":
        o = cfg.optim
        return cls(o.lr_warmup, o.lr_decay, o.lr_decay_start, o.lr_decay_to, cfg.train.steps,
                   cfg.train.max_seconds)

    @property
    def constant(self) -> bool:
        """True when the factor is always 1 (the trainer then never touches the rates)."""
        return self.warmup <= 1 and self.decay == "none"

    @property
    def uses_time(self) -> bool:
        """True when the factor depends on train_seconds (a decay under a time budget)."""
        return self.decay != "none" and self.max_seconds > 0

    def progress(self, step: int, seconds: float = 0.0) -> float:
        """Fraction of the run done after ``step`` G steps and ``seconds`` of training, in [0, 1]."""
        p = step / self.steps
        if self.max_seconds > 0:
            p = max(p, seconds / self.max_seconds)
        return min(max(p, 0.0), 1.0)

    def factor(self, step: int, seconds: float = 0.0) -> float:
        """Multiplier of the base rates for the G step after ``step`` completed ones."""
        f = min(1.0, (step + 1) / self.warmup) if self.warmup > 1 else 1.0
        if self.decay == "none":
            return f
        p = self.progress(step, seconds)
        if p <= self.decay_start:
            return f
        t = min(1.0, (p - self.decay_start) / (1.0 - self.decay_start))
        if self.decay == "linear":
            return f * (1.0 - (1.0 - self.decay_to) * t)
        return f * (self.decay_to + (1.0 - self.decay_to) * 0.5 * (1.0 + math.cos(math.pi * t)))


def cosine_with_warmup(images: float, base: float, final: float, total: float, warmup: float = 0.0,
                       start: float | None = None) -> float:
    """A value scheduled by images seen: linear warm-up, then a cosine from ``base`` to ``final``.

    During the first ``warmup`` images the value goes linearly from ``start`` (default
    ``base``: held) to ``base``; then, over ``total - warmup`` images, it follows
    ``final + (base - final) (1 + cos(pi t)) / 2`` and stays at ``final`` afterwards
    (the cosine schedule of Loshchilov & Hutter 2017, as R3GAN uses it for its rate, gamma
    and beta2). ``images`` is the count *before* the update the value is for.
    """
    if warmup > 0 and images < warmup:
        s = base if start is None else start
        return s + (base - s) * images / warmup
    span = total - warmup
    t = 1.0 if span <= 0 else min(1.0, (images - warmup) / span)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class ImageSchedule:
    """Learning rates, gamma and Adam's beta2 as functions of the images seen (``optim.schedule_kimg``).

    One timeline for all of them: ``optim.warmup_kimg`` of linear warm-up of the rates
    (from 0; gamma and beta2 hold their base values meanwhile), then a cosine to the end
    of ``optim.schedule_kimg``. The values are functions of ``Counters.images_seen``, which
    checkpoints hold, so a resumed run gets the same values at the same steps.
    """

    total: float  # images
    warmup: float
    lr_to: float  # final rates, as a fraction of optim.lr_g / lr_d
    gamma_to: float  # final gamma, as a fraction of loss.gamma
    beta2: float
    beta2_final: float  # 0: beta2 constant
    step_images: int = 0  # real images per step (batch x n_dis): the warm-up counts the step's own

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "ImageSchedule | None":
        """The schedule of ``cfg``, or None when ``optim.schedule_kimg`` is 0 (off).

        (A config with the step-based schedule on as well was refused when it was read.)
        """
        o = cfg.optim
        if o.schedule_kimg <= 0:
            return None
        return cls(o.schedule_kimg * 1000, o.warmup_kimg * 1000, o.lr_decay_to, cfg.loss.gamma_decay_to,
                   o.beta2, o.beta2_final, cfg.train.batch_size * o.n_dis)

    def lr_factor(self, images: int) -> float:
        """Multiplier of the base learning rates before the update after ``images`` images.

        The warm-up counts the images of the update it is for, as the step-based warm-up
        counts its step, ``(images + step_images) / warmup``: the first update is not wasted at rate 0.
        """
        if self.warmup > 0 and images < self.warmup:
            return min(1.0, (images + self.step_images) / self.warmup)
        return cosine_with_warmup(images, 1.0, self.lr_to, self.total, self.warmup, start=0.0)

    def gamma_factor(self, images: int) -> float:
        """Multiplier of ``loss.gamma``."""
        return cosine_with_warmup(images, 1.0, self.gamma_to, self.total, self.warmup)

    def beta2_at(self, images: int) -> float:
        """Adam's beta2."""
        if self.beta2_final <= 0:
            return self.beta2
        return cosine_with_warmup(images, self.beta2, self.beta2_final, self.total, self.warmup)
