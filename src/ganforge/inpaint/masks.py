"""Hole masks for training and evaluating inpainting, and loading user masks.

Every mask is a float tensor ``(N, 1, H, W)`` with **1 = missing** and
**0 = known**. Generators take a ``torch.Generator`` and are reproducible: the
same generator state gives the same masks. Internally one 63-bit seed is
drawn from it per call and drives a NumPy generator, because the geometry is
drawn with many small array operations where NumPy's per-call overhead is a
fraction of torch's (and the generator may live on a GPU).

Kinds (``inpaint.masks`` in the config):

* ``center``: one centred box of side ``sqrt(ratio) * side`` per axis, so its
  area is exactly ``ratio`` of the image when those sides are integers
  (28x28 at 0.25 -> 14x14). Deterministic.
* ``boxes``: one to ``max_boxes`` axis-aligned boxes with random aspect
  ratios, added until the missing fraction is within ``tol`` of ``ratio``
  (boxes never push it above ``ratio``).
* ``strokes``: free-form brush strokes in the spirit of Yu et al. 2019
  ("Free-Form Image Inpainting with Gated Convolution", Algorithm 1): random
  polylines with a random start, per-vertex turns, segment lengths and a
  per-stroke brush width, drawn as round-capped capsules. Segments are added
  (shortened or thinned when they would overshoot) until the missing
  fraction is within ``tol`` of ``ratio``.
* ``mixed``: each mask independently one of the three above.
* ``thin``, ``medium``, ``thick``, ``lama`` (one of the three per mask) and
  ``comod``: the families of LaMa and CoModGAN
  (:mod:`ganforge.inpaint.mask_families`). Their hole size follows from their
  geometry (``ratio`` is not used); ``comod`` takes a ``hole_range`` bucket.
  ``lama-comod`` (for training) draws one of thin, medium, thick and comod per
  mask, so a model also sees CoModGAN's large holes (half the image and more).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganforge.config_schema import CHOICES
from ganforge.errors import ConfigError, DataError
from ganforge.inpaint.mask_families import LAMA_FAMILIES, comod_mask, lama_mask

MASK_KINDS = CHOICES["inpaint.masks"]  # one list for the config, the CLI and the generator
FAMILY_KINDS = ("thin", "medium", "thick", "lama", "comod", "lama-comod")  # geometry-defined hole sizes
DEFAULT_TOL = 0.02  # allowed |missing fraction - ratio| for the random kinds


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _numpy_rng(gen: torch.Generator | None) -> np.random.Generator:
    """One seed drawn from ``gen`` (on whatever device it lives) seeds a NumPy generator."""
    if gen is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    return np.random.default_rng(seed)


def _check(ratio: float, h: int, w: int) -> None:
    if not 0.0 < ratio < 1.0:
        raise ConfigError("hole_ratio", f"must be in (0, 1), got {ratio}")
    if h < 4 or w < 4:
        raise ConfigError("size", f"masks need images of at least 4x4 pixels, got {h}x{w}")


def _tolerance_px(ratio: float, tol: float, area: int) -> tuple[int, int]:
    """Accepted missing-pixel counts ``[lo, hi]``; at least 2 px wide so tiny images converge."""
    slack = max(tol * area, 2.0)
    target = ratio * area
    return max(1, math.ceil(target - slack)), math.floor(target + slack)


# ------------------------------------------------------------------ centre box

def center_box(h: int, w: int, ratio: float) -> np.ndarray:
    """(H, W) bool: a centred box of ``round(sqrt(ratio) * H) x round(sqrt(ratio) * W)``."""
    _check(ratio, h, w)
    s = math.sqrt(ratio)
    bh, bw = max(1, round(s * h)), max(1, round(s * w))
    top, left = (h - bh) // 2, (w - bw) // 2
    m = np.zeros((h, w), dtype=bool)
    m[top:top + bh, left:left + bw] = True
    return m


# ---------------------------------------------------------------- random boxes

def random_boxes(h: int, w: int, ratio: float, rng: np.random.Generator, max_boxes: int = 3,
                 tol: float = DEFAULT_TOL) -> np.ndarray:
    """(H, W) bool: up to ``max_boxes`` boxes (more, smaller ones only to close the gap to ``ratio``)."""
    _check(ratio, h, w)
    lo, _ = _tolerance_px(ratio, tol, h * w)
    target = int(round(ratio * h * w))
    m = np.zeros((h, w), dtype=bool)
    k = int(rng.integers(1, max_boxes + 1))
    shares = rng.dirichlet(np.full(k, 2.0)) if k > 1 else np.ones(1)
    for i in range(64):
        covered = int(m.sum())
        if covered >= lo:
            break
        remaining = target - covered
        area = remaining * shares[i] if i < k else remaining  # planned boxes, then fill the gap
        area = max(1.0, min(area, remaining))
        aspect = math.exp(rng.uniform(-math.log(2.0), math.log(2.0)))
        bh = int(min(h, max(1, round(math.sqrt(area * aspect)))))
        bw = int(min(w, max(1, math.floor(area / bh))))
        while bh * bw > remaining and bh > 1:  # never above the target: overlaps only lower coverage
            bh -= 1
        top = int(rng.integers(0, h - bh + 1))
        left = int(rng.integers(0, w - bw + 1))
        m[top:top + bh, left:left + bw] = True
    return m


# ---------------------------------------------------------- free-form strokes

def _capsule(h: int, w: int, p0: np.ndarray, p1: np.ndarray, radius: float) -> tuple[slice, slice, np.ndarray]:
    """Pixels whose centre is within ``radius`` of segment p0-p1 (points are (y, x)); bounding-box local."""
    y0 = max(0, int(math.floor(min(p0[0], p1[0]) - radius)))
    y1 = min(h, int(math.ceil(max(p0[0], p1[0]) + radius)) + 1)
    x0 = max(0, int(math.floor(min(p0[1], p1[1]) - radius)))
    x1 = min(w, int(math.ceil(max(p0[1], p1[1]) + radius)) + 1)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    d = p1 - p0
    length2 = float(d @ d)
    if length2 > 0:
        t = np.clip(((ys - p0[0]) * d[0] + (xs - p0[1]) * d[1]) / length2, 0.0, 1.0)
    else:
        t = np.zeros((y1 - y0, x1 - x0))
    dist2 = (ys - (p0[0] + t * d[0])) ** 2 + (xs - (p0[1] + t * d[1])) ** 2
    return slice(y0, y1), slice(x0, x1), dist2 <= radius * radius


def free_form(h: int, w: int, ratio: float, rng: np.random.Generator, tol: float = DEFAULT_TOL,
              max_vertices: int = 8, max_angle: float = math.pi / 2) -> np.ndarray:
    """(H, W) bool: brush strokes accumulated until the missing fraction is within ``tol`` of ``ratio``.

    Brush widths are drawn per stroke in ``[side/24, side/7]`` (at least 1 px),
    segment lengths in ``[side/10, side/4]``, turns in ``[-max_angle, max_angle]``.
    A segment that would overshoot the tolerance band is halved (up to three
    times), then drawn 1 px wide, then skipped.
    """
    _check(ratio, h, w)
    lo, hi = _tolerance_px(ratio, tol, h * w)
    side = min(h, w)
    m = np.zeros((h, w), dtype=bool)
    covered = 0
    vertices_left = 0
    point = np.zeros(2)
    angle, radius = 0.0, 1.0
    for _ in range(2000):
        if covered >= lo:
            break
        if vertices_left == 0:  # a new stroke
            vertices_left = int(rng.integers(2, max_vertices + 1))
            point = np.array([rng.uniform(0, h), rng.uniform(0, w)])
            angle = rng.uniform(0, 2 * math.pi)
            radius = max(0.5, rng.uniform(side / 24, side / 7) / 2)
        angle += rng.uniform(-max_angle, max_angle)
        length = rng.uniform(side / 10, side / 4)
        drawn = False
        for r, scale in ((radius, 1.0), (radius, 0.5), (radius, 0.25), (radius, 0.125), (0.5, 0.125)):
            end = point + scale * length * np.array([math.sin(angle), math.cos(angle)])
            end = np.clip(end, [0.0, 0.0], [h - 1e-6, w - 1e-6])
            ys, xs, disk = _capsule(h, w, point, end, r)
            added = int((disk & ~m[ys, xs]).sum())
            if covered + added <= hi:
                m[ys, xs] |= disk
                covered += added
                point, drawn = end, True
                break
        vertices_left = vertices_left - 1 if drawn else 0
    return m


# ---------------------------------------------------------------- public API

def make_masks(kind: str, n: int, size: int | tuple[int, int], ratio: float = 0.25,
               gen: torch.Generator | None = None, tol: float = DEFAULT_TOL,
               device: torch.device | str = "cpu", hole_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """``n`` masks of ``kind`` as float ``(n, 1, H, W)`` on ``device`` (1 = missing).

    Args:
        kind: one of :data:`MASK_KINDS`.
        size: ``H`` (square) or ``(H, W)``.
        ratio: target fraction of missing pixels.
        gen: seeds the random kinds (one draw per call); ``center`` ignores it.
        tol: accepted ``|missing fraction - ratio|`` for ``boxes`` and ``strokes``.
        hole_range: ``comod`` only: the bucket ``(lo, hi]`` its hole ratio must fall in.
    """
    if kind not in MASK_KINDS:
        raise ConfigError("inpaint.masks", f"must be one of {', '.join(MASK_KINDS)}, got {kind!r}")
    h, w = _hw(size)
    _check(ratio, h, w)
    if kind == "center":
        one = torch.from_numpy(center_box(h, w, ratio))
        return one.to(device=device, dtype=torch.float32).expand(n, 1, h, w).clone()
    rng = _numpy_rng(gen)
    out = np.zeros((n, 1, h, w), dtype=bool)
    if kind in FAMILY_KINDS:
        for i in range(n):
            family = kind
            if kind in ("lama", "lama-comod"):
                choices = LAMA_FAMILIES + (("comod",) if kind == "lama-comod" else ())
                family = choices[int(rng.integers(0, len(choices)))]
            if family == "comod":
                out[i, 0] = comod_mask(h, w, rng, hole_range)
            else:
                out[i, 0] = lama_mask(family, h, w, rng)
        return torch.from_numpy(out).to(device=device, dtype=torch.float32)
    for i in range(n):
        k = kind if kind != "mixed" else MASK_KINDS[int(rng.integers(0, 3))]
        if k == "center":
            out[i, 0] = center_box(h, w, ratio)
        elif k == "boxes":
            out[i, 0] = random_boxes(h, w, ratio, rng, tol=tol)
        else:
            out[i, 0] = free_form(h, w, ratio, rng, tol=tol)
    return torch.from_numpy(out).to(device=device, dtype=torch.float32)


def mask_bool(arr: np.ndarray, where: str | os.PathLike | None = None) -> np.ndarray:
    """A user mask array -> bool ``(H, W)`` (True = missing), without float temporaries of the full size.

    ``(H, W)`` or ``(H, W, C)`` arrays: bool (True = missing), integers (>= 128
    = missing, i.e. white), floats (> 0.5 = missing). Colour is reduced to gray
    with the BT.601 luma weights before thresholding, one band of rows at a
    time. An all-known mask raises :class:`DataError` ("mask has no missing pixels").
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[2] in (3, 4)):
        raise DataError(where, f"a mask must be (H, W) or (H, W, C), got shape {a.shape}")
    if a.dtype.kind not in "buif":
        raise DataError(where, f"unsupported mask type {a.dtype}")
    if a.ndim == 2 and a.dtype == bool:
        missing = a.copy()
    else:
        missing = np.empty(a.shape[:2], dtype=bool)
        luma = np.array([0.299, 0.587, 0.114])
        for y in range(0, a.shape[0], 512):
            band = a[y:y + 512]
            if band.ndim == 3:
                band = band[..., :3].astype(np.float64) @ luma  # integers keep the >= 128 threshold
            missing[y:y + 512] = band >= 128 if a.dtype.kind in "ui" else band > 0.5
    if not missing.any():
        raise DataError(where, "mask has no missing pixels (white = missing)")
    return missing


