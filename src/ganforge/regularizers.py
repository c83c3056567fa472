"""Discriminator regularisers: penalties added to D's loss, and constraints applied after its update.

Every regulariser is declared here, once, and the training step applies them
all in one place (:meth:`DRegularization.penalty` in each D phase,
:meth:`DRegularization.constrain` after each D update), for every task. A
penalty has an interval ``every`` in D steps: lazy regularisation (Karras et al.
2020) computes it every k-th step only and multiplies it by k, so its expected
weight is unchanged while its cost falls k-fold.

Adding a regulariser is one decorated builder below (reading its settings from
the config) plus its config fields in :mod:`ganforge.config_schema`::

    @penalty_builder
    def _my_penalty(cfg):
        if cfg.loss.my_weight > 0:
            return Penalty("my", cfg.loss.my_weight, every=1, needs_fake=True, fn=my_fn)

``fn(critic, real, fake, draws) -> scalar`` gets the critic bound to the batch's
conditioning and augmentation (``critic(x) -> (B,)`` logits).

R1 and R2 together (``loss.gamma``, R3GAN, Huang et al. 2024) are one penalty
``gamma / 2 * (R1 + R2)`` with one interval (``loss.r1_every``). Its weight may
follow a schedule: :attr:`DRegularization.gamma_factor` multiplies every penalty
declared ``scheduled`` (set by the trainer before each step; see
:mod:`ganforge.train.schedule`). Every gradient penalty here differentiates twice,
so the execution plan keeps such a D out of ``torch.compile`` and the step out of
CUDA graphs (:func:`ganforge.train.plan.resolve_plan` checks ``double_backward``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.losses import LOSSES
from ganforge.tasks.draws import Draws

Critic = Callable[[Tensor], Tensor]


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """WGAN-GP penalty E[(||grad_x f(x_hat)||_2 - 1)^2] (Gulrajani et al. 2017), unweighted.

    ``x_hat = alpha * real + (1 - alpha) * fake`` with ``alpha`` (N, 1, 1, 1) ~ U[0, 1], one per sample.
    ``critic`` maps (N, C, H, W) -> (N,) logits (labels already bound if conditional).
    """
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norms = grad.float().reshape(grad.shape[0], -1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


def grad_sq_norm(critic: Critic, x: Tensor) -> Tensor:
    """E||grad_x D(x)||^2 over the batch, differentiable (the R1 / R2 penalties), unweighted."""
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    return grad.float().reshape(grad.shape[0], -1).pow(2).sum(dim=1).mean()


def r1_penalty(critic: Critic, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): E||grad_x D(x)||^2 on real data. Its usual weight is gamma / 2."""
    return grad_sq_norm(critic, real)


@dataclass(frozen=True)
class Penalty:
    """A term ``weight * fn(...)`` added to D's loss every ``every`` D steps (then scaled by ``every``)."""

    name: str  # its key in the logs
    weight: float
    every: int
    fn: Callable[[Critic, Tensor, Tensor, Draws], Tensor]
    # Differentiates D's output w.r.t. its input and then back-propagates through that:
    # such a D cannot run through torch.compile, and such a step is not CUDA-graph-captured.
    double_backward: bool = True
    scheduled: bool = False  # its weight is multiplied by DRegularization.gamma_factor

    def due(self, d_step: int) -> bool:
        return d_step % self.every == 0


_PENALTIES: list[Callable[[RunConfig], Penalty | None]] = []


def penalty_builder(fn: Callable[[RunConfig], Penalty | None]) -> Callable[[RunConfig], Penalty | None]:
    """Register a function ``cfg -> Penalty | None`` (None: off for this config)."""
    _PENALTIES.append(fn)
    return fn


@penalty_builder
def _wgan_gp(cfg: RunConfig) -> Penalty | None:
    if not LOSSES[cfg.loss.name].gradient_penalty:
        return None

    def fn(critic, real, fake, draws):
        return gradient_penalty(critic, real, fake, draws.uniform(real.shape[0], 1, 1, 1).to(real.dtype))
    return Penalty("gp", cfg.loss.gp_weight, 1, fn)


