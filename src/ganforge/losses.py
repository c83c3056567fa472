"""Adversarial losses as pure functions of discriminator logits (regularisers: :mod:`ganforge.regularizers`).

Sign convention (used everywhere in ganforge): the discriminator gives a
**high logit to real images**. For the logistic losses D(x) = sigmoid(logit).

Each loss is a pair ``d_loss(real_logits, fake_logits) -> Tensor`` and
``g_loss(fake_logits) -> Tensor``, both scalars to minimise, computed in
float32 even under autocast. Logistic terms use ``softplus`` because
``softplus(-x) == -log(sigmoid(x))`` stays finite where ``log(sigmoid(x) + eps)``
loses precision or saturates.

=========  ==============================================  =======================================
name       discriminator loss                              generator loss
=========  ==============================================  =======================================
minimax    -log D(x) - log(1 - D(G(z)))                    log(1 - D(G(z)))  (saturating, literal)
ns         same as minimax                                 -log D(G(z))  (non-saturating)
wgan       E[f(G(z))] - E[f(x)]  (+ weight clipping)       -E[f(G(z))]
wgan-gp    same as wgan (+ gradient penalty)               -E[f(G(z))]
hinge      E[relu(1 - f(x))] + E[relu(1 + f(G(z)))]       -E[f(G(z))]
ls         E[(f(x) - 1)^2]/2 + E[f(G(z))^2]/2             E[(f(G(z)) - 1)^2]/2
=========  ==============================================  =======================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _f32(x: Tensor) -> Tensor:
    return x.float().reshape(-1)


def logistic_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """-log D(x) - log(1 - D(G(z))); one-sided label smoothing sets the real target to 1 - s."""
    real, fake = _f32(real), _f32(fake)
    if smoothing > 0:
        real_term = F.binary_cross_entropy_with_logits(real, torch.full_like(real, 1.0 - smoothing))
    else:
        real_term = F.softplus(-real).mean()
    return real_term + F.softplus(fake).mean()


def minimax_g_loss(fake: Tensor) -> Tensor:
    """log(1 - D(G(z))) = -softplus(f): the literal minimax generator loss (saturates early)."""
    return -F.softplus(_f32(fake)).mean()


def nonsaturating_g_loss(fake: Tensor) -> Tensor:
    """-log D(G(z)) = softplus(-f)."""
    return F.softplus(-_f32(fake)).mean()


def wgan_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """Critic loss E[f(G(z))] - E[f(x)] (smoothing does not apply)."""
    return _f32(fake).mean() - _f32(real).mean()


def wgan_g_loss(fake: Tensor) -> Tensor:
    """-E[f(G(z))]; shared by wgan, wgan-gp and hinge."""
    return -_f32(fake).mean()


def hinge_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """E[relu(1 - f(x))] + E[relu(1 + f(G(z)))]."""
    return F.relu(1.0 - _f32(real)).mean() + F.relu(1.0 + _f32(fake)).mean()


def ls_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """Least squares (Mao et al.): 0.5 E[(f(x) - b)^2] + 0.5 E[f(G(z))^2], b = 1 - s."""
    target = 1.0 - smoothing
    return 0.5 * ((_f32(real) - target) ** 2).mean() + 0.5 * (_f32(fake) ** 2).mean()


def ls_g_loss(fake: Tensor) -> Tensor:
    """0.5 E[(f(G(z)) - 1)^2]."""
    return 0.5 * ((_f32(fake) - 1.0) ** 2).mean()


@dataclass(frozen=True)
class AdversarialLoss:
    """One entry of :data:`LOSSES`."""

    d_loss: Callable[..., Tensor]
    g_loss: Callable[[Tensor], Tensor]
    logistic: bool  # logits are log-odds, so sigmoid(logit) is D's probability
    weight_clip: bool = False  # the WGAN critic clips its weights after each step
    gradient_penalty: bool = False  # WGAN-GP


LOSSES: dict[str, AdversarialLoss] = {
    "minimax": AdversarialLoss(logistic_d_loss, minimax_g_loss, logistic=True),
    "ns": AdversarialLoss(logistic_d_loss, nonsaturating_g_loss, logistic=True),
    "wgan": AdversarialLoss(wgan_d_loss, wgan_g_loss, logistic=False, weight_clip=True),
    "wgan-gp": AdversarialLoss(wgan_d_loss, wgan_g_loss, logistic=False, gradient_penalty=True),
    "hinge": AdversarialLoss(hinge_d_loss, wgan_g_loss, logistic=False),
    "ls": AdversarialLoss(ls_d_loss, ls_g_loss, logistic=False),
}
