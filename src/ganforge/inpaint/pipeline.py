"""Inference-only inpainting: ``InpaintingPipeline(G)(image, mask) -> image``.

Where the generator runs: only around the holes (:mod:`ganforge.inpaint.regions`).
The mask's connected regions, grown by a context margin of half the
generator's receptive field (derived from its layers: 98 px for the default
six residual blocks), are cropped, batched by shape and filled at native
resolution; only the crop's own hole pixels are pasted back. Known pixels are
therefore never written, and the cost follows the holes, not the image: a
small hole in a 10000x10000 image is one small forward pass.

Memory is bounded by ``max_pixels``, the pixels of one forward pass (all crops
of a batch together; default 2^20). Activations take about 11 bytes per pixel
per unit of ``model.g_width``: 0.7 GB per 2^20 pixels at the default width 64
(measured), 50 MB at width 4. A region larger than that is tiled: square tiles
of ``sqrt(max_pixels)`` whose cores (the tile minus the margin on each side)
partition the region, so every hole pixel is still predicted with its whole
receptive field. Besides the forward pass the pipeline needs one bool per
``16 x 16`` cell, the mask (one byte per pixel) and the result (a copy of the
input; :meth:`InpaintingPipeline.inpaint_array_` works in place).

Why not the whole image (the previous design), or blind tiles: a whole image
costs memory linear in its size (a 10000x10000 image needed ~10 GB), and
instance normalisation then takes its statistics from far-away content the
network never saw together with a hole in training; fixed tiles split small
holes at tile borders. Crops centred on the holes avoid both; what remains is
that two tiles of one large region normalise with slightly different
statistics, which can show as a faint seam inside a very large hole.

Sizes: images must be at least 4x4 pixels; crops smaller than 8x8 (images
of 4 to 7 pixels) are edge-padded to 8x8 so the stride-4 bottleneck has
more than one cell, and any crop is padded to a multiple of 4 and cropped back
(:func:`ganforge.models.encoder_decoder.pad_to_multiple`).

Channels: a grayscale image given to an RGB model is replicated to three
channels and the prediction is reduced to BT.601 luma; an RGB image given to a
grayscale model has each channel filled as its own grayscale image, so the hole
takes the colours of its surroundings. Alpha channels are kept as they are.
Modes and value ranges: :mod:`ganforge.inpaint.pixels`.

Training domain: inputs are checked against what the model was trained on
(channels, and with ``train_size`` the image side; :mod:`ganforge.inpaint.domain`):
an error for what cannot work, one warning line per kind for what may work badly
(each conversion above is one of them).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ganforge.errors import ConfigError, DataError
from ganforge.inpaint import pixels as px
from ganforge.inpaint.domain import TrainingDomain, check_float_tensor, check_inputs
from ganforge.inpaint.masks import mask_bool
from ganforge.inpaint.regions import DEFAULT_CELL, min_pixels, owned, plan_crops, receptive_field

DEFAULT_MAX_PIXELS = 1 << 20  #: pixels per forward pass
MIN_SIDE = 4  #: smallest image side accepted
_MIN_CROP = 8  # smaller crops are edge-padded: the bottleneck (1/4) needs more than one cell
_LUMA = (0.299, 0.587, 0.114)


def _to_channels(x: Tensor, channels: int) -> Tensor:
    """Float (N, C, H, W) between 1 and 3 channels (replication / BT.601 luma)."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1)
    w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def check_size(h: int, w: int, where=None) -> None:
    """Refuse images below :data:`MIN_SIDE` pixels on a side (``DataError``)."""
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DataError(where, f"image is {w}x{h} pixels; inpainting needs at least {MIN_SIDE}x{MIN_SIDE}")


def _colour(arr: np.ndarray) -> np.ndarray:
    """The colour channels of (H, W) or (H, W, C) pixels as an (H, W, 1 | 3) view (alpha excluded)."""
    view = arr[:, :, None] if arr.ndim == 2 else arr
    return view[:, :, :3] if view.shape[2] in (3, 4) else view[:, :, :1]


