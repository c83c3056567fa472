"""Where to run the inpainting generator: crops around the holes, tiled to a pixel budget.

The generator only needs the neighbourhood of a hole: beyond its receptive
field a pixel cannot change the prediction (except through instance-norm
statistics). So instead of the whole image, :func:`plan_crops` returns crops:

1. The mask is summarised on a grid of ``cell x cell`` pixels (a cell is
   "hole" if any of its pixels is missing). Memory: one bool per cell.
2. Hole cells are dilated by ``ceil(margin / cell)`` cells and the result is
   split into 8-connected components. Each component gets one crop: the
   bounding box of its hole cells grown by the margin (clipped to the image),
   so every hole pixel sees at least ``margin`` pixels of context on each side
   that is not the image border.
3. A crop of more than ``max_pixels`` pixels is tiled: square tiles of side
   ``T = floor(sqrt(max_pixels))`` (rounded down to cells) whose *cores* of
   side ``T - 2 * margin`` partition the component's box; a tile predicts only
   its core, with ``margin`` pixels of context around it.

Each hole pixel is written by exactly one crop: the component that owns its
cell, and the tile whose core contains it. Crops of another component may
overlap this one; their holes are masked in the input, never pasted. Crop
corners are multiples of ``cell`` (a multiple of 4), so every crop sees the
same stride-4 sampling grid of the generator as the whole image would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

DEFAULT_CELL = 16  # pixels per grid cell; a multiple of the generator's total stride (4)


@dataclass(frozen=True)
class Crop:
    """One forward pass's window: the crop ``[y0:y1, x0:x1]`` and the core ``[cy0:cy1, cx0:cx1]``
    inside it whose hole pixels of component ``label`` it fills (pixel coordinates, ends exclusive)."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int
    label: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def receptive_field(module: nn.Module) -> int:
    """Receptive field (pixels, one axis) of a feed-forward stack of 2-D (transposed) convolutions.

    Walks ``Conv2d`` / ``ConvTranspose2d`` layers in registration order, which is
    the data flow for :class:`ganforge.models.encoder_decoder.InpaintGenerator` (residual
    additions do not widen it). A transposed convolution of stride ``s`` reads
    ``ceil(k_eff / s)`` input cells per output pixel.
    """
    rf, jump = 1.0, 1.0
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            k_eff = (m.kernel_size[0] - 1) * m.dilation[0] + 1
            rf += (math.ceil(k_eff / m.stride[0]) - 1) * jump
            jump /= m.stride[0]
        elif isinstance(m, nn.Conv2d):
            rf += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return int(math.ceil(rf))


