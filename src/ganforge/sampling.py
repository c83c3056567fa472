"""Drawing images from a trained generator (inference only).

Load one with :func:`ganforge.artifacts.load_generator` (re-exported here).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from ganforge.artifacts import load_generator  # noqa: F401  (the usual companion of generate)
from ganforge.config import RunConfig
from ganforge.errors import ConfigError


def class_labels(cfg: RunConfig, n: int, label: int | None, gen: torch.Generator) -> Tensor | None:
    """Labels for ``n`` samples: all ``label``, or uniform when None; None for unconditional models."""
    k = cfg.model.num_classes
    if not k:
        if label is not None:
            raise ConfigError("--class", "this run's generator is unconditional")
        return None
    if label is None:
        return torch.randint(0, k, (n,), generator=gen)
    if not 0 <= label < k:
        raise ConfigError("--class", f"must be in [0, {k - 1}], got {label}")
    return torch.full((n,), label, dtype=torch.long)


@torch.inference_mode()
def generate(G: nn.Module, cfg: RunConfig, n: int, seed: int = 0, label: int | None = None,
             batch_size: int = 256, device: str | torch.device = "cpu",
             labels: Tensor | None = None) -> Iterator[Tensor]:
    """Yield batches of generated images (b, C, H, W) float in [-1, 1], ``n`` in total, reproducible per seed."""
    gen = torch.Generator().manual_seed(seed)
    if labels is None:
        labels = class_labels(cfg, n, label, gen)
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        z = torch.randn(b, cfg.model.z_dim, generator=gen)
        y = None if labels is None else labels[done:done + b].to(device)
        yield G(z.to(device), y).float()
        done += b


def per_class_labels(cfg: RunConfig, per_class: int) -> Tensor:
    """Labels for a grid with one row per class: (K * per_class,)."""
    k = cfg.model.num_classes
    if not k:
        raise ConfigError("--per-class", "this run's generator is unconditional")
    return torch.arange(k).repeat_interleave(per_class)
