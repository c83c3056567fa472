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
        self._params = list(self.model.parameters())
        self._buffers = list(self.model.buffers())

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Call after each generator step; ``step`` counts completed G steps."""
        t = step - self.start
        decay = 0.0 if t <= 0 else min(self.decay, (1 + t) / (10 + t))
        params = [p.detach() for p in model.parameters()]
        buffers = list(model.buffers())
        if len(params) != len(self._params) or len(buffers) != len(self._buffers):
            raise ValueError("EMA.update: the model's parameters no longer match the averaged copy's")
        # One multi-tensor kernel per list instead of one per tensor: the update runs
        # after every G step, and on a GPU the per-tensor launches cost more than the math.
        torch._foreach_lerp_(self._params, params, 1.0 - decay)
        if self._buffers:
            torch._foreach_copy_(self._buffers, buffers)
