"""Adversarial losses as pure functions of discriminator logits, in one registry (regularisers: :mod:`ganforge.regularizers`).

Sign convention (used everywhere in ganforge): the discriminator gives a
**high logit to real images**. For the logistic losses D(x) = sigmoid(logit).

Each loss is ``d_loss(real_logits, fake_logits, smoothing) -> Tensor`` and
``g_loss(fake_logits, real_logits) -> Tensor``, both scalars to minimise,
computed in float32 even under autocast. The generator phase computes D's
logits on the real batch only for a loss registered with ``g_needs_real``
(relativistic losses); the others get ``None`` and cost nothing more. Logistic
terms use ``softplus`` because ``softplus(-x) == -log(sigmoid(x))`` stays finite
where ``log(sigmoid(x) + eps)`` loses precision or saturates.

=========  ==============================================  =======================================
name       discriminator loss                              generator loss
=========  ==============================================  =======================================
minimax    -log D(x) - log(1 - D(G(z)))                    log(1 - D(G(z)))  (saturating, literal)
ns         same as minimax                                 -log D(G(z))  (non-saturating)
wgan       E[f(G(z))] - E[f(x)]  (+ weight clipping)       -E[f(G(z))]
wgan-gp    same as wgan (+ gradient penalty)               -E[f(G(z))]
hinge      E[relu(1 - f(x))] + E[relu(1 + f(G(z)))]       -E[f(G(z))]
ls         E[(f(x) - 1)^2]/2 + E[f(G(z))^2]/2             E[(f(G(z)) - 1)^2]/2
rpgan      E[softplus(-(f(x) - f(G(z))))]                  E[softplus(-(f(G(z)) - f(x)))]
=========  ==============================================  =======================================

``rpgan`` (relativistic pairing, Jolicoeur-Martineau 2019; the loss of R3GAN,
Huang et al. 2024) pairs the i-th real image of a batch with its i-th generated
image. With ``optim.n_dis > 1`` each D phase pairs its own real batch with its
own fakes, and the G phase pairs its fakes with the real batch of the last D
phase (D's logits on it are recomputed with the current D).

Adding a loss is one call of :func:`register_loss` (from any module, a plug-in
or a test); ``loss.name`` accepts every registered name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.registry import Registry


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


def minimax_g_loss(fake: Tensor, real: Tensor | None = None) -> Tensor:
    """log(1 - D(G(z))) = -softplus(f): the literal minimax generator loss (saturates early)."""
    return -F.softplus(_f32(fake)).mean()


def nonsaturating_g_loss(fake: Tensor, real: Tensor | None = None) -> Tensor:
    """-log D(G(z)) = softplus(-f)."""
    return F.softplus(-_f32(fake)).mean()


def wgan_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """Critic loss E[f(G(z))] - E[f(x)] (smoothing does not apply)."""
    return _f32(fake).mean() - _f32(real).mean()


def wgan_g_loss(fake: Tensor, real: Tensor | None = None) -> Tensor:
    """-E[f(G(z))]; shared by wgan, wgan-gp and hinge."""
    return -_f32(fake).mean()


def hinge_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """E[relu(1 - f(x))] + E[relu(1 + f(G(z)))]."""
    return F.relu(1.0 - _f32(real)).mean() + F.relu(1.0 + _f32(fake)).mean()


def ls_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """Least squares (Mao et al.): 0.5 E[(f(x) - b)^2] + 0.5 E[f(G(z))^2], b = 1 - s."""
    target = 1.0 - smoothing
    return 0.5 * ((_f32(real) - target) ** 2).mean() + 0.5 * (_f32(fake) ** 2).mean()


def ls_g_loss(fake: Tensor, real: Tensor | None = None) -> Tensor:
    """0.5 E[(f(G(z)) - 1)^2]."""
    return 0.5 * ((_f32(fake) - 1.0) ** 2).mean()


def _paired(a: Tensor, b: Tensor) -> Tensor:
    a, b = _f32(a), _f32(b)
    if a.shape != b.shape:
        raise ValueError(f"rpgan pairs real and generated samples one to one; got {a.numel()} and {b.numel()} logits")
    return a - b


def rpgan_d_loss(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """E[softplus(-(f(x_i) - f(G(z_i))))]: D ranks each real image above its paired fake (smoothing does not apply)."""
    return F.softplus(-_paired(real, fake)).mean()


def rpgan_g_loss(fake: Tensor, real: Tensor | None = None) -> Tensor:
    """E[softplus(-(f(G(z_i)) - f(x_i)))]: G moves each fake above its paired real image."""
    if real is None:
        raise ValueError("rpgan's generator loss needs D's logits on the real batch")
    return F.softplus(-_paired(fake, real)).mean()


@dataclass(frozen=True)
class AdversarialLoss:
    """One entry of :data:`LOSSES`.

    ``d_loss(real (B,), fake (B,), smoothing) -> ()`` and ``g_loss(fake (B,), real (B,) | None) -> ()``
    take logits. ``g_needs_real``: the generator phase must pass D's logits on the real batch.
    """

    d_loss: Callable[..., Tensor]
    g_loss: Callable[..., Tensor]
    logistic: bool  # logits are log-odds, so sigmoid(logit) is D's probability
    weight_clip: bool = False  # the WGAN critic clips its weights after each step
    gradient_penalty: bool = False  # WGAN-GP
    g_needs_real: bool = False  # relativistic: G's loss compares its fakes with the real batch


LOSSES: Registry[AdversarialLoss] = Registry("loss", "loss.name")


def register_loss(name: str, loss: AdversarialLoss) -> AdversarialLoss:
    """Add ``loss`` under ``name`` (a new name; ``loss.name`` then accepts it). Returns ``loss``."""
    return LOSSES.add(name, loss)


def unregister_loss(name: str) -> None:
    """Remove a registered loss (plug-ins and tests); unknown names are ignored."""
    LOSSES.remove(name)


def get_loss(name: str) -> AdversarialLoss:
    """The loss registered as ``name``; ConfigError naming ``loss.name`` otherwise."""
    return LOSSES.get_or_error(name)


register_loss("ns", AdversarialLoss(logistic_d_loss, nonsaturating_g_loss, logistic=True))
register_loss("minimax", AdversarialLoss(logistic_d_loss, minimax_g_loss, logistic=True))
register_loss("wgan", AdversarialLoss(wgan_d_loss, wgan_g_loss, logistic=False, weight_clip=True))
register_loss("wgan-gp", AdversarialLoss(wgan_d_loss, wgan_g_loss, logistic=False, gradient_penalty=True))
register_loss("hinge", AdversarialLoss(hinge_d_loss, wgan_g_loss, logistic=False))
register_loss("ls", AdversarialLoss(ls_d_loss, ls_g_loss, logistic=False))
register_loss("rpgan", AdversarialLoss(rpgan_d_loss, rpgan_g_loss, logistic=False, g_needs_real=True))
