"""The mask families of published inpainting benchmarks: LaMa's thin / medium / thick and CoModGAN's.

Each function draws one ``(H, W)`` bool mask (True = missing) from a NumPy
generator; :func:`ganforge.inpaint.masks.make_masks` calls them. Unlike the
``boxes`` / ``strokes`` kinds they do not aim at ``hole_ratio``: the hole size
follows from the geometry, as in the papers, and evaluation reports it.

* ``thin`` / ``medium`` / ``thick`` (Suvorov et al. 2022, LaMa): random
  irregular polylines (1-5 segments per stroke, a turn of up to 4 rad, a
  random length and brush width) and, for medium and thick, with probability
  0.3 instead random rectangles; masks with a hole ratio of 0.7 or more are
  redrawn. Parameters are those of LaMa's ``{thin,medium,thick}_256`` mask
  generator settings, scaled by ``side / 256``.
  ``lama`` picks one of the three per mask (LaMa trains on such a mix).
* ``comod`` (Zhao et al. 2021, CoModGAN): random rectangles (up to 10 of up to
  half the side, up to 5 of up to the full side) and random brush strokes (up
  to 20 polylines of 4-18 vertices, widths 12-48 px at 512, scaled), redrawn
  until the hole ratio falls in ``hole_range``. Evaluation uses the buckets
  :data:`COMOD_BUCKETS`.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

LAMA_FAMILIES = ("thin", "medium", "thick")
# (lo, hi]: the hole ratio buckets of CoModGAN's evaluation; the last one is (0.8, 1.0), open at 1.
COMOD_BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
MAX_TRIES = 10_000  # redraws for a CoModGAN mask to land in its bucket (a few on average)

# LaMa's generator configs at 256 px: irregular strokes, and rectangles drawn instead with box_proba.
_LAMA = {
    "thin": dict(min_times=4, max_times=50, max_width=10, max_len=40, box_proba=0.0),
    "medium": dict(min_times=4, max_times=5, max_width=50, max_len=100, box_proba=0.3,
                   margin=0, box_min=10, box_max=50, box_times=5),
    "thick": dict(min_times=1, max_times=5, max_width=100, max_len=200, box_proba=0.3,
                  margin=10, box_min=30, box_max=150, box_times=3),
}
LAMA_MAX_RATIO = 0.7  # LaMa's generators keep masks with a hole ratio in [0, 0.7)


def _line(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], width: int) -> None:
    """A polyline of ``width`` px with round joints and caps (as OpenCV's thick lines have)."""
    draw.line(points, fill=1, width=width)
    r = width / 2
    for x, y in points:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=1)


def _lama_irregular(h: int, w: int, rng: np.random.Generator, k: float, p: dict) -> np.ndarray:
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for i in range(int(rng.integers(p["min_times"], p["max_times"] + 1))):
        x, y = float(rng.integers(w)), float(rng.integers(h))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + float(rng.integers(4))  # LaMa's max_angle = 4 (radians, integer steps)
            if i % 2 == 0:
                angle = 2 * math.pi - angle
            length = k * (10 + float(rng.integers(p["max_len"])))
            width = max(1, round(k * (5 + float(rng.integers(p["max_width"])))))
            nx = min(max(x + length * math.sin(angle), 0.0), float(w))
            ny = min(max(y + length * math.cos(angle), 0.0), float(h))
            _line(draw, [(x, y), (nx, ny)], width)
            x, y = nx, ny
    return np.asarray(im, dtype=bool)


def _lama_boxes(h: int, w: int, rng: np.random.Generator, k: float, p: dict) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    margin = round(p["margin"] * k)
    lo = max(1, round(p["box_min"] * k))
    hi = max(lo + 1, min(round(p["box_max"] * k), h - 2 * margin, w - 2 * margin))
    for _ in range(int(rng.integers(1, p["box_times"] + 1))):
        bw, bh = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
        left = int(rng.integers(margin, max(margin + 1, w - margin - bw + 1)))
        top = int(rng.integers(margin, max(margin + 1, h - margin - bh + 1)))
        m[top:top + bh, left:left + bw] = True
    return m


