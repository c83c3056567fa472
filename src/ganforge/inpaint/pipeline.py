"""Inference-only inpainting: ``InpaintingPipeline(G)(image, mask) -> image``.

Sizes: the generator is fully convolutional, so an image of any size is
processed whole, at its native resolution: it is reflect-padded to a multiple
of 4 (the two stride-2 stages) and cropped back (see
:func:`ganforge.models.inpaint.pad_to_multiple`). Tiling was not chosen
because a tile only sees its own context: a hole near a tile border would be
filled from half its surroundings and neighbouring tiles would disagree
(seams), while padding changes nothing away from the bottom/right border.
Memory grows linearly with the pixel count (about ``4 * g_width`` floats per
pixel at full resolution); for images much larger than the training size the
hole should stay within the receptive field (about 100 px for the default 6
blocks) to be filled from real context.

Channels: the result has the input's mode. A grayscale image given to an RGB
model is replicated to three channels and the prediction is reduced to BT.601
luma; an RGB image given to a grayscale model has each channel filled as its
own grayscale image, so the hole takes the colours of its surroundings. Known pixels are never touched:
the result is ``where(mask, prediction, input)`` computed in the input's own
dtype, so they come back bit-exactly (uint8 or float).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ganforge.errors import DataError
from ganforge.imageio import to_uint8
from ganforge.inpaint.masks import mask_from_array

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


def _mask_tensor(mask, n: int, hw: tuple[int, int]) -> Tensor:
    """Any accepted mask -> bool (N, 1, H, W) (True = missing)."""
    if isinstance(mask, Image.Image):
        m = mask_from_array(np.asarray(mask.convert("L")))
    elif isinstance(mask, np.ndarray):
        m = mask_from_array(mask)
    elif isinstance(mask, Tensor):
        m = mask.detach().cpu()
        m = m if m.dtype == torch.bool else (m >= 128 if m.dtype == torch.uint8 else m > 0.5)
        while m.ndim < 4:
            m = m.unsqueeze(0)
        if m.shape[1] != 1:
            raise DataError(None, f"a mask tensor must be (H, W), (1, H, W) or (N, 1, H, W), got {tuple(mask.shape)}")
        if not m.any():
            raise DataError(None, "mask has no missing pixels (1 = missing)")
    else:
        raise TypeError(f"mask must be a PIL image, numpy array or tensor, got {type(mask).__name__}")
    m = m.bool()
    if tuple(m.shape[-2:]) != tuple(hw):
        raise DataError(None, f"mask is {m.shape[-1]}x{m.shape[-2]} (WxH) but the image is {hw[1]}x{hw[0]}")
    if m.shape[0] not in (1, n):
        raise DataError(None, f"{m.shape[0]} masks for {n} images")
    return m.expand(n, 1, *hw)


class InpaintingPipeline:
    """Fill the holes of images with a trained inpainting generator (inference only).

    Args:
        generator: maps ``(image (N, C, H, W) in [-1, 1], mask (N, 1, H, W))`` to the
            composited image, e.g. :class:`ganforge.models.inpaint.InpaintGenerator`.
        image_channels: the generator's C (1 or 3); read from the generator when omitted.
        batch_size: images per forward pass for batched tensor input.
    """

    def __init__(self, generator: nn.Module, image_channels: int | None = None, batch_size: int = 16):
        self.generator = generator.eval().requires_grad_(False)
        self.channels = int(image_channels or getattr(generator, "channels"))
        self.batch_size = batch_size
        self.device = next(generator.parameters()).device
        self.step: int | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path, ema: bool = True, device: str | torch.device = "cpu",
                 checkpoint: str | Path | None = None) -> "InpaintingPipeline":
        """The pipeline of a run's newest (or given) checkpoint, EMA generator when present."""
        from ganforge.errors import ConfigError
        from ganforge.artifacts import load_generator

        G, cfg, step = load_generator(run_dir, checkpoint, ema=ema, device=device)
        if cfg.model.arch != "inpaint":
            raise ConfigError("model.arch", f"{run_dir} is a {cfg.model.arch!r} run, not an inpainting run")
        pipe = cls(G, cfg.data.channels)
        pipe.step = step
        return pipe

    @torch.inference_mode()
    def fill(self, images: Tensor, masks: Tensor) -> Tensor:
        """Float images (N, C, H, W) in [-1, 1] and bool/float masks (N, 1, H, W) -> float (N, C, H, W).

        Known pixels are returned exactly; ``C`` may differ from the model's.
        """
        out = []
        for s in range(0, images.shape[0], self.batch_size):
            orig, m = images[s:s + self.batch_size], masks[s:s + self.batch_size].bool()
            x = orig.to(self.device, torch.float32)
            mf = m.to(self.device, torch.float32)
            if x.shape[1] == 3 and self.channels == 1:
                # Colour through a grayscale model: fill each channel as its own gray image,
                # so the hole takes the colours of its surroundings.
                b = x.shape[0]
                pred = self.generator(x.reshape(b * 3, 1, *x.shape[-2:]), mf.repeat_interleave(3, dim=0))
                pred = pred.reshape(x.shape)
            else:
                pred = _to_channels(self.generator(_to_channels(x, self.channels), mf), x.shape[1])
            pred = pred.float().clamp(-1, 1).to(orig.device, orig.dtype)
            out.append(torch.where(m.to(orig.device), pred, orig))
        return torch.cat(out)

    def _fill_uint8(self, images: Tensor, masks: Tensor) -> Tensor:
        """uint8 (N, C, H, W) -> uint8, known pixels copied from the input."""
        pred = to_uint8(self.fill(images.float().div(127.5).sub(1.0), masks))
        return torch.where(masks, pred, images)

    def __call__(self, image, mask):
        """Inpaint ``image`` where ``mask`` is set; returns the same kind of object.

        Accepted images: PIL images (L, RGB; RGBA/LA keep their alpha; other
        modes are converted to RGB), numpy uint8 ``(H, W)`` / ``(H, W, C)`` with
        C in 1, 3, 4, tensors ``(C, H, W)`` / ``(N, C, H, W)``, uint8 in [0, 255]
        or float in [-1, 1].
        Masks: PIL / numpy (white, >= 128 or True = missing) or tensors
        ``(H, W)`` / ``(1, H, W)`` / ``(N, 1, H, W)`` (> 0.5 or True = missing).
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
        m = _mask_tensor(mask, x.shape[0], tuple(x.shape[-2:])).to(x.device)
        out = self._fill_uint8(x, m) if x.dtype == torch.uint8 else self.fill(x, m)
        return out.reshape(image.shape)

    def _call_numpy(self, image: np.ndarray, mask) -> np.ndarray:
        if image.dtype != np.uint8:
            raise TypeError(f"numpy images must be uint8, got {image.dtype}")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise DataError(None, f"a numpy image must be (H, W) or (H, W, C) with C in 1, 3, 4, got {image.shape}")
        arr = image if image.ndim == 3 else image[:, :, None]
        colour = arr[:, :, :3] if arr.shape[2] == 4 else arr
        x = torch.from_numpy(np.array(colour, copy=True)).permute(2, 0, 1)[None]
        m = _mask_tensor(mask, 1, tuple(x.shape[-2:]))
        filled = self._fill_uint8(x, m)[0].permute(1, 2, 0).numpy()
        out = arr.copy()
        out[:, :, :filled.shape[2]] = filled
        return out if image.ndim == 3 else out[:, :, 0]

    def _call_pil(self, image: Image.Image, mask) -> Image.Image:
        mode = image.mode
        if mode not in ("L", "RGB", "RGBA", "LA"):
            image, mode = image.convert("RGB"), "RGB"
        arr = np.asarray(image)
        if mode == "LA":  # gray + alpha: fill the gray channel only
            out = arr.copy()
            out[:, :, 0] = self._call_numpy(np.ascontiguousarray(arr[:, :, 0]), mask)
            return Image.fromarray(out)
        return Image.fromarray(self._call_numpy(arr, mask))
