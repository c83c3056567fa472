"""Differentiable augmentation for the discriminator (DiffAugment, Zhao et al. 2020).

The same random transformation family is applied to real and generated
images before D sees them, so D cannot memorise a small data set while G
still receives gradients through the (differentiable) transform.

Policies are comma-separated names: ``translation``, ``cutout``, ``color``.
Randomness comes from an explicit :class:`torch.Generator`, so a seeded run
augments identically every time (and resumes exactly).
"""

from __future__ import annotations

import torch
from torch import Tensor

# The policy names are part of the config's vocabulary: the config validates them without
# importing torch, and this module implements them.
from ganforge.config import parse_policy


def _uniform(n: int, x: Tensor, gen: torch.Generator | None) -> Tensor:
    return torch.rand(n, 1, 1, 1, device=x.device, generator=gen, dtype=x.dtype)


def color(x: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """Random brightness (+-0.5), saturation (x[0, 2]) and contrast (x[0.5, 1.5]). (N,C,H,W)."""
    n = x.shape[0]
    x = x + (_uniform(n, x, gen) - 0.5)
    if x.shape[1] > 1:  # saturation is meaningless on grayscale
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(n, x, gen) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(n, x, gen) + 0.5) + mean


def translation(x: Tensor, gen: torch.Generator | None = None, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with zeros (mid-grey). (N,C,H,W)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device, generator=gen)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device, generator=gen)
    ys = torch.arange(h, device=x.device).view(1, h, 1) + dy  # source row per output row
    xs = torch.arange(w, device=x.device).view(1, 1, w) + dx
    valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    ys, xs = ys.clamp(0, h - 1).expand(n, h, w), xs.clamp(0, w - 1).expand(n, h, w)
    idx = (ys * w + xs).reshape(n, 1, h * w).expand(-1, x.shape[1], -1)
    out = x.reshape(n, x.shape[1], h * w).gather(2, idx).reshape_as(x)
    return out * valid.unsqueeze(1).to(x.dtype)


def cutout(x: Tensor, gen: torch.Generator | None = None, ratio: float = 0.5) -> Tensor:
    """Zero a random square of side ``ratio`` x size in each image. (N,C,H,W)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device, generator=gen)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device, generator=gen)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy + ch // 2).clamp(0) < ch) & (ys >= cy - ch // 2)
    inside = inside & ((xs - cx + cw // 2).clamp(0) < cw) & (xs >= cx - cw // 2)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """Apply a policy to a batch: ``DiffAugment("translation,cutout")(x, gen) -> x'`` (same shape)."""

    def __init__(self, policy: str):
        self.names = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: Tensor, gen: torch.Generator | None = None) -> Tensor:
        for name in self.names:
            x = _OPS[name](x, gen)
        return x