def hole_cells(mask: np.ndarray, cell: int) -> np.ndarray:
    """(H, W) bool -> (ceil(H / cell), ceil(W / cell)) bool: cells with at least one missing pixel.

    Works one band of ``cell`` rows at a time, so it allocates no full-size temporaries.
    """
    h, w = mask.shape
    starts = np.arange(0, w, cell)
    out = np.empty((-(-h // cell), len(starts)), dtype=bool)
    for i, y in enumerate(range(0, h, cell)):
        out[i] = np.logical_or.reduceat(mask[y:y + cell].any(axis=0), starts)
    return out


def _dilate_1d(grid: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Max filter of half-width ``r`` along ``axis`` (prefix sums: O(cells) for any ``r``)."""
    g = np.moveaxis(grid, axis, -1).astype(np.int32)
    c = np.concatenate([np.zeros(g.shape[:-1] + (1,), np.int32), np.cumsum(g, axis=-1)], axis=-1)
    n = g.shape[-1]
    idx = np.arange(n)
    hi = np.minimum(idx + r + 1, n)
    lo = np.maximum(idx - r, 0)
    return np.moveaxis((c[..., hi] - c[..., lo]) > 0, -1, axis)


def dilate(grid: np.ndarray, r: int) -> np.ndarray:
    """Square (Chebyshev) dilation of a 2-D bool grid by ``r`` cells."""
    if r <= 0:
        return grid.copy()
    return _dilate_1d(_dilate_1d(grid, r, 0), r, 1)


def label(grid: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a 2-D bool grid: ``(labels int32 (same shape, 0 = background), count)``.

    Run-based union-find: runs of True cells per row, joined to the runs of the
    previous row they touch (diagonals included). The Python loop is over runs,
    which on a dilated hole grid are few.
    """
    hc, wc = grid.shape
    padded = np.zeros((hc, wc + 2), dtype=np.int8)
    padded[:, 1:-1] = grid
    d = np.diff(padded, axis=1)
    rows_s, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)  # same row-major order as the starts: one end per start
    parent = list(range(len(starts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows_s, np.arange(hc + 1))
    for r in range(1, hc):
        a, a_end = row_first[r - 1], row_first[r]
        for b in range(row_first[r], row_first[r + 1]):
            # runs of the previous row touching [starts[b] - 1, ends[b] + 1)
            while a < a_end and ends[a] < starts[b]:
                a += 1
            k = a
            while k < a_end and starts[k] <= ends[b]:
                ra, rb = find(k), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                k += 1
    roots = np.array([find(i) for i in range(len(starts))], dtype=np.int64)
    uniq, ids = np.unique(roots, return_inverse=True)
    labels = np.zeros((hc, wc), dtype=np.int32)
    for r, s, e, i in zip(rows_s, starts, ends, ids):
        labels[r, s:e] = i + 1
    return labels, len(uniq)


def tile_side(max_pixels: int, cell: int) -> int:
    """Side of the square tiles for ``max_pixels``: ``floor(sqrt(max_pixels))`` rounded down to cells."""
    return (math.isqrt(max_pixels) // cell) * cell


def min_pixels(margin: int, cell: int = DEFAULT_CELL) -> int:
    """Smallest budget whose tiles have a core of at least one cell: ``(2 * margin + cell)^2`` (in cells)."""
    side = (2 * math.ceil(margin / cell) + 1) * cell
    return side * side


def plan_crops(mask: np.ndarray, margin: int, max_pixels: int,
               cell: int = DEFAULT_CELL) -> tuple[list[Crop], np.ndarray]:
    """Crops covering every missing pixel of ``mask`` (H, W) bool; see the module doc.

    Returns ``(crops, labels)``: ``labels`` is the cell grid of component ids;
    crop ``c`` fills the missing pixels of its core whose cell has label ``c.label``
    (:func:`owned`). Every crop has at most ``max_pixels`` pixels, which must be
    at least :func:`min_pixels` of ``margin``.
    """
    h, w = mask.shape
    holes = hole_cells(mask, cell)
    r = math.ceil(margin / cell)
    labels, n = label(dilate(holes, r))
    labels = np.where(holes, labels, 0).astype(np.int32)  # only hole cells are owned
    hc, wc = holes.shape
    ys, xs = np.nonzero(holes)
    lab = labels[ys, xs] - 1
    top, left = np.full(n, hc), np.full(n, wc)
    bottom, right = np.zeros(n, np.int64), np.zeros(n, np.int64)
    np.minimum.at(top, lab, ys)
    np.minimum.at(left, lab, xs)
    np.maximum.at(bottom, lab, ys + 1)
    np.maximum.at(right, lab, xs + 1)
    side = tile_side(max_pixels, cell) // cell
    core = side - 2 * r
    if core < 1:
        raise ValueError(f"max_pixels={max_pixels} is below {min_pixels(margin, cell)} for a margin of {margin}")
    crops = []
    for i in range(n):
        t, b, le, ri = int(top[i]), int(bottom[i]), int(left[i]), int(right[i])
        whole = (min(hc, b + r) - max(0, t - r)) * cell, (min(wc, ri + r) - max(0, le - r)) * cell
        step = None if whole[0] * whole[1] <= max_pixels else core
        for cy in range(t, b, step or (b - t)):
            for cx in range(le, ri, step or (ri - le)):
                cy1, cx1 = (b, ri) if step is None else (min(b, cy + step), min(ri, cx + step))
                if step is not None and not (labels[cy:cy1, cx:cx1] == i + 1).any():
                    continue  # a tile of the bounding box with none of this component's holes
                crops.append(Crop(
                    y0=max(0, cy - r) * cell, y1=min(h, min(hc, cy1 + r) * cell),
                    x0=max(0, cx - r) * cell, x1=min(w, min(wc, cx1 + r) * cell),
                    cy0=cy * cell, cy1=min(h, cy1 * cell), cx0=cx * cell, cx1=min(w, cx1 * cell),
                    label=i + 1))
    return crops, labels


def owned(crop: Crop, labels: np.ndarray, mask: np.ndarray, cell: int = DEFAULT_CELL) -> np.ndarray:
    """Bool (cy1 - cy0, cx1 - cx0): the missing pixels of ``crop``'s core that it writes."""
    g = labels[crop.cy0 // cell:-(-crop.cy1 // cell), crop.cx0 // cell:-(-crop.cx1 // cell)] == crop.label
    px = np.repeat(np.repeat(g, cell, axis=0), cell, axis=1)
    oy, ox = crop.cy0 % cell, crop.cx0 % cell  # 0: cores start on cells
    px = px[oy:oy + crop.cy1 - crop.cy0, ox:ox + crop.cx1 - crop.cx0]
    return px & mask[crop.cy0:crop.cy1, crop.cx0:crop.cx1]
