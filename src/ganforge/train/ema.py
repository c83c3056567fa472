"""Exponential moving average of the generator's weights (Karras et al. 2018; Yazici et al. 2019)."""

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

    def __init__(self, model: nn.Module, decay: float, start: int = 0):
        self.decay, self.start = decay, start
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Call after each generator step; ``step`` counts completed G steps."""
        t = step - self.start
        decay = 0.0 if t <= 0 else min(self.decay, (1 + t) / (10 + t))
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)
