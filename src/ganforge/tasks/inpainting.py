"""The inpainting task (``task: inpaint``): what D and G see, and G's reconstruction-plus-adversarial loss.

D phases: masks are drawn for the real batch (cropped first with
``inpaint.random_crop``), G fills the holes, and D scores real images against
filled ones. The batch's conditioning ``cond`` is the mask: D gets it as an
extra channel, the same mask for both, so the mask says where to look without
saying which image is real.

G phase: the last D phase's real batch and masks (:meth:`InpaintingTask.g_batch`).
The loss is

    l1_hole * |raw - x|_hole + l1_valid * |raw - x|_valid
    + adv_weight * g_loss(D(filled, mask)) + feature_matching * FM
    + gradient * |grad(filled) - grad(x)|_hole

where ``raw`` is G's prediction before compositing, each L1 term is the mean
over the pixels (and channels) of its region, and FM is the L1 distance
between D's intermediate features of the real and the filled image (Wang et
al. 2018; as used for inpainting by Nazeri et al. 2019), averaged over D's blocks.
The gradient term (Mathieu et al. 2016's gradient difference loss,
:func:`masked_gradient_l1`) compares neighbouring-pixel differences of the filled
and the real image wherever a pair touches the hole, the hole's border included:
pixel L1 does not see a zero-mean speckle that leaves each pixel's error about the
same, its gradients do, while an edge the real image has is still asked for.
The adversarial term only reaches the hole pixels, because D sees the
composited image. Weights live in the ``inpaint`` config section; the defaults
(6 hole, 1 valid) are those of Liu et al. 2018 ("Image Inpainting for Irregular
Holes Using Partial Convolutions").

Periodic evaluation (``train.eval_every``) fills a fixed held-out batch (the
first ``train.eval_n`` test images -- for ``photos``, the fixed evaluation crops of the
held-out photographs -- masks from ``train.seed``) and records PSNR,
SSIM and L1 over the holes; the ``best`` checkpoint has the lowest hole L1.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.imageio import to_uint8
from ganforge.inpaint.masks import make_masks
from ganforge.metrics.restoration import restoration_scores
from ganforge.tasks.base import Batch, TaskScores, Fake, Task, TaskCapabilities, has_batchnorm
from ganforge.tasks.draws import Draws
from ganforge.tasks.lookup import register_task

PREVIEW_SEED_OFFSET = 4243  # preview masks come from train.seed + this, not from the task's generator
EVAL_SEED_OFFSET = 7309  # so do the masks of periodic evaluation


def masked_l1(pred: Tensor, target: Tensor, region: Tensor) -> Tensor:
    """Mean |pred - target| over the pixels where ``region`` (N, 1, H, W) is 1, all channels.

    Normalised by the region's size, so a small hole weighs as much as a large one
    per pixel; an empty region gives 0.
    """
    diff = (pred.float() - target.float()).abs() * region
    return diff.sum() / (region.sum() * pred.shape[1]).clamp_min(1.0)


def masked_gradient_l1(pred: Tensor, target: Tensor, region: Tensor) -> Tensor:
    """Mean |d pred - d target| over horizontal and vertical neighbour pairs with a pixel in ``region``.

    ``pred``, ``target``: (N, C, H, W); ``region``: (N, 1, H, W), 1 = counted. ``d`` is
    the difference of a pixel and its right (or lower) neighbour; a pair counts when
    either pixel is in ``region``, so a seam at the region's border is counted too.
    Normalised by the number of pairs counted (and channels); none gives 0.
    """
    diff = pred.float() - target.float()
    total, count = diff.new_zeros(()), diff.new_zeros(())
    for dim in (-1, -2):
        n = diff.shape[dim] - 1
        d = diff.narrow(dim, 1, n) - diff.narrow(dim, 0, n)
        pairs = torch.maximum(region.narrow(dim, 1, n), region.narrow(dim, 0, n)).to(diff.dtype)
        total = total + (d.abs() * pairs).sum()
        count = count + pairs.sum() * diff.shape[1]
    return total / count.clamp_min(1.0)


@register_task("inpaint")
class InpaintingTask(Task):
    """Masked reconstruction plus the adversarial loss of ``loss.name``.

    ``G(image (B, C, H, W), mask (B, 1, H, W), return_raw=True) -> (filled, raw)``;
    ``D(x, mask) -> (B,)`` logits. With ``data.crops`` the batches are already random
    crops of photographs (:mod:`ganforge.data.crops`). With ``inpaint.random_crop``, real batches larger
    than ``data.image_size`` (loaded at ``inpaint.load_size``) are cropped to
    ``data.image_size`` at a random position per image, drawn from the run's generator.
    """

    families = ("inpaint",)
    dynamic_size = True
    inference_hint = "fill images with `ganforge inpaint` (Python: InpaintingPipeline)"

    def __init__(self, cfg: RunConfig, G: nn.Module, D: nn.Module, draws: Draws):
        super().__init__(cfg, G, D, draws)
        self.size = cfg.data.image_size
        self._preview_images: Tensor | None = None  # first images this task saw, for preview()
        self._eval_batch: tuple[Tensor, Tensor, str] | None = None  # held-out images, masks, split: loaded once

    @classmethod
    def capabilities_for(cls, cfg: RunConfig, D: nn.Module) -> TaskCapabilities:
        # Masks and crops are drawn on the host, so a step is not a CUDA graph.
        return TaskCapabilities(d_has_batchnorm=has_batchnorm(D), graph_capturable=False)

    @classmethod
    def load_size(cls, cfg: RunConfig) -> int:
        """Training images are loaded at ``inpaint.load_size`` to crop from (with ``random_crop``)."""
        i = cfg.inpaint
        return i.load_size if i.random_crop and i.load_size else cfg.data.image_size

    @classmethod
    def example_inputs(cls, cfg: RunConfig, batch: int, gen: torch.Generator,
                       size: int | None = None) -> dict[str, Tensor]:
        """``image`` (batch, C, s, s) in [-1, 1] and ``mask`` (batch, 1, s, s): a box per image, different places."""
        c, s = cfg.data.channels, size or cfg.data.image_size
        image = torch.rand(batch, c, s, s, generator=gen) * 2 - 1
        mask = torch.zeros(batch, 1, s, s)
        for i in range(batch):
            y0, x0 = (torch.randint(0, s // 2, (2,), generator=gen)).tolist()
            mask[i, :, y0:y0 + s // 2, x0:x0 + s // 2] = 1.0
        return {"image": image, "mask": mask}

    @property
    def preview_columns(self) -> int:
        """Images per preview row: a third of ``train.sample_grid`` (three rows), at least 1."""
        return max(1, self.cfg.train.sample_grid // 3)

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
        gen = self.draws.generator
        tops = torch.randint(0, h - s + 1, (b,), generator=gen, device=gen.device).tolist()
        lefts = torch.randint(0, w - s + 1, (b,), generator=gen, device=gen.device).tolist()
        return torch.stack([real[i, :, t:t + s, l:l + s] for i, (t, l) in enumerate(zip(tops, lefts))])

    def masks(self, n: int) -> Tensor:
        """(n, 1, size, size) training masks of ``inpaint.masks`` kind, from the run's generator."""
        i = self.cfg.inpaint
        return make_masks(i.masks, n, self.size, i.hole_ratio, self.draws.generator, device=self.draws.device)

    # ------------------------------------------------------------- phases
    # (the G phase learns on the last D phase's images and masks: the base class's g_batch)

    def d_batch(self, real: Tensor, labels: Tensor | None) -> Batch:
        """A (cropped) real batch with fresh masks as its conditioning; labels are not used."""
        real = self.crop(real).detach()
        if self._preview_images is None:
            self._preview_images = real[:self.preview_columns].float().cpu().clone()
        return Batch(real, self.masks(real.shape[0]))

    def generate(self, batch: Batch) -> Fake:
        filled, raw = self.G(batch.real, batch.cond, return_raw=True)
        return Fake(filled, {"raw": raw})

    def g_loss(self, batch: Batch, fake: Fake) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.cfg.inpaint
        real, mask, filled, raw = batch.real, batch.cond, fake.images, fake.extras["raw"]
        l1_hole = masked_l1(raw, real, mask)
        l1_valid = masked_l1(raw, real, 1 - mask)
        want_fm = c.feature_matching > 0
        out = self.D(filled, mask, return_features=want_fm)
        logits, feats = out if want_fm else (out, None)
        adv = self.adversarial_g_loss(batch, logits)
        loss = c.l1_hole * l1_hole + c.l1_valid * l1_valid + c.adv_weight * adv
        logs = {"l1_hole": l1_hole.detach(), "l1_valid": l1_valid.detach(), "g_adv": adv.detach()}
        if want_fm:
            with torch.no_grad():
                _, real_feats = self.D(real, mask, return_features=True)
            fm = sum(F.l1_loss(f.float(), r.float()) for f, r in zip(feats, real_feats)) / len(feats)
            loss = loss + c.feature_matching * fm
            logs["feature_matching"] = fm.detach()
        if c.gradient > 0:
            grad = masked_gradient_l1(filled, real, mask)
            loss = loss + c.gradient * grad
            logs["gradient"] = grad.detach()
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
            raise RuntimeError("preview needs a dataset or a preceding d_batch call")
        gen = torch.Generator().manual_seed(self.cfg.train.seed + PREVIEW_SEED_OFFSET)
        i = self.cfg.inpaint
        masks = make_masks(i.eval_masks or i.masks, images.shape[0], self.size, i.hole_ratio, gen)
        return images, masks

    @torch.no_grad()
    def preview(self, model: nn.Module, dataset=None, autocast=contextlib.nullcontext
                ) -> tuple[Tensor, int | None]:
        """A grid of three rows: masked input (holes white) | output | original.

        ``train.sample_grid`` images in all (a third per row). ``model`` is the
        generator to show (the EMA copy when there is one), used in eval mode and
        restored to its previous mode.
        """
        images, masks = self.preview_batch(dataset)
        out = _fill(model, images, masks, autocast)
        shown = images * (1 - masks) + masks  # holes in white
        return torch.cat([shown, out, images]), images.shape[0]

    def evaluate(self, model: nn.Module, device: torch.device) -> TaskScores:
        """PSNR / SSIM / L1 over the holes of a fixed held-out batch, filled by ``model``."""
        images, masks, split = self._held_out()
        out = _fill(model, images, masks)
        original = to_uint8(images)
        restored = torch.where(masks.bool(), to_uint8(out), original)
        values = restoration_scores(restored, original, masks)
        n = images.shape[0]
        keys = {k: f"{k}{n}_{split}" for k in ("psnr_hole", "ssim_hole", "l1_hole")}
        return TaskScores({keys[k]: values[k] for k in keys}, primary=keys["l1_hole"])

    def _held_out(self) -> tuple[Tensor, Tensor, str]:
        """The first ``train.eval_n`` images of the data set's test split (or of ``data.split``), and fixed masks."""
        if self._eval_batch is None:
            from ganforge.data import load_dataset
            from ganforge.data.photos import parse_spec
            from ganforge.data.sources import canonical_name

            d = self.cfg.data
            # Named sets and photo corpora have a held-out split; a photo corpus's is its fixed evaluation crops.
            split = "test" if canonical_name(d.dataset) or parse_spec(d.dataset) else d.split
            ds = load_dataset(d.dataset, split=split, image_size=self.size, channels=d.channels, root=d.root,
                              download=d.download)
            images = ds.images[:self.cfg.train.eval_n].float().div(127.5).sub(1.0)
            gen = torch.Generator().manual_seed(self.cfg.train.seed + EVAL_SEED_OFFSET)
            i = self.cfg.inpaint
            masks = make_masks(i.eval_masks or i.masks, images.shape[0], self.size, i.hole_ratio, gen)
            self._eval_batch = images, masks, split
        return self._eval_batch


@torch.no_grad()
def _fill(model: nn.Module, images: Tensor, masks: Tensor, autocast=contextlib.nullcontext,
          batch: int = 256) -> Tensor:
    """``model`` (eval mode, restored after) on CPU images (N, C, H, W) and masks: the filled images on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with autocast():
            return torch.cat([model(images[s:s + batch].to(device), masks[s:s + batch].to(device)).float().cpu()
                              for s in range(0, images.shape[0], batch)])
    finally:
        model.train(was_training)
