"""What is being learned: the losses of one discriminator step and one generator step.

The trainer owns the loop, optimizers, precision, EMA and checkpoints; a task
only computes losses from models and a batch. Generation lives here;
inpainting supplies its own task with the same two methods, so both train in
the same loop.

Two fast paths live here because they change what a step computes, not how
the trainer applies it (both are on by default; ``train.fast=false`` turns
them off for the reference path):

* **reuse fakes** (``train.reuse_fake``): the last D step of an iteration
  generates its fakes *with* gradients, D trains on ``fake.detach()``, and the
  G step back-propagates through those same fakes instead of drawing new noise
  and running G again: one generator forward fewer per iteration. The G step
  still scores them with the freshly updated D. This draws fewer random
  numbers, so a seed gives another (equally valid) run than the reference path.
* **one D forward** (``train.batch_d``): D scores ``cat(real, fake)`` in one
  call when it has no BatchNorm, so the result is the same function of the
  weights (BatchNorm would mix the statistics of the two halves). With
  spectral normalisation this runs one power iteration per D step instead of two.

Logs are returned as 0-dim tensors (the trainer reads them all with one
device synchronisation), so the same code runs inside a captured CUDA graph.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.augment import DiffAugment
from ganforge.config import RunConfig
from ganforge.losses import LOSSES, gradient_penalty, r1_penalty
from ganforge.train.distributed import unwrap


def has_batchnorm(module: nn.Module) -> bool:
    """True if any layer normalises over the batch (BatchNorm of any kind, SyncBatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def task_fast_paths(cfg: RunConfig, D: nn.Module) -> tuple[bool, bool]:
    """``(reuse_fake, batch_d)`` for a task: on with ``train.fast`` unless switched off; one D
    forward only when D has no BatchNorm."""
    fast = getattr(cfg.train, "fast", True)
    reuse_fake = fast and getattr(cfg.train, "reuse_fake", True)
    batch_d = fast and getattr(cfg.train, "batch_d", True) and not has_batchnorm(unwrap(D))
    return reuse_fake, batch_d


class DrawTape:
    """The random draws of one iteration, replayable from fixed buffers (for CUDA graphs).

    ``record`` mode draws normally and notes each draw's kind and shape;
    ``replay`` mode hands out preallocated buffers in the recorded order
    (:meth:`refill` draws into them from the task's generator, in that same
    order, before each graph replay, so the random stream matches eager
    execution).
    """

    def __init__(self):
        self.calls: list[tuple[str, tuple[int, ...], int]] = []
        self.buffers: list[Tensor] = []
        self.mode = "record"
        self._pos = 0

    def take(self, kind: str, shape: tuple[int, ...], high: int, draw) -> Tensor:
        if self.mode == "record":
            self.calls.append((kind, shape, high))
            return draw()
        buf = self.buffers[self._pos]
        self._pos += 1
        return buf

    def arm(self, device: torch.device) -> None:
        """Switch to replay mode with one buffer per recorded draw."""
        self.buffers = [torch.empty(shape, device=device, dtype=torch.float32 if kind == "noise" else torch.long)
                        for kind, shape, _ in self.calls]
        self.mode, self._pos = "replay", 0

    def refill(self, gen: torch.Generator) -> None:
        """Draw this iteration's values into the buffers, in the recorded order."""
        for (kind, shape, high), buf in zip(self.calls, self.buffers):
            if kind == "noise":
                torch.randn(shape, generator=gen, out=buf)
            else:
                torch.randint(0, high, shape, generator=gen, out=buf)
        self._pos = 0


class GenerationTask:
    """Unconditional or class-conditional generation from noise.

    Fakes in the D step carry the real batch's labels (so a gradient-penalty
    interpolation mixes images of one class); the G step draws labels
    uniformly (or, when reusing the D step's fakes, keeps their labels).
    """

    def __init__(self, cfg: RunConfig, G: nn.Module, D: nn.Module, device: torch.device, gen: torch.Generator):
        self.cfg, self.G, self.D, self.device, self.gen = cfg, G, D, device, gen
        self.loss = LOSSES[cfg.loss.name]
        self.augment = DiffAugment(cfg.train.augment)
        self.num_classes = cfg.model.num_classes
        self.d_steps = 0  # counts D steps, for lazy R1
        self.reuse_fake, self.batch_d = task_fast_paths(cfg, D)
        self.tape: DrawTape | None = None  # set by the trainer for CUDA-graph capture
        self._pending: tuple[Tensor, Tensor | None] | None = None  # fakes (with grad) kept for the G step

    def noise(self, n: int) -> Tensor:
        """(n, z_dim) standard normal noise from the task's own generator."""
        def draw():
            return torch.randn(n, self.cfg.model.z_dim, device=self.device, generator=self.gen)
        if self.tape is not None:
            return self.tape.take("noise", (n, self.cfg.model.z_dim), 0, draw)
        return draw()

    def random_labels(self, n: int) -> Tensor | None:
        if not self.num_classes:
            return None

        def draw():
            return torch.randint(0, self.num_classes, (n,), device=self.device, generator=self.gen)
        if self.tape is not None:
            return self.tape.take("labels", (n,), self.num_classes, draw)
        return draw()

    def _aug(self, x: Tensor) -> Tensor:
        return self.augment(x, self.gen) if self.augment else x

    @property
    def uses_generator_in_losses(self) -> bool:
        """True when the losses draw random numbers beyond noise and labels (augmentation, GP)."""
        return bool(self.augment) or self.loss.gradient_penalty

    def _keep_fakes(self) -> bool:
        # Only the last D step of an iteration hands its fakes to the G step.
        return self.reuse_fake and (self.d_steps + 1) % self.cfg.optim.n_dis == 0

    def _d_logits(self, real: Tensor, fake: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.batch_d:
            # Augment each half separately (same random stream as two calls), score both at once.
            x = torch.cat([self._aug(real), self._aug(fake)])
            logits = self.D(x, None if y is None else torch.cat([y, y]))
            return logits[: real.shape[0]], logits[real.shape[0]:]
        return self.D(self._aug(real), y), self.D(self._aug(fake), y)

    def d_loss(self, real: Tensor, labels: Tensor | None) -> tuple[Tensor, dict]:
        """Loss of one D step on a real batch (B, C, H, W) with labels (B,) or None."""
        cfg = self.cfg
        y = labels if self.num_classes else None
        if self._keep_fakes():
            fake = self.G(self.noise(real.shape[0]), y)
            self._pending = (fake, y)
            fake = fake.detach()
        else:
            with torch.no_grad():
                fake = self.G(self.noise(real.shape[0]), y)
        real_logits, fake_logits = self._d_logits(real, fake, y)
        loss = self.loss.d_loss(real_logits, fake_logits, cfg.loss.label_smoothing)
        logs = {}
        if self.loss.gradient_penalty:
            gp = gradient_penalty(lambda x: self.D(self._aug(x), y), real, fake, self.gen)
            loss = loss + cfg.loss.gp_weight * gp
            logs["gp"] = gp.detach()
        if cfg.loss.r1_weight > 0 and self.d_steps % cfg.loss.r1_every == 0:
            r1 = r1_penalty(lambda x: self.D(self._aug(x), y), real)
            # Lazy regularisation: applied every k steps, so scaled by k (Karras et al. 2020).
            loss = loss + 0.5 * cfg.loss.r1_weight * cfg.loss.r1_every * r1
            logs["r1"] = r1.detach()
        self.d_steps += 1
        logs.update(self._d_summary(real_logits, fake_logits))
        return loss, logs

    def _d_summary(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        """Mean D(x) and D(G(z)) as 0-dim float32 tensors: probabilities for logistic losses."""
        real, fake = real_logits.detach().float(), fake_logits.detach().float()
        if self.loss.logistic:
            real, fake = torch.sigmoid(real), torch.sigmoid(fake)
        return {"d_real": real.mean(), "d_fake": fake.mean()}

    def g_loss(self, batch_size: int) -> tuple[Tensor, dict]:
        """Loss of one G step: on the D step's kept fakes (reuse_fake), else on fresh noise (and labels)."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0].shape[0] == batch_size:
            fake, y = pending
        else:
            y = self.random_labels(batch_size)
            fake = self.G(self.noise(batch_size), y)
        return self.loss.g_loss(self.D(self._aug(fake), y)), {}

    def state_dict(self) -> dict:
        return {"d_steps": self.d_steps}

    def load_state_dict(self, state: dict) -> None:
        self.d_steps = int(state.get("d_steps", 0))
        self._pending = None

