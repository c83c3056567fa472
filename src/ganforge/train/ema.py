"""Exponential moving average of the generator's weights (Karras et al. 2018; Yazici et al. 2019).

Two ways to set how fast it forgets: a fixed ``decay`` per G step with a ramp in
steps (``train.ema_decay`` / ``train.ema_start``), or a half-life in images
(``train.ema_halflife_kimg``, StyleGAN2-ADA, Karras et al. 2020): after each G step
of ``batch`` images ``beta = 0.5 ** (batch / half_life)``, so the average weighs the
last ``half_life`` images' weights as much as all older ones whatever the batch size;
with ``train.ema_rampup`` the half-life is at most ``images_seen * ema_rampup``, so
early in a run the average does not cling to the random initial weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of G whose parameters track ``decay * ema + (1 - decay) * G``.

    During the first ``start`` steps the copy simply follows G (warm-up: early
    weights are noise and would only slow the average down). After that the
    decay ramps up as ``min(decay, (1 + t) / (10 + t))``, t = steps since
    ``start``, so that a short run's average is not dominated by its first
    tracked weights (with decay 0.999, a fixed rate would still give the
    step-``start`` weights ~37% of the average 1000 steps later). Buffers such as
    BatchNorm running statistics are copied from G rather than averaged: they
    already are running averages, and G's are the ones consistent with its
    current weights' activations.
    """

    def __init__(self, model: nn.Module, decay: float, start: int = 0, halflife_images: float = 0.0,
                 rampup: float = 0.0, batch: int = 1, images_per_step: int = 1):
        self.decay, self.start = decay, start
        # Half-life mode (halflife_images > 0): images seen after G step s are s * images_per_step
        # (every step shows D the same number of real images), so beta is a function of the step.
        self.halflife, self.rampup = halflife_images, rampup
        self.batch, self.images_per_step = batch, images_per_step
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._params = list(self.model.parameters())
        self._buffers = list(self.model.buffers())

    def beta(self, step: int) -> float:
        """The weight of the old average in the update after G step ``step`` (1-based)."""
        if self.halflife > 0:
            half = self.halflife
            if self.rampup > 0:
                half = min(half, step * self.images_per_step * self.rampup)
            return 0.5 ** (self.batch / max(half, 1e-8))
        t = step - self.start
        return 0.0 if t <= 0 else min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Call after each generator step; ``step`` counts completed G steps."""
        decay = self.beta(step)
        params = [p.detach() for p in model.parameters()]
        buffers = list(model.buffers())
        if len(params) != len(self._params) or len(buffers) != len(self._buffers):
            raise ValueError("EMA.update: the model's parameters no longer match the averaged copy's")
        # One multi-tensor kernel per list instead of one per tensor: the update runs
        # after every G step, and on a GPU the per-tensor launches cost more than the math.
        torch._foreach_lerp_(self._params, params, 1.0 - decay)
        if self._buffers:
            torch._foreach_copy_(self._buffers, buffers)