def mask_from_array(arr: np.ndarray, where: str | os.PathLike | None = None) -> Tensor:
    """A user mask array -> float ``(1, 1, H, W)`` (1 = missing); the rules of :func:`mask_bool`."""
    return torch.from_numpy(mask_bool(arr, where)).float()[None, None]


def load_mask_array(path: str | os.PathLike, size: tuple[int, int] | None = None,
                    image_path: str | os.PathLike | None = None) -> np.ndarray:
    """Read a mask image as bool ``(H, W)``: white = missing (grayscale value >= 128), black = known.

    Args:
        path: any image Pillow reads (colour and alpha are converted to gray first).
        size: the ``(H, W)`` of the image it belongs to; a different size raises
            :class:`DataError` naming both files and both sizes.
        image_path: that image, for the error message.

    Unreadable, truncated or oversized files raise :class:`DataError`
    (:func:`ganforge.imageio.read_image`).
    """
    from ganforge.imageio import read_image
    from ganforge.inpaint.pixels import pil_to_array

    path = Path(path)
    with read_image(path, "mask", load=False) as im:
        w, h = im.size
        if size is not None and (h, w) != tuple(size):
            other = f"the image {image_path}" if image_path is not None else "the image"
            raise DataError(path, f"mask is {w}x{h} (WxH) but {other} is {size[1]}x{size[0]}")
        try:
            gray = pil_to_array(im, None if im.mode in ("1", "L") else "L")
        except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, zlib errors ...
            raise DataError(path, f"cannot read the mask image ({type(exc).__name__}: {exc})") from None
    return mask_bool(gray, path)


def load_mask(path: str | os.PathLike, size: tuple[int, int] | None = None,
              image_path: str | os.PathLike | None = None) -> Tensor:
    """:func:`load_mask_array` as float ``(1, 1, H, W)`` (1 = missing)."""
    return torch.from_numpy(load_mask_array(path, size, image_path)).float()[None, None]
