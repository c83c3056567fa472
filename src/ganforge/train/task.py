"""What is being learned: the losses of one discriminator step and one generator step.

The trainer owns the loop, optimizers, precision, EMA and checkpoints; a task
only computes losses from models and a batch. Generation lives here;
inpainting supplies its own task with the same two methods, so both train in
the same loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.augment import DiffAugment
from ganforge.config import RunConfig
from ganforge.losses import LOSSES, d_output_summary, gradient_penalty, r1_penalty


class GenerationTask:
    """Unconditional or class-conditional generation from noise.

    Fakes in the D step carry the real batch's labels (so a gradient-penalty
    interpolation mixes images of one class); the G step draws labels
    uniformly.
    """

    def __init__(self, cfg: RunConfig, G: nn.Module, D: nn.Module, device: torch.device, gen: torch.Generator):
        self.cfg, self.G, self.D, self.device, self.gen = cfg, G, D, device, gen
        self.loss = LOSSES[cfg.loss.name]
        self.augment = DiffAugment(cfg.train.augment)
        self.num_classes = cfg.model.num_classes
        self.d_steps = 0  # counts D steps, for lazy R1

    def noise(self, n: int) -> Tensor:
        """(n, z_dim) standard normal noise from the task's own generator."""
        return torch.randn(n, self.cfg.model.z_dim, device=self.device, generator=self.gen)

    def random_labels(self, n: int) -> Tensor | None:
        if not self.num_classes:
            return None
        return torch.randint(0, self.num_classes, (n,), device=self.device, generator=self.gen)

    def _aug(self, x: Tensor) -> Tensor:
        return self.augment(x, self.gen) if self.augment else x

    def d_loss(self, real: Tensor, labels: Tensor | None) -> tuple[Tensor, dict]:
        """Loss of one D step on a real batch (B, C, H, W) with labels (B,) or None."""
        cfg = self.cfg
        y = labels if self.num_classes else None
        with torch.no_grad():
            fake = self.G(self.noise(real.shape[0]), y)
        real_logits = self.D(self._aug(real), y)
        fake_logits = self.D(self._aug(fake), y)
        loss = self.loss.d_loss(real_logits, fake_logits, cfg.loss.label_smoothing)
        logs = {}
        if self.loss.gradient_penalty:
            gp = gradient_penalty(lambda x: self.D(self._aug(x), y), real, fake, self.gen)
            loss = loss + cfg.loss.gp_weight * gp
            logs["gp"] = gp.item()
        if cfg.loss.r1_weight > 0 and self.d_steps % cfg.loss.r1_every == 0:
            r1 = r1_penalty(lambda x: self.D(self._aug(x), y), real)
            # Lazy regularisation: applied every k steps, so scaled by k (Karras et al. 2020).
            loss = loss + 0.5 * cfg.loss.r1_weight * cfg.loss.r1_every * r1
            logs["r1"] = r1.item()
        self.d_steps += 1
        d_real, d_fake = d_output_summary(real_logits, fake_logits, self.loss.logistic)
        logs.update(d_real=d_real, d_fake=d_fake)
        return loss, logs

    def g_loss(self, batch_size: int) -> tuple[Tensor, dict]:
        """Loss of one G step on a fresh batch of noise (and labels)."""
        y = self.random_labels(batch_size)
        fake = self.G(self.noise(batch_size), y)
        return self.loss.g_loss(self.D(self._aug(fake), y)), {}

    def state_dict(self) -> dict:
        return {"d_steps": self.d_steps}

    def load_state_dict(self, state: dict) -> None:
        self.d_steps = int(state.get("d_steps", 0))
