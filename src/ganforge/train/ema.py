"""Exponential moving average of the generator's weights (Karras et al. 2018; Yazici et al. 2019).

Two ways to set how fast it forgets: a fixed ``decay`` per G step with a ramp in
steps (``train.ema_decay`` / ``train.ema_start``), or a half-life in images
(``train.ema_halflife_kimg``, StyleGAN2-ADA, Karras et al. 2020): after each G step
of ``batch`` images ``beta = 0.5 ** (batch / half_life)``, so the average weighs the
last ``half_life`` images' weights as much as all older ones whatever the batch size;
with ``train.ema_rampup`` the half-life is at most ``images_seen * ema_rampup``, so
early in a run the average does not cling to the random initial weights.

BatchNorm statistics: the averaged weights are not the weights G's running
statistics were gathered with, so with ``train.ema_bn_batches`` > 0 the copy's
statistics are recomputed from its own activations before it is used or saved
("standing statistics", Brock et al. 2019): :func:`recompute_batchnorm_statistics`.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The layers of ``model`` that keep running BatchNorm statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, draw_inputs: Callable[[int], Sequence[Tensor]],
                                   batches: int) -> int:
    """Set every BatchNorm layer's running mean and variance to their average over ``batches`` batches.

    ``draw_inputs(i)`` returns the positional inputs of the ``i``-th forward pass (for
    a generator: ``(z (b, z_dim), labels (b,) or None)``). Each layer's statistics
    become the plain mean of the per-batch means and (unbiased) variances, as a
    BatchNorm with ``momentum=None`` accumulates them, so every batch weighs the
    same; nothing else changes (no parameter, no other buffer; momentum and
    train/eval modes are restored). Returns the number of layers recomputed (0: the
    model has no BatchNorm, or ``batches`` is 0, and is left untouched).
    """
    layers = batchnorm_layers(model)
    if not layers or batches <= 0:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in layers]
    model.eval()  # dropout and the like off: only the normalisation layers see batch statistics
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
            m.train()
        for i in range(batches):
            model(*draw_inputs(i))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return len(layers)


# The noise of the recomputed statistics: fixed, so that they depend on the weights alone
# (a resumed run saves the same statistics as one that never stopped).
STATISTICS_SEED = 0x5EED


def generator_draws(task_cls, cfg, device: torch.device | str = "cpu") -> Callable[[int], tuple[Tensor, ...]]:
    """Seeded inputs of G for :func:`recompute_batchnorm_statistics`: one batch of ``train.batch_size`` per call.

    The task's own example inputs (for generation: noise, and labels cycling through
    the classes the run was trained on), from a generator seeded with
    :data:`STATISTICS_SEED` when this function is called.
    """
    gen = torch.Generator().manual_seed(STATISTICS_SEED)

    def draw(_: int) -> tuple[Tensor, ...]:
        inputs = task_cls.example_inputs(cfg, cfg.train.batch_size, gen)
        return tuple(v.to(device) for v in inputs.values())

    return draw


class EMA:
    """A frozen copy of G whose parameters track ``decay * ema + (1 - decay) * G``.

    During the first ``start`` steps the copy simply follows G (warm-up: early
    weights are noise and would only slow the average down). After that the
    decay ramps up as ``min(decay, (1 + t) / (10 + t))``, t = steps since
    ``start``, so that a short run's average is not dominated by its first
    tracked weights (with decay 0.999, a fixed rate would still give the
    step-``start`` weights ~37% of the average 1000 steps later). Buffers such as
    BatchNorm running statistics are copied from G at every update rather than
    averaged (they already are running averages), which keeps training independent
    of the copy; before the copy is shown or saved, :meth:`refresh_statistics`
    replaces them with statistics of its own activations, since G's were gathered
    with G's weights, not the averaged ones.
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
        self._statistics_current = False  # BatchNorm statistics recomputed since the last update

    def refresh_statistics(self, draw_inputs: Callable[[int], Sequence[Tensor]], batches: int) -> bool:
        """Recompute the copy's BatchNorm statistics from its own activations, once per update.

        Until the next :meth:`update` (which copies G's statistics again, so training
        never depends on this) further calls do nothing. Returns True if the
        statistics were recomputed by this call.
        """
        if self._statistics_current or batches <= 0:
            return False
        recomputed = recompute_batchnorm_statistics(self.model, draw_inputs, batches) > 0
        self._statistics_current = True
        return recomputed

    def statistics_changed(self) -> None:
        """The copy was loaded or changed from outside: the next :meth:`refresh_statistics` recomputes."""
        self._statistics_current = False

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
        self.statistics_changed()
