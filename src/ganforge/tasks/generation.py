"""Image generation from noise, unconditional or class-conditional.

D phases score real images against fakes that carry the real batch's labels
(so a gradient-penalty interpolation mixes images of one class); the G phase
draws labels uniformly over the classes the run trains on (``data.classes``
when set: D never sees real images of the others). With DiffAugment (``train.augment``) every image D sees,
real or fake, is augmented with the run's generator (Zhao et al. 2020).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.augment import DiffAugment
from ganforge.config import RunConfig
from ganforge.losses import LOSSES
from ganforge.tasks.base import Batch, Fake, TaskCapabilities, has_batchnorm
from ganforge.tasks.draws import Draws


class GenerationTask:
    """``G(z (B, z_dim), y (B,) | None) -> (B, C, H, W)``; ``D(x, y) -> (B,)`` logits."""

    def __init__(self, cfg: RunConfig, G: nn.Module, D: nn.Module, draws: Draws):
        self.G, self.D, self.draws = G, D, draws
        self.z_dim = cfg.model.z_dim
        self.num_classes = cfg.model.num_classes
        # A class-subset run maps a draw over its K kept classes to their ids with a
        # device-side gather, which a CUDA graph can replay (no host round trip).
        subset = cfg.data.classes is not None and self.num_classes
        self._kept = torch.tensor(cfg.label_classes, device=draws.device) if subset else None
        self.adversarial = LOSSES[cfg.loss.name]
        self._augment = DiffAugment(cfg.train.augment)
        self.capabilities = self.capabilities_for(cfg, D)

    @classmethod
    def capabilities_for(cls, cfg: RunConfig, D: nn.Module) -> TaskCapabilities:
        # Augmentation draws from the generator directly (many small draws), which is not recorded.
        return TaskCapabilities(d_has_batchnorm=has_batchnorm(D), graph_capturable=not DiffAugment(cfg.train.augment))

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

    def g_loss(self, batch: Batch, fake: Fake) -> tuple[Tensor, dict[str, Tensor]]:
        return self.adversarial.g_loss(self.D(self.augment(fake.images), batch.cond)), {}
