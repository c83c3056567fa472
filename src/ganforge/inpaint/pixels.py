"""Pixels of every accepted kind, seen by the generator as floats in [-1, 1].

A *canvas* is the image being repaired: the inpainting engine reads float
crops from it and writes predictions back **only where asked** (the hole
pixels a crop owns), converting to the canvas's own dtype there. Every other
pixel is never written, so known pixels stay bit-identical in any mode.

Value ranges (``lo``, ``hi`` map to -1, 1):

* bool (PIL ``1``): 0..1, written back as ``prediction > 0``;
* uint8 (``L``, ``LA``, ``RGB``, ``RGBA``, ``P`` through its palette): 0..255;
* uint16 (``I;16``, ``I;16L``, ``I;16B``): 0..65535;
* other integers (``I``: int32): 0..65535 when every known pixel lies in it
  (16-bit data read as ``I``), else the known pixels' min..max;
* floats (``F``: float32, numpy float arrays): 0..1 when every known pixel lies
  in it, else the known pixels' min..max. Known NaN or infinite values are
  refused (:class:`DataError`); missing pixels may hold anything.

Integer predictions are rounded and every prediction is clipped to ``lo..hi``.
PIL images are converted to and from arrays in bands of rows, so a conversion
needs the image twice, never three times.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ganforge.errors import DataError

#: PIL modes the pipeline accepts; the result has the same mode.
PIL_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I", "F")
_BAND = 512  # rows per band when converting or scanning large images


def value_range(colour: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)`` of an ``(H, W, C)`` array whose missing pixels are ``mask`` (H, W); see the module doc."""
    dt = colour.dtype
    if dt == np.bool_:
        return 0.0, 1.0
    if dt.kind == "u" and dt.itemsize <= 2:
        return 0.0, float(np.iinfo(dt).max)
    if dt.kind not in "uif":
        raise DataError(None, f"unsupported pixel type {dt}")
    default = (0.0, 1.0) if dt.kind == "f" else (0.0, 65535.0)
    lo, hi = np.inf, -np.inf
    for y in range(0, colour.shape[0], _BAND):
        known = colour[y:y + _BAND][~mask[y:y + _BAND]]
        if known.size == 0:
            continue
        if dt.kind == "f" and not np.isfinite(known).all():
            raise DataError(None, "the image has NaN or infinite known pixels")
        lo, hi = min(lo, float(known.min())), max(hi, float(known.max()))
    if lo > hi or (default[0] <= lo and hi <= default[1]):
        return default
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


class ArrayCanvas:
    """A numpy ``(H, W, C)`` array (C in 1, 3; any real dtype), read and written in place."""

    def __init__(self, colour: np.ndarray, lo: float, hi: float):
        self.colour, self.lo, self.hi = colour, lo, hi
        self.channels = colour.shape[2]
        self.device = torch.device("cpu")

    def read(self, y0: int, y1: int, x0: int, x1: int) -> Tensor:
        """Float32 ``(C, h, w)`` in [-1, 1]."""
        crop = self.colour[y0:y1, x0:x1].astype(np.float32)
        x = torch.from_numpy(crop).permute(2, 0, 1)
        return x.sub(self.lo).mul(2.0 / (self.hi - self.lo)).sub(1.0)

    def write(self, y0: int, y1: int, x0: int, x1: int, pred: Tensor, where: np.ndarray) -> None:
        """Store ``pred`` (C, h, w) in [-1, 1] at the True pixels of ``where`` (h, w) only."""
        if not where.any():
            return
        dt = self.colour.dtype
        u = pred.detach().float().cpu().permute(1, 2, 0).numpy()[where]  # (K, C)
        if dt == np.bool_:
            vals = u > 0
        else:
            vals = (u.astype(np.float64) + 1.0) * ((self.hi - self.lo) / 2.0) + self.lo
            if dt.kind in "ui":
                vals = np.rint(vals)
            vals = np.clip(vals, self.lo, self.hi).astype(dt)
        self.colour[y0:y1, x0:x1][where] = vals


class TensorCanvas:
    """A tensor ``(C, H, W)``: uint8 in [0, 255] or floating in [-1, 1], written in place."""

    def __init__(self, image: Tensor):
        if image.dtype != torch.uint8 and not image.dtype.is_floating_point:
            raise TypeError(f"image tensors must be uint8 or floating point, got {image.dtype}")
        self.image = image
        self.channels = image.shape[0]
        self.device = image.device

    def read(self, y0: int, y1: int, x0: int, x1: int) -> Tensor:
        x = self.image[:, y0:y1, x0:x1].float()
        return x.div(127.5).sub(1.0) if self.image.dtype == torch.uint8 else x

    def write(self, y0: int, y1: int, x0: int, x1: int, pred: Tensor, where: np.ndarray) -> None:
        w = torch.from_numpy(where).to(self.device)
        p = pred.to(self.device).float().clamp(-1, 1)
        if self.image.dtype == torch.uint8:
            p = p.add(1).mul(127.5).round_().clamp_(0, 255)
        view = self.image[:, y0:y1, x0:x1]
        view[:, w] = p[:, w].to(self.image.dtype)


# --------------------------------------------------------------- PIL <-> numpy

def pil_to_array(im: Image.Image, mode: str | None = None) -> np.ndarray:
    """A writable array of ``im`` (converted to ``mode`` if given), built band by band."""
    w, h = im.size
    first = im.crop((0, 0, w, min(h, _BAND)))
    first = np.asarray(first.convert(mode) if mode else first)
    out = np.empty((h,) + first.shape[1:], dtype=first.dtype)
    out[:first.shape[0]] = first
    for y in range(_BAND, h, _BAND):
        band = im.crop((0, y, w, min(h, y + _BAND)))
        out[y:y + _BAND] = np.asarray(band.convert(mode) if mode else band)
    return out


def array_to_pil(arr: np.ndarray, mode: str) -> Image.Image:
    """An image of ``mode`` from its array (as :func:`pil_to_array` gives it), band by band."""
    h, w = arr.shape[:2]
    if mode == "1":
        return Image.fromarray(arr)
    out = Image.new(mode, (w, h))
    for y in range(0, h, _BAND):
        band = np.ascontiguousarray(arr[y:y + _BAND])
        out.paste(Image.frombytes(mode, (w, band.shape[0]), band.tobytes()), (0, y))
    return out


def palette_of(im: Image.Image) -> np.ndarray:
    """The ``(K, 3)`` uint8 RGB palette of a ``P`` image (a gray ramp when it has none)."""
    pal = im.getpalette("RGB") or []
    if not pal:
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.asarray(pal, dtype=np.uint8).reshape(-1, 3)


def nearest_index(rgb: np.ndarray, palette: np.ndarray, exclude: int | None = None) -> np.ndarray:
    """``(K, 3)`` colours -> the index of the nearest palette entry (squared RGB distance), in chunks."""
    pal = palette.astype(np.int32)
    out = np.empty(len(rgb), dtype=np.uint8)
    for s in range(0, len(rgb), 16384):
        d = ((rgb[s:s + 16384, None, :].astype(np.int32) - pal[None]) ** 2).sum(-1)
        if exclude is not None and exclude < len(pal) and len(pal) > 1:
            d[:, exclude] = np.iinfo(np.int32).max  # never fill with the transparent entry
        out[s:s + 16384] = d.argmin(1)
    return out


def check_pil_mode(mode: str) -> None:
    if mode not in PIL_MODES:
        raise DataError(None, f"image mode {mode} is not supported (supported: {', '.join(PIL_MODES)}); "
                              "convert it first, e.g. image.convert('RGB')")
