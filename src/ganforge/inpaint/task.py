"""The inpainting objective: what one discriminator step and one generator step compute.

:class:`InpaintingTask` has the interface of :class:`ganforge.train.task.GenerationTask`,
so inpainting trains in the same :class:`~ganforge.train.trainer.Trainer` loop.

D step: masks are drawn for the real batch, G fills the holes (no gradient),
and D scores real images against filled ones. D gets the mask as an extra
channel, the same mask for both, so the mask says where to look without
saying which image is real.

G step: the trainer passes only a batch size, so the task **reuses the real
batch and masks of the most recent D step** (with ``optim.n_dis > 1``, the last
of them). The loss is

    l1_hole * |raw - x|_hole + l1_valid * |raw - x|_valid
    + adv_weight * g_loss(D(filled, mask)) + feature_matching * FM

where ``raw`` is G's prediction before compositing, each L1 term is the mean
over the pixels (and channels) of its region, and FM is the L1 distance
between D's intermediate features of the real and the filled image (Wang et
al. 2018; as used for inpainting by Nazeri et al. 2019), averaged over D's blocks.
The adversarial term only reaches the hole pixels, because D sees the
composited image. Default weights (6 hole, 1 valid) are those of Liu et al.
2018 ("Image Inpainting for Irregular Holes Using Partial Convolutions").

The fast-path switches of :mod:`ganforge.train.task` apply here too (both on
unless ``train.fast`` is false): with ``train.reuse_fake`` the last D step runs
G *with* gradients, D trains on the detached fill, and the G step
back-propagates through that same forward pass (scored by the updated D), which
saves one G forward per iteration; with ``train.batch_d`` D scores
``cat(real, filled)`` in one call (it has no BatchNorm, so this is the same
function). Logs are 0-dim tensors, read by the trainer in one synchronisation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.imageio import save_grid
from ganforge.losses import LOSSES, gradient_penalty, r1_penalty
from ganforge.inpaint.masks import make_masks
from ganforge.train.task import task_fast_paths

PREVIEW_SEED_OFFSET = 4243  # preview masks come from train.seed + this, not from the task's generator


def masked_l1(pred: Tensor, target: Tensor, region: Tensor) -> Tensor:
    """Mean |pred - target| over the pixels where ``region`` (N, 1, H, W) is 1, all channels.

    Normalised by the region's size, so a small hole weighs as much as a large one
    per pixel; an empty region gives 0.
    """
    diff = (pred.float() - target.float()).abs() * region
    return diff.sum() / (region.sum() * pred.shape[1]).clamp_min(1.0)


class InpaintingTask:
    """Masked reconstruction plus an adversarial loss from ``LOSSES[cfg.loss.name]``.

    With ``inpaint.random_crop``, real batches larger than ``data.image_size``
    (loaded at ``inpaint.load_size``) are cropped to ``data.image_size`` at a
    random position per image, drawn from the task's generator.
    """

    def __init__(self, cfg: RunConfig, G: nn.Module, D: nn.Module, device: torch.device, gen: torch.Generator):
        self.cfg, self.G, self.D, self.device, self.gen = cfg, G, D, device, gen
        self.loss = LOSSES[cfg.loss.name]
        self.size = cfg.data.image_size
        self.d_steps = 0
        self.reuse_fake, self.batch_d = task_fast_paths(cfg, D)
        self._real: Tensor | None = None
        self._mask: Tensor | None = None
        self._pending: tuple[Tensor, Tensor] | None = None  # (filled, raw) with grad, for the G step
        self._preview_images: Tensor | None = None  # first images this task saw, for preview()

    @property
    def preview_columns(self) -> int:
        """Images per preview row: a third of ``train.sample_grid`` (three rows), at least 1."""
        return max(1, self.cfg.train.sample_grid // 3)

    @property
    def uses_generator_in_losses(self) -> bool:
        """Masks (and crops) are drawn in every step, so yes."""
        return True

    # ------------------------------------------------------------- inputs

    def crop(self, real: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, size, size): random crops with ``inpaint.random_crop``, else centre crops."""
        h, w = real.shape[-2:]
        s = self.size
        if (h, w) == (s, s):
            return real
        if h < s or w < s:
            raise ConfigError("data.image_size", f"training images are {h}x{w}, smaller than image_size={s}")
        if not self.cfg.inpaint.random_crop:
            top, left = (h - s) // 2, (w - s) // 2
            return real[:, :, top:top + s, left:left + s]
        b = real.shape[0]
        tops = torch.randint(0, h - s + 1, (b,), generator=self.gen, device=self.gen.device).tolist()
        lefts = torch.randint(0, w - s + 1, (b,), generator=self.gen, device=self.gen.device).tolist()
        return torch.stack([real[i, :, t:t + s, l:l + s] for i, (t, l) in enumerate(zip(tops, lefts))])

    def masks(self, n: int) -> Tensor:
        """(n, 1, size, size) training masks of ``inpaint.masks`` kind, from the task's generator."""
        i = self.cfg.inpaint
        return make_masks(i.masks, n, self.size, i.hole_ratio, self.gen, device=self.device)

    # -------------------------------------------------------------- steps

    def _d_logits(self, real: Tensor, fake: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.batch_d:
            logits = self.D(torch.cat([real, fake]), torch.cat([mask, mask]))
            return logits[: real.shape[0]], logits[real.shape[0]:]
        return self.D(real, mask), self.D(fake, mask)

    def d_loss(self, real: Tensor, labels: Tensor | None) -> tuple[Tensor, dict]:
        """Loss of one D step on a real batch (B, C, H, W) in [-1, 1]; labels are not used.

        Keeps the (cropped) batch and its masks for the next :meth:`g_loss`.
        """
        cfg = self.cfg
        real = self.crop(real).detach()
        mask = self.masks(real.shape[0])
        if self._preview_images is None:
            self._preview_images = real[:self.preview_columns].float().cpu().clone()
        if self.reuse_fake and (self.d_steps + 1) % cfg.optim.n_dis == 0:
            filled, raw = self.G(real, mask, return_raw=True)
            self._pending = (filled, raw)
            fake = filled.detach()
        else:
            with torch.no_grad():
                fake = self.G(real, mask)
        real_logits, fake_logits = self._d_logits(real, fake, mask)
        loss = self.loss.d_loss(real_logits, fake_logits, cfg.loss.label_smoothing)
        logs = {}
        if self.loss.gradient_penalty:
            gp = gradient_penalty(lambda x: self.D(x, mask), real, fake, self.gen)
            loss = loss + cfg.loss.gp_weight * gp
            logs["gp"] = gp.detach()
        if cfg.loss.r1_weight > 0 and self.d_steps % cfg.loss.r1_every == 0:
            r1 = r1_penalty(lambda x: self.D(x, mask), real)
            loss = loss + 0.5 * cfg.loss.r1_weight * cfg.loss.r1_every * r1
            logs["r1"] = r1.detach()
        self.d_steps += 1
        self._real, self._mask = real, mask
        r, f = real_logits.detach().float(), fake_logits.detach().float()
        if self.loss.logistic:
            r, f = torch.sigmoid(r), torch.sigmoid(f)
        logs.update(d_real=r.mean(), d_fake=f.mean())
        return loss, logs

    def g_loss(self, batch_size: int) -> tuple[Tensor, dict]:
        """Loss of one G step on the batch and masks of the latest D step (``batch_size`` is not used)."""
        if self._real is None:
            raise RuntimeError("InpaintingTask.g_loss needs a preceding d_loss call (it reuses that batch)")
        c = self.cfg.inpaint
        real, mask = self._real, self._mask
        pending, self._pending = self._pending, None
        filled, raw = pending if pending is not None else self.G(real, mask, return_raw=True)
        l1_hole = masked_l1(raw, real, mask)
        l1_valid = masked_l1(raw, real, 1 - mask)
        want_fm = c.feature_matching > 0
        out = self.D(filled, mask, return_features=want_fm)
        logits, feats = out if want_fm else (out, None)
        adv = self.loss.g_loss(logits)
        loss = c.l1_hole * l1_hole + c.l1_valid * l1_valid + c.adv_weight * adv
        logs = {"l1_hole": l1_hole.detach(), "l1_valid": l1_valid.detach(), "g_adv": adv.detach()}
        if want_fm:
            with torch.no_grad():
                _, real_feats = self.D(real, mask, return_features=True)
            fm = sum(F.l1_loss(f.float(), r.float()) for f, r in zip(feats, real_feats)) / len(feats)
            loss = loss + c.feature_matching * fm
            logs["feature_matching"] = fm.detach()
        return loss, logs

    # ------------------------------------------------------------ preview

    def preview_batch(self, dataset=None, n: int | None = None) -> tuple[Tensor, Tensor]:
        """Fixed preview inputs: ``n`` images (n, C, s, s) in [-1, 1] and masks (n, 1, s, s).

        ``n`` defaults to :attr:`preview_columns`. Images are ``n`` evenly spaced images of ``dataset`` (an ImageDataset),
        centre-cropped, so the grid shows the same pictures at every step and
        after a resume; without a dataset, the first images of the first batch
        this task saw (fixed for the life of the task; a resumed run picks new
        ones). Masks come from ``train.seed`` alone, so they are fixed too.
        """
        n = n or self.preview_columns
        if dataset is not None:
            count = len(dataset)
            n = min(n, count)
            idx = torch.linspace(0, count - 1, n).round().long()
            images = dataset.images[idx].float().div(127.5).sub(1.0)
            h, w = images.shape[-2:]
            top, left = max(0, (h - self.size) // 2), max(0, (w - self.size) // 2)
            images = images[:, :, top:top + self.size, left:left + self.size]
        elif self._preview_images is not None:
            images = self._preview_images[:n]
        else:
            raise RuntimeError("preview needs a dataset or a preceding d_loss call")
        gen = torch.Generator().manual_seed(self.cfg.train.seed + PREVIEW_SEED_OFFSET)
        i = self.cfg.inpaint
        masks = make_masks(i.masks, images.shape[0], self.size, i.hole_ratio, gen)
        return images, masks

    @torch.no_grad()
    def preview(self, model: nn.Module, path: str | Path, dataset=None, n: int | None = None) -> Path:
        """Write a PNG grid of three rows: masked input (holes white) | output | original.

        ``train.sample_grid`` images in all (a third per row) unless ``n`` (per row) is given.
        ``model`` is the generator to show (the EMA copy when there is one), used
        in eval mode and restored to its previous mode.
        """
        images, masks = self.preview_batch(dataset, n)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            out = model(images.to(device), masks.to(device)).float().cpu()
        finally:
            model.train(was_training)
        shown = images * (1 - masks) + masks  # holes in white
        grid = torch.cat([shown, out, images])
        return save_grid(grid, path, nrow=images.shape[0])

    # -------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {"d_steps": self.d_steps}

    def load_state_dict(self, state: dict) -> None:
        self.d_steps = int(state.get("d_steps", 0))
        self._pending = None