def _mask_array(mask, hw: tuple[int, int]) -> np.ndarray:
    """A mask for one image (PIL, numpy, tensor (H, W) / (1, H, W) / (1, 1, H, W)) -> bool (H, W)."""
    if isinstance(mask, Image.Image):
        m = mask_bool(px.pil_to_array(mask, None if mask.mode in ("1", "L") else "L"))
    elif isinstance(mask, np.ndarray):
        m = mask_bool(mask)
    elif isinstance(mask, Tensor):
        t = mask.detach().reshape(mask.shape[-2:]) if mask.ndim > 2 and mask[..., 0, 0].numel() == 1 else mask
        if t.ndim != 2:
            raise DataError(None, f"a mask tensor for one image must be (H, W), got {tuple(mask.shape)}")
        m = _tensor_missing(t).cpu().numpy()
        if not m.any():
            raise DataError(None, "mask has no missing pixels (1 = missing)")
    else:
        raise TypeError(f"mask must be a PIL image, numpy array or tensor, got {type(mask).__name__}")
    if m.shape != tuple(hw):
        raise DataError(None, f"mask is {m.shape[1]}x{m.shape[0]} (WxH) but the image is {hw[1]}x{hw[0]}")
    return m


def _tensor_missing(t: Tensor) -> Tensor:
    return t if t.dtype == torch.bool else (t >= 128 if t.dtype == torch.uint8 else t > 0.5)


def _mask_batch(mask, n: int, hw: tuple[int, int]) -> list[np.ndarray]:
    """Masks for ``n`` images: one mask for all, or tensors (N, 1, H, W) -> ``n`` bool (H, W) arrays."""
    if isinstance(mask, Tensor) and mask.ndim == 4:
        if mask.shape[1] != 1:
            raise DataError(None, f"a mask tensor must be (H, W), (1, H, W) or (N, 1, H, W), got {tuple(mask.shape)}")
        if mask.shape[0] not in (1, n):
            raise DataError(None, f"{mask.shape[0]} masks for {n} images")
        if mask.shape[0] == n and n > 1:
            return [_mask_array(mask[i, 0], hw) for i in range(n)]
        mask = mask[0, 0]
    return [_mask_array(mask, hw)] * n


