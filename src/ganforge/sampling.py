"""Drawing images from a trained generator (inference only).

Load one with :func:`ganforge.artifacts.load_generator` (re-exported here).

Noise is ``z ~ N(0, I)`` drawn from a ``torch.Generator`` seeded with the seed, so
a seed names the same images on every machine. **Truncation** (``truncation=t``,
the "truncation trick" of BigGAN, Brock et al. 2019) redraws every entry of z with
``|z| > t`` until it falls inside: samples move towards the typical images, trading
variety for fidelity. It is one function, :func:`truncate_`, used by
:func:`generate` and by :func:`interpolation_latents`.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor, nn

from ganforge.artifacts import load_generator  # the usual companion of generate
from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.tasks import noise_task


__all__ = ["check_truncation", "class_labels", "generate", "interpolation_latents", "load_generator",
           "per_class_labels", "seed_latent", "slerp", "truncate_"]

def class_labels(cfg: RunConfig, n: int, label: int | None, gen: torch.Generator) -> Tensor | None:
    """Labels ``(n,)`` for ``n`` samples: all ``label``, or drawn uniformly when None; None for unconditional models.

    Uniform draws are over the classes the run was trained on: ``cfg.data.classes``
    when set (a class-subset run, e.g. fine-tuned on class 9 alone), else all
    ``model.num_classes`` ids. Evaluation (``ganforge eval``, periodic FID) draws
    its labels here, so it asks for the classes its real reference holds.
    """
    k = cfg.model.num_classes
    if not k:
        if label is not None:
            raise ConfigError("--class", "this run's generator is unconditional")
        return None
    if label is None:  # all classes: the same draws as randint(0, k)
        classes = torch.tensor(cfg.label_classes)
        return classes[torch.randint(0, len(classes), (n,), generator=gen)]
    if not 0 <= label < k:
        raise ConfigError("--class", f"must be in [0, {k - 1}], got {label}")
    return torch.full((n,), label, dtype=torch.long)


def check_truncation(truncation: float | None) -> None:
    """``None`` (off) or a positive threshold; ConfigError naming ``--truncation`` otherwise."""
    if truncation is not None and not (truncation > 0 and math.isfinite(truncation)):
        raise ConfigError("--truncation", f"must be a positive number, got {truncation}")


def truncate_(z: Tensor, threshold: float | None, gen: torch.Generator, max_rounds: int = 1000) -> Tensor:
    """Redraw, in place, the entries of ``z`` (any shape) with ``|z| > threshold`` from N(0, 1).

    Resampling (not clamping) keeps z a truncated normal. Redraws come from ``gen``, so
    results stay reproducible per seed. Thresholds so small that entries keep missing
    after ``max_rounds`` draws are clamped as a last resort. ``None`` leaves ``z`` alone.
    """
    if threshold is None:
        return z
    check_truncation(threshold)
    for _ in range(max_rounds):
        out = z.abs() > threshold
        k = int(out.sum())
        if k == 0:
            return z
        z[out] = torch.randn(k, generator=gen, dtype=z.dtype)
    return z.clamp_(-threshold, threshold)


@torch.inference_mode()
def generate(G: nn.Module, cfg: RunConfig, n: int, seed: int = 0, label: int | None = None,
             batch_size: int = 256, device: str | torch.device = "cpu",
             labels: Tensor | None = None, truncation: float | None = None) -> Iterator[Tensor]:
    """Yield batches of generated images (b, C, H, W) float in [-1, 1], ``n`` in total, reproducible per seed.

    ``truncation``: redraw noise entries with ``|z|`` above it (see :func:`truncate_`); None = off.
    """
    check_truncation(truncation)
    noise_task(cfg)
    gen = torch.Generator().manual_seed(seed)
    if labels is None:
        labels = class_labels(cfg, n, label, gen)
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        z = truncate_(torch.randn(b, cfg.model.z_dim, generator=gen), truncation, gen)
        y = None if labels is None else labels[done:done + b].to(device)
        yield G(z.to(device), y).float()
        done += b


def per_class_labels(cfg: RunConfig, per_class: int) -> Tensor:
    """Labels for a grid with one row per class the run was trained on: (K * per_class,).

    K is ``len(cfg.label_classes)``: all classes, or those of ``data.classes``.
    """
    if not cfg.model.num_classes:
        raise ConfigError("--per-class", "this run's generator is unconditional")
    return torch.tensor(cfg.label_classes).repeat_interleave(per_class)


def seed_latent(cfg: RunConfig, seed: int, label: int | None = None,
                truncation: float | None = None) -> tuple[Tensor, Tensor | None]:
    """The noise and label of ``generate(G, cfg, n=1, seed=seed, label=label)``: ``(z (1, z_dim), y (1,) | None)``.

    Drawn exactly as :func:`generate` draws a single image, so ``G(z, y)`` is that image.
    """
    check_truncation(truncation)
    noise_task(cfg)
    gen = torch.Generator().manual_seed(seed)
    y = class_labels(cfg, 1, label, gen)
    return truncate_(torch.randn(1, cfg.model.z_dim, generator=gen), truncation, gen), y


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of rows: a, b (1, D), t (S,) in [0, 1] -> (S, D).

    Follows the great circle between the two directions while interpolating the norms
    linearly, so intermediate points keep the norm typical of Gaussian noise (a straight
    line through the middle of the ball passes through atypically short vectors).
    Nearly parallel vectors fall back to linear interpolation.
    """
    t = t[:, None].to(a.dtype)
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.acos((ua * ub).sum(1, keepdim=True).clamp(-1.0, 1.0))
    so = torch.sin(omega)
    if float(so) < 1e-6:
        return torch.lerp(a, b, t)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    return direction * torch.lerp(na, nb, t)


INTERPOLATION_MODES = ("slerp", "lerp")


def interpolation_latents(cfg: RunConfig, seed_a: int, seed_b: int, steps: int, mode: str = "slerp",
                          label: int | None = None, truncation: float | None = None
                          ) -> tuple[Tensor, Tensor | None]:
    """Noise walking from seed ``seed_a``'s to ``seed_b``'s: ``(z (steps, z_dim), y (steps,) | None)``.

    The first and last rows are exactly the noise of ``generate(..., n=1, seed=seed_a)``
    and ``seed=seed_b`` (same ``label`` and ``truncation``), so the ends of the strip are
    those single-seed samples. Conditional runs keep one class along the strip: ``label``,
    or else the class drawn for ``seed_a``. ``mode``: ``"slerp"`` (default) or ``"lerp"``.
    """
    if steps < 2:
        raise ConfigError("--steps", f"an interpolation needs at least 2 steps, got {steps}")
    if mode not in INTERPOLATION_MODES:
        raise ConfigError("mode", f"unknown interpolation {mode!r} (known: {', '.join(INTERPOLATION_MODES)})")
    za, ya = seed_latent(cfg, seed_a, label, truncation)
    if ya is not None and label is None:
        label = int(ya[0])
    zb, _ = seed_latent(cfg, seed_b, label, truncation)
    t = torch.linspace(0.0, 1.0, steps)
    z = slerp(za, zb, t) if mode == "slerp" else torch.lerp(za, zb, t[:, None])
    z[0], z[-1] = za[0], zb[0]  # exact ends, whatever the rounding of the formula
    y = None if ya is None else torch.full((steps,), label, dtype=torch.long)
    return z, y
