"""Image generation from noise, unconditional or class-conditional (``task: generation``).

D phases score real images against fakes that carry the real batch's labels
(so a gradient-penalty interpolation mixes images of one class); the G phase
draws labels uniformly over the classes the run trains on (``data.classes``
when set: D never sees real images of the others). With DiffAugment
(``train.augment``) every image D sees, real or fake, is augmented with the
run's generator (Zhao et al. 2020).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ganforge.augment import DiffAugment
from ganforge.config import RunConfig
from ganforge.tasks.base import Batch, Fake, Task, TaskCapabilities, has_batchnorm
from ganforge.tasks.draws import Draws
from ganforge.tasks.lookup import register_task

GRID_SEED_OFFSET = 7919  # the fixed preview noise comes from train.seed + this


class NoiseToImage(nn.Module):
    """``G(z, label)`` with a fixed signature for export (the label input only when conditional)."""

    def __init__(self, G: nn.Module, conditional: bool):
        super().__init__()
        self.G, self.conditional = G, conditional

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        return self.G(z, label if self.conditional else None)


def fixed_noise(cfg: RunConfig, n: int) -> tuple[Tensor, Tensor | None]:
    """The run's fixed grid inputs, derived from the seed alone: z (n, z_dim), labels (n,) or None.

    Conditional runs get one row per class they train on (``cfg.label_classes``).
    """
    gen = torch.Generator().manual_seed(cfg.train.seed + GRID_SEED_OFFSET)
    z = torch.randn(n, cfg.model.z_dim, generator=gen)
    classes = torch.tensor(cfg.label_classes, dtype=torch.long)
    k = len(classes)
    y = classes[torch.arange(n) // max(1, n // k) % k] if k else None
    return z, y


def grid_columns(cfg: RunConfig) -> int | None:
    """Images per grid row: one row per trained class for conditional runs, else square (None)."""
    k = len(cfg.label_classes)
    return max(1, cfg.train.sample_grid // k) if k else None


@register_task("generation")
class GenerationTask(Task):
    """``G(z (B, z_dim), y (B,) | None) -> (B, C, H, W)``; ``D(x, y) -> (B,)`` logits."""

    from_noise = True

    def __init__(self, cfg: RunConfig, G: nn.Module, D: nn.Module, draws: Draws):
        super().__init__(cfg, G, D, draws)
        self.z_dim = cfg.model.z_dim
        self.num_classes = cfg.model.num_classes
        # A class-subset run maps a draw over its K kept classes to their ids with a
        # device-side gather, which a CUDA graph can replay (no host round trip).
        subset = cfg.data.classes is not None and self.num_classes
        self._kept = torch.tensor(cfg.label_classes, device=draws.device) if subset else None
        self._augment = DiffAugment(cfg.train.augment)

    @classmethod
    def capabilities_for(cls, cfg: RunConfig, D: nn.Module) -> TaskCapabilities:
        # Augmentation draws from the generator directly (many small draws), which is not recorded.
        return TaskCapabilities(d_has_batchnorm=has_batchnorm(D), graph_capturable=not DiffAugment(cfg.train.augment))

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Periodic evaluation scores ``train.eval_metrics``: every name must be a registered metric."""
        if cfg.train.eval_every and cfg.train.eval_metrics != ["auto"]:  # auto picks registered metrics
            from ganforge.metrics.catalog import get_metrics

            get_metrics(cfg.train.eval_metrics, where="train.eval_metrics")

    @classmethod
    def example_inputs(cls, cfg: RunConfig, batch: int, gen: torch.Generator,
                       size: int | None = None) -> dict[str, Tensor]:
        inputs = {"z": torch.randn(batch, cfg.model.z_dim, generator=gen)}
        if cfg.model.num_classes:  # the classes the run was trained on, in turn
            classes = torch.tensor(cfg.label_classes)
            inputs["label"] = classes[torch.arange(batch) % len(classes)]
        return inputs

    @classmethod
    def export_module(cls, G: nn.Module, cfg: RunConfig) -> nn.Module:
        return NoiseToImage(G, bool(cfg.model.num_classes))

    def d_batch(self, real: Tensor, labels: Tensor | None) -> Batch:
        return Batch(real, labels if self.num_classes else None)

    def g_batch(self, d_batch: Batch) -> Batch:
        if not self.num_classes:
            return Batch(d_batch.real, None)
        if self._kept is None:
            return Batch(d_batch.real, self.draws.integers(self.num_classes, d_batch.size))
        return Batch(d_batch.real, self._kept[self.draws.integers(len(self._kept), d_batch.size)])

    def generate(self, batch: Batch) -> Fake:
        return Fake(self.G(self.draws.normal(batch.size, self.z_dim), batch.cond))

    def augment(self, x: Tensor) -> Tensor:
        return self._augment(x, self.draws.generator) if self._augment else x

    @torch.no_grad()
    def preview(self, model: nn.Module, dataset=None, autocast=contextlib.nullcontext
                ) -> tuple[Tensor, int | None]:
        """The fixed-noise grid (``train.sample_grid`` images, one row per class when conditional)."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        z, y = fixed_noise(self.cfg, self.cfg.train.sample_grid)
        try:
            with autocast():
                images = model(z.to(device), None if y is None else y.to(device)).float()
        finally:
            model.train(was_training)
        return images, grid_columns(self.cfg)
