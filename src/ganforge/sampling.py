"""Loading a trained generator from a run and drawing images from it (inference only)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from ganforge.config import RunConfig, load_config
from ganforge.errors import CheckpointError, ConfigError
from ganforge.train import checkpoint as ckpt


def load_generator(run_dir: str | Path, checkpoint: str | Path | None = None, ema: bool = True,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig, int]:
    """The generator of a run (or of an exported generator directory) in eval mode: ``(G, config, step)``.

    Uses the EMA generator when the run has one and ``ema`` is true. ``checkpoint``
    selects a checkpoint directory (default: the newest one that verifies).
    """
    from ganforge.models import build_models

    from ganforge.weights import EXPORT_WEIGHTS, load_weights

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(run_dir, "not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    if (run_dir / EXPORT_WEIGHTS).is_file() and not (run_dir / "checkpoints").is_dir():
        G, _ = build_models(cfg)  # an exported generator (ganforge export)
        load_weights(G, run_dir / EXPORT_WEIGHTS)
        return G.to(device).eval().requires_grad_(False), cfg, -1
    c = ckpt.load_checkpoint(Path(checkpoint)) if checkpoint else ckpt.find_latest(run_dir)
    if c is None:
        raise CheckpointError(run_dir / "checkpoints", "no valid checkpoint in this run")
    G, _ = build_models(cfg)
    name = "G_ema" if ema and "G_ema" in c.weights else "G"
    if name not in c.weights:
        raise CheckpointError(c.path, "has no generator weights")
    ckpt.load_module_state(G, c.weights[name], c.path / "weights.safetensors")
    return G.to(device).eval().requires_grad_(False), cfg, c.step


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