class InpaintingPipeline:
    """Fill the holes of images with a trained inpainting generator (inference only).

    Args:
        generator: maps ``(image (N, C, H, W) in [-1, 1], mask (N, 1, H, W))`` to the
            completed image, e.g. :class:`ganforge.models.encoder_decoder.InpaintGenerator`.
        image_channels: the generator's C (1 or 3); read from the generator when omitted.
        batch_size: most crops per forward pass.
        max_pixels: most pixels per forward pass (all crops of a batch); bounds memory.
        context: pixels of context around each hole; default half the generator's
            receptive field plus 4 (for the asymmetric padding of strided layers).
        train_size: side of the training images (``data.image_size``; :meth:`from_run`
            sets it), for the warnings about images and holes far larger; None: unchecked.
    """

    def __init__(self, generator: nn.Module, image_channels: int | None = None, batch_size: int = 16,
                 max_pixels: int = DEFAULT_MAX_PIXELS, context: int | None = None, train_size: int | None = None):
        self.generator = generator.eval().requires_grad_(False)
        self.channels = int(image_channels or getattr(generator, "channels"))
        self.batch_size = batch_size
        self.context = int(context if context is not None else receptive_field(generator) // 2 + 4)
        lowest = min_pixels(self.context, DEFAULT_CELL)
        if max_pixels < lowest:
            raise ConfigError("max_pixels", f"must be at least {lowest} for this generator (context "
                                            f"{self.context} px on each side of a tile), got {max_pixels}")
        self.max_pixels = int(max_pixels)
        self.device = next(generator.parameters()).device
        self.step: int | None = None
        self.domain = TrainingDomain(self.channels, train_size)
        self.warned: set[str] = set()  # kinds of domain warning already logged (once each)
        self.warnings: list[str] = []  # the domain warnings of the last call
        # Called as progress(done, total) after each forward pass of a fill (tiles of all holes).
        self.progress: Callable[[int, int], None] | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path, ema: bool = True, device: str | torch.device = "cpu",
                 checkpoint: str | Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> "InpaintingPipeline":
        """The pipeline of a run's newest (or given) checkpoint, EMA generator when present."""
        from ganforge.artifacts import load_generator
        from ganforge.tasks import InpaintingTask, task_class

        G, cfg, step = load_generator(run_dir, checkpoint, ema=ema, device=device)
        task = task_class(cfg)
        if not issubclass(task, InpaintingTask):
            raise ConfigError("task", f"{run_dir} is a run of the {task.name} task, not an inpainting run")
        pipe = cls(G, cfg.data.channels, max_pixels=max_pixels, train_size=cfg.data.image_size)
        pipe.step = step
        return pipe

    # ------------------------------------------------------------- engine

    @torch.inference_mode()
    def _predict(self, x: Tensor, m: Tensor) -> Tensor:
        """Float (B, C, h, w) in [-1, 1] and bool (B, 1, h, w) -> prediction (B, C, h, w) in [-1, 1]."""
        h, w = x.shape[-2:]
        x = x.to(self.device, torch.float32)
        mf = m.to(self.device, torch.float32)
        x = torch.where(m.to(self.device), 0.0, x)  # whatever the holes hold (NaN too) is not read
        if h < _MIN_CROP or w < _MIN_CROP:
            pad = (0, max(0, _MIN_CROP - w), 0, max(0, _MIN_CROP - h))
            x, mf = F.pad(x, pad, mode="replicate"), F.pad(mf, pad, mode="replicate")
        if x.shape[1] == 3 and self.channels == 1:
            # Colour through a grayscale model: fill each channel as its own gray image,
            # so the hole takes the colours of its surroundings.
            b = x.shape[0]
            pred = self.generator(x.reshape(b * 3, 1, *x.shape[-2:]), mf.repeat_interleave(3, dim=0))
            pred = pred.reshape(x.shape)
        else:
            pred = _to_channels(self.generator(_to_channels(x, self.channels), mf), x.shape[1])
        return pred[..., :h, :w].float().clamp(-1, 1)

    def _inpaint(self, canvases: list, masks: list[np.ndarray]) -> None:
        """Fill every canvas (:mod:`ganforge.inpaint.pixels`) where its bool (H, W) mask is set, in place."""
        jobs = []
        for n, m in enumerate(masks):
            check_size(*m.shape)
            crops, labels = plan_crops(m, self.context, self.max_pixels, DEFAULT_CELL)
            jobs += [(n, c, labels) for c in crops]
        jobs.sort(key=lambda j: j[1].shape)  # equal shapes batch together
        done = 0
        for shape, group in itertools.groupby(jobs, key=lambda j: j[1].shape):
            group = list(group)
            per = max(1, min(self.batch_size, self.max_pixels // (shape[0] * shape[1])))
            for s in range(0, len(group), per):
                part = group[s:s + per]
                x = torch.stack([canvases[n].read(c.y0, c.y1, c.x0, c.x1).to(self.device) for n, c, _ in part])
                m = torch.stack([torch.from_numpy(masks[n][c.y0:c.y1, c.x0:c.x1]) for n, c, _ in part])
                pred = self._predict(x, m[:, None])
                for (n, c, labels), p in zip(part, pred):
                    core = p[:, c.cy0 - c.y0:c.cy1 - c.y0, c.cx0 - c.x0:c.cx1 - c.x0]
                    canvases[n].write(c.cy0, c.cy1, c.cx0, c.cx1, core, owned(c, labels, masks[n], DEFAULT_CELL))
                done += len(part)
                if self.progress is not None:
                    self.progress(done, len(jobs))

    def inpaint_array_(self, colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Fill ``colour`` (H, W, C) with C in 1, 3, any real dtype, **in place** where ``mask`` (H, W) bool
        is True; value range as in :mod:`ganforge.inpaint.pixels`. Returns ``colour``."""
        check_size(*colour.shape[:2])
        self.warnings = check_inputs(self.domain, colour.shape[2], mask, self.warned)
        lo, hi = px.value_range(colour, mask)
        self._inpaint([px.ArrayCanvas(colour, lo, hi)], [mask])
        return colour

    @torch.inference_mode()
    def fill(self, images: Tensor, masks: Tensor) -> Tensor:
        """Float images (N, C, H, W) in [-1, 1] and bool/float masks (N, 1, H, W) -> float (N, C, H, W).

        Known pixels are returned exactly; ``C`` may differ from the model's.
        """
        out = images.clone()
        hw = tuple(out.shape[-2:])
        if masks.shape[-2:] != out.shape[-2:] or masks.numel() // (hw[0] * hw[1]) not in (1, out.shape[0]):
            raise DataError(None, f"masks {tuple(masks.shape)} do not match images {tuple(out.shape)}")
        missing = _tensor_missing(masks.detach()).reshape(-1, *hw).expand(out.shape[0], *hw).cpu().numpy()
        ms = list(missing)
        self._check_tensor(out, ms)
        self._inpaint([px.TensorCanvas(img) for img in out], ms)
        return out

    # ------------------------------------------------------------ public call

    def __call__(self, image, mask):
        """Inpaint ``image`` where ``mask`` is set; returns the same kind of object.

        Accepted images:

        * PIL images of mode 1, L, LA, P, RGB, RGBA, I;16 (L, B), I, F; the result
          has the same mode (and palette), alpha channels are kept, other modes are
          refused with a :class:`DataError` saying to convert first;
        * numpy ``(H, W)`` / ``(H, W, C)`` (C in 1, 2, 3, 4; the last channel of 2
          and 4 is alpha) of bool, uint8, uint16, other integers or floats;
        * tensors ``(C, H, W)`` / ``(N, C, H, W)`` with C in 1, 3, uint8 in [0, 255]
          or float in [-1, 1], on any device.

        Masks: PIL / numpy (white, >= 128 or True = missing) or tensors
        ``(H, W)`` / ``(1, H, W)`` / ``(N, 1, H, W)`` (> 0.5 or True = missing).
        Known pixels come back bit-identical; see :mod:`ganforge.inpaint.pixels`
        for how each dtype maps to the generator's range.
        """
        if isinstance(image, Image.Image):
            return self._call_pil(image, mask)
        if isinstance(image, np.ndarray):
            return self._call_numpy(image, mask)
        if isinstance(image, Tensor):
            return self._call_tensor(image, mask)
        raise TypeError(f"image must be a PIL image, numpy array or tensor, got {type(image).__name__}")

    def _call_tensor(self, image: Tensor, mask) -> Tensor:
        x = image if image.ndim == 4 else image.unsqueeze(0) if image.ndim == 3 else image[None, None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DataError(None, "an image tensor must be (C, H, W) or (N, C, H, W) with C in 1, 3, "
                                  f"got {tuple(image.shape)}")
        hw = tuple(x.shape[-2:])
        check_size(*hw)
        out = x.detach().clone()
        masks = _mask_batch(mask, out.shape[0], hw)
        self._check_tensor(out, masks)
        self._inpaint([px.TensorCanvas(img) for img in out], masks)
        return out.reshape(image.shape)

    def _check_tensor(self, images: Tensor, masks: list[np.ndarray]) -> None:
        """Domain checks of images (N, C, H, W) with their bool (H, W) masks (float range, channels, sizes)."""
        check_float_tensor(images, np.stack(masks))
        self.warnings = []
        for m in masks:
            self.warnings += [w for w in check_inputs(self.domain, images.shape[1], m, self.warned)
                              if w not in self.warnings]

    def _call_numpy(self, image: np.ndarray, mask) -> np.ndarray:
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
            raise DataError(None, f"a numpy image must be (H, W) or (H, W, C) with C in 1, 2, 3, 4, got {image.shape}")
        if image.dtype.kind not in "buif":
            raise DataError(None, f"unsupported numpy image type {image.dtype}")
        out = image.copy()
        self.inpaint_array_(_colour(out), _mask_array(mask, out.shape[:2]))
        return out

    def _call_pil(self, image: Image.Image, mask) -> Image.Image:
        px.check_pil_mode(image.mode)
        w, h = image.size
        check_size(h, w)
        m = _mask_array(mask, (h, w))
        return inpaint_pil(self, image, m)


def inpaint_pil(pipe: InpaintingPipeline, image: Image.Image, mask: np.ndarray,
                release: bool = False) -> Image.Image:
    """``image`` (a mode of :data:`ganforge.inpaint.pixels.PIL_MODES`) filled where ``mask`` (H, W) bool
    is True, as a new image of the same mode, size, palette and info. With ``release`` the input's
    pixel memory is freed once copied (the caller must not use ``image`` afterwards)."""
    px.check_pil_mode(image.mode)
    mode, info = image.mode, dict(image.info)
    if mode == "P":
        palette, indices = px.palette_of(image), px.pil_to_array(image)
        rgb = px.pil_to_array(image, "RGB")
        raw_palette = image.getpalette()
    else:
        arr = px.pil_to_array(image)
    if release:
        image.close()
    if mode == "P":
        pipe.inpaint_array_(rgb, mask)
        for y in range(0, indices.shape[0], 512):  # holes take the nearest palette colour
            band = mask[y:y + 512]
            transparent = info.get("transparency")
            indices[y:y + 512][band] = px.nearest_index(
                rgb[y:y + 512][band], palette, transparent if isinstance(transparent, int) else None)
        del rgb
        out = px.array_to_pil(indices, "P")
        if raw_palette:
            out.putpalette(raw_palette)
    else:
        pipe.inpaint_array_(_colour(arr), mask)
        out = px.array_to_pil(arr, mode)
    out.info.update(info)
    return out
