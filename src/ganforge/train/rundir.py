"""Run directories and the fixed-noise sample grids a run writes as it trains."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganforge.config import RunConfig
from ganforge.train.precision import Precision


def new_run_dir(cfg: RunConfig) -> Path:
    """``out_dir/name``, or ``name-1``, ``name-2``... when taken: a new run never overwrites an old one."""
    base = Path(cfg.out_dir) / cfg.name
    path, i = base, 0
    while path.exists():
        i += 1
        path = base.with_name(f"{cfg.name}-{i}")
    return path


def fixed_noise(cfg: RunConfig, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The run's fixed grid inputs, derived from the seed alone: z (n, z_dim), labels (n,) or None.

    Conditional runs get one row per class they train on (``cfg.label_classes``).
    """
    gen = torch.Generator().manual_seed(cfg.train.seed + 7919)
    z = torch.randn(n, cfg.model.z_dim, generator=gen)
    classes = torch.tensor(cfg.label_classes, dtype=torch.long)
    k = len(classes)
    y = classes[torch.arange(n) // max(1, n // k) % k] if k else None
    return z, y


def grid_columns(cfg: RunConfig) -> int | None:
    """Images per grid row: one row per trained class for conditional runs, else square (None)."""
    k = len(cfg.label_classes)
    return max(1, cfg.train.sample_grid // k) if k else None


@torch.no_grad()
def fixed_noise_images(model: nn.Module, cfg: RunConfig, device: torch.device, precision: Precision) -> torch.Tensor:
    """The run's fixed grid drawn by ``model`` in eval mode (restored after): (sample_grid, C, H, W) float32."""
    was_training = model.training
    model.eval()
    z, y = fixed_noise(cfg, cfg.train.sample_grid)
    try:
        with precision.autocast():
            return model(z.to(device), None if y is None else y.to(device)).float()
    finally:
        model.train(was_training)