@penalty_builder
def _r1(cfg: RunConfig) -> Penalty | None:
    if cfg.loss.r1_weight <= 0:
        return None
    return Penalty("r1", 0.5 * cfg.loss.r1_weight, cfg.loss.r1_every, lambda critic, real, fake, draws:
                   r1_penalty(critic, real))


@penalty_builder
def _r2(cfg: RunConfig) -> Penalty | None:
    # R2 (Mescheder et al. 2018): the same gradient penalty on generated images; with R1 it
    # makes the hinge-free relativistic loss of R3GAN (Huang et al. 2024) converge locally.
    if cfg.loss.r2_weight <= 0:
        return None
    return Penalty("r2", 0.5 * cfg.loss.r2_weight, 1, lambda critic, real, fake, draws: grad_sq_norm(critic, fake))


@penalty_builder
def _r1_r2(cfg: RunConfig) -> Penalty | None:
    # R3GAN (Huang et al. 2024): gamma / 2 * (R1 + R2), one weight for both sides. It is
    # lazy like R1 (every loss.r1_every D steps, times r1_every), and its weight is scheduled.
    if cfg.loss.gamma <= 0:  # (with loss.r1_weight or r2_weight as well, the config was refused)
        return None

    def fn(critic, real, fake, draws):
        return grad_sq_norm(critic, real) + grad_sq_norm(critic, fake)
    return Penalty("r1r2", 0.5 * cfg.loss.gamma, cfg.loss.r1_every, fn, scheduled=True)


class DRegularization:
    """The regularisers one run applies to D (built from the config by :func:`d_regularization`)."""

    def __init__(self, penalties: list[Penalty], weight_clip: float = 0.0):
        self.penalties = penalties
        self.weight_clip = weight_clip
        # The schedule's multiplier of ``scheduled`` penalties (loss.gamma); a Python float,
        # read at each step: penalties that use it are never inside a captured CUDA graph.
        self.gamma_factor = 1.0

    @property
    def scheduled(self) -> bool:
        """Some penalty's weight follows the gamma schedule."""
        return any(p.scheduled for p in self.penalties)

    @property
    def double_backward(self) -> bool:
        return any(p.double_backward for p in self.penalties)

    @property
    def lazy(self) -> bool:
        """Some penalty runs on some D steps only (a step's work then depends on its index)."""
        return any(p.every > 1 for p in self.penalties)

    def penalty(self, d_step: int, critic: Critic, real: Tensor, fake: Tensor,
                draws: Draws) -> tuple[Tensor | None, dict[str, Tensor]]:
        """The sum of the penalties due at D step ``d_step`` (or None) and each one's unweighted value."""
        total, logs = None, {}
        for p in self.penalties:
            if not p.due(d_step):
                continue
            value = p.fn(critic, real, fake, draws)
            logs[p.name] = value.detach()
            weight = p.weight * p.every * (self.gamma_factor if p.scheduled else 1.0)
            term = weight * value
            total = term if total is None else total + term
        return total, logs

    @torch.no_grad()
    def constrain(self, params: list[nn.Parameter]) -> None:
        """After each D update: clip weights to [-c, c] for the WGAN critic (a no-op otherwise)."""
        if self.weight_clip and params:
            torch._foreach_clamp_min_(params, -self.weight_clip)
            torch._foreach_clamp_max_(params, self.weight_clip)


def d_regularization(cfg: RunConfig) -> DRegularization:
    """Every registered penalty that is on for ``cfg``, and the WGAN weight clipping."""
    penalties = [p for build in _PENALTIES if (p := build(cfg)) is not None]
    clip = cfg.loss.weight_clip if LOSSES[cfg.loss.name].weight_clip else 0.0
    return DRegularization(penalties, clip)