def lama_mask(family: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W) bool: one mask of LaMa's ``family`` (thin, medium or thick), redrawn until its hole ratio is in (0, 0.7)."""
    p = _LAMA[family]
    k = min(h, w) / 256
    for _ in range(100):
        use_boxes = p["box_proba"] > 0 and rng.random() < p["box_proba"] / (1 + p["box_proba"])
        m = (_lama_boxes if use_boxes else _lama_irregular)(h, w, rng, k, p)
        if m.any() and m.mean() < LAMA_MAX_RATIO:
            return m
    m = np.zeros((h, w), dtype=bool)
    m[h // 4:h - h // 4, w // 4:w - w // 4] = True  # not reached in practice: 100 empty draws in a row
    return m


def _comod_brush(s: int, rng: np.random.Generator, max_tries: int) -> np.ndarray:
    """CoModGAN's ``RandomBrush`` at side ``s`` (widths scaled from its 512 px defaults)."""
    k = s / 512
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    radius = math.sqrt(2 * s * s) / 8
    im = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(max(1, max_tries)))):
        n = int(rng.integers(4, 18))
        a_min = mean_angle - rng.uniform(0, angle_range)
        a_max = mean_angle + rng.uniform(0, angle_range)
        angles = [2 * math.pi - rng.uniform(a_min, a_max) if i % 2 == 0 else rng.uniform(a_min, a_max)
                  for i in range(n)]
        pts = [(float(rng.integers(0, s)), float(rng.integers(0, s)))]
        for a in angles:
            r = float(np.clip(rng.normal(radius, radius // 2), 0, 2 * radius))
            pts.append((float(np.clip(pts[-1][0] + r * math.cos(a), 0, s)),
                        float(np.clip(pts[-1][1] + r * math.sin(a), 0, s))))
        _line(draw, pts, max(1, int(rng.uniform(12 * k, 48 * k))))
    m = np.asarray(im, dtype=bool)
    if rng.random() > 0.5:
        m = m[::-1]
    if rng.random() > 0.5:
        m = m[:, ::-1]
    return m


def in_bucket(ratio: float, bucket: tuple[float, float]) -> bool:
    """``lo < ratio <= hi``, and ``< 1`` for the last bucket (a mask cannot be all hole)."""
    lo, hi = bucket
    return lo < ratio and (ratio <= hi if hi < 1 else ratio < 1)


def comod_mask(s_h: int, s_w: int, rng: np.random.Generator,
               hole_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(H, W) bool: CoModGAN's ``RandomMask``, redrawn until its hole ratio is in ``hole_range`` (see :func:`in_bucket`).

    Non-square sizes draw a square mask of the larger side and crop it.
    """
    s = max(s_h, s_w)
    coef = min(hole_range[0] + hole_range[1], 1.0)
    for _ in range(MAX_TRIES):
        hole = np.zeros((s, s), dtype=bool)
        for tries, max_size in ((int(10 * coef), s // 2), (int(5 * coef), s)):
            for _ in range(int(rng.integers(max(1, tries)))):
                bw, bh = int(rng.integers(max(1, max_size))), int(rng.integers(max(1, max_size)))
                x = int(rng.integers(-(bw // 2), s - bw + bw // 2 + 1))
                y = int(rng.integers(-(bh // 2), s - bh + bh // 2 + 1))
                hole[max(y, 0):min(y + bh, s), max(x, 0):min(x + bw, s)] = True
        hole |= _comod_brush(s, rng, int(20 * coef))
        hole = hole[:s_h, :s_w]
        if in_bucket(float(hole.mean()), hole_range):
            return np.ascontiguousarray(hole)
    raise RuntimeError(f"no CoModGAN mask with a hole ratio in {hole_range} after {MAX_TRIES} draws")
