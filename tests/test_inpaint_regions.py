"""Inpainting around the holes: crop planning, bounded forward passes, every accepted pixel mode."""

from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from ganforge.errors import ConfigError, DataError
from ganforge.inpaint.pipeline import InpaintingPipeline
from ganforge.inpaint.regions import dilate, label, min_pixels, owned, plan_crops, receptive_field
from ganforge.models.encoder_decoder import InpaintGenerator

_G1 = InpaintGenerator(1, width=4, res_blocks=1)
_G3 = InpaintGenerator(3, width=4, res_blocks=1)


def _reference_components(grid):
    """8-connected components by breadth-first search: a list of sets of cells."""
    seen, comps = np.zeros_like(grid), []
    for start in zip(*np.nonzero(grid)):
        if seen[start]:
            continue
        comp, todo = set(), deque([start])
        seen[start] = True
        while todo:
            y, x = todo.popleft()
            comp.add((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (y + dy, x + dx)
                    if 0 <= q[0] < grid.shape[0] and 0 <= q[1] < grid.shape[1] and grid[q] and not seen[q]:
                        seen[q] = True
                        todo.append(q)
        comps.append(comp)
    return comps


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), p=st.floats(0.05, 0.7), seed=st.integers(0, 2**31 - 1))
def test_label_matches_a_flood_fill(h, w, p, seed):
    grid = np.random.default_rng(seed).random((h, w)) < p
    labels, n = label(grid)
    comps = _reference_components(grid)
    assert n == len(comps) and np.array_equal(labels > 0, grid)
    for comp in comps:
        ids = {labels[c] for c in comp}
        assert len(ids) == 1  # one label per component, and distinct components never share one
    assert len({labels[next(iter(c))] for c in comps}) == n


def test_dilate_is_a_square_max_filter():
    g = np.zeros((9, 11), bool)
    g[4, 5] = g[0, 10] = True
    d = dilate(g, 2)
    expect = np.zeros_like(g)
    expect[2:7, 3:8] = expect[0:3, 8:11] = True
    assert np.array_equal(d, expect)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(4, 90), w=st.integers(4, 90), margin=st.integers(1, 20), cell=st.sampled_from([4, 8, 16]),
       extra=st.integers(0, 4000), kind=st.sampled_from(["dots", "box", "all"]), seed=st.integers(0, 2**31 - 1))
def test_crops_partition_the_holes_within_budget_and_with_context(h, w, margin, cell, extra, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "dots":
        mask = rng.random((h, w)) < 0.01
        mask[rng.integers(h), rng.integers(w)] = True
    elif kind == "box":
        mask = np.zeros((h, w), bool)
        y, x = rng.integers(h), rng.integers(w)
        mask[y:y + rng.integers(1, h), x:x + rng.integers(1, w)] = True
    else:
        mask = np.ones((h, w), bool)
    budget = min_pixels(margin, cell) + extra
    crops, labels = plan_crops(mask, margin, budget, cell)
    count = np.zeros((h, w), np.int32)
    for c in crops:
        assert (c.y1 - c.y0) * (c.x1 - c.x0) <= budget
        assert c.y0 % cell == 0 and c.x0 % cell == 0  # the generator's stride-4 grid is kept
        assert c.y0 <= c.cy0 < c.cy1 <= c.y1 and c.x0 <= c.cx0 < c.cx1 <= c.x1
        # at least `margin` pixels of context on each side, except at the image border
        assert c.cy0 - c.y0 >= margin or c.y0 == 0
        assert c.cx0 - c.x0 >= margin or c.x0 == 0
        assert c.y1 - c.cy1 >= margin or c.y1 == h
        assert c.x1 - c.cx1 >= margin or c.x1 == w
        count[c.cy0:c.cy1, c.cx0:c.cx1] += owned(c, labels, mask, cell)
    assert np.array_equal(count, mask.astype(np.int32))  # every hole pixel written exactly once


def test_small_holes_far_apart_get_small_crops():
    mask = np.zeros((2000, 3000), bool)
    mask[100:110, 100:120] = True
    mask[1500:1530, 2500:2505] = True
    crops, _ = plan_crops(mask, margin=30, max_pixels=1 << 20)
    assert len(crops) == 2
    assert sum((c.y1 - c.y0) * (c.x1 - c.x0) for c in crops) < 0.01 * mask.size


def test_receptive_field_bounds_the_dependence_of_a_pixel():
    G = InpaintGenerator(1, width=4, res_blocks=3)
    for name, m in list(G.named_modules()):  # instance norm is global; take it out to see the local field
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                setattr(m, child_name, nn.Identity())
    rf = receptive_field(G)
    size = rf + 40
    x = torch.randn(1, 2, size, size, requires_grad=True)
    out = G.decoder(G.blocks(G.encoder(x)))
    out[0, 0, size // 2, size // 2].backward()
    rows = np.nonzero(x.grad.abs().sum((0, 1, 3)).numpy())[0]
    cols = np.nonzero(x.grad.abs().sum((0, 1, 2)).numpy())[0]
    assert rows.max() - rows.min() + 1 <= rf and cols.max() - cols.min() + 1 <= rf
    assert rows.max() - rows.min() + 1 > rf // 2
    assert receptive_field(InpaintGenerator(1, width=4, res_blocks=6)) > 100  # the documented ~100 px


class _Recorder(nn.Module):
    """The generator, recording the (N, C, H, W) of every forward pass."""

    def __init__(self, g):
        super().__init__()
        self.g, self.channels, self.shapes = g, g.channels, []

    def forward(self, x, m):
        self.shapes.append(tuple(x.shape))
        return self.g(x, m)


def test_forward_passes_stay_within_the_pixel_budget_and_fill_every_hole():
    rec = _Recorder(_G1)
    pipe = InpaintingPipeline(rec, 1)
    budget = 2 * min_pixels(pipe.context)
    pipe = InpaintingPipeline(rec, 1, max_pixels=budget)
    image = np.random.default_rng(0).random((300, 260)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[20:280, 30:250] = True  # one region much larger than the budget: tiled
    image[mask] = np.nan  # whatever the holes hold is never read
    out = pipe(image, mask)
    assert len(rec.shapes) > 4 and all(n * h * w <= budget for n, _, h, w in rec.shapes)
    assert np.isfinite(out).all() and np.array_equal(out[~mask], image[~mask])


def test_a_small_hole_in_a_large_image_costs_a_small_crop():
    rec = _Recorder(_G1)
    pipe = InpaintingPipeline(rec, 1)
    image = np.full((1500, 1700), 90, np.uint8)
    mask = np.zeros(image.shape, bool)
    mask[700:710, 800:830] = True
    out = pipe(image, mask)
    assert sum(n * h * w for n, _, h, w in rec.shapes) < 0.005 * image.size
    assert np.array_equal(out[~mask], image[~mask])


def test_one_crop_covering_the_image_equals_the_whole_image_generator():
    pipe = InpaintingPipeline(_G3, 3)
    x = torch.rand(3, 3, 28, 28) * 2 - 1
    m = torch.zeros(3, 1, 28, 28)
    m[0, :, 8:20, 8:20] = 1
    m[1, :, 0:5, 20:28] = 1
    m[2, :, 14:16, :] = 1
    with torch.no_grad():
        assert torch.equal(pipe.fill(x, m), _G3(x, m))  # batched crops, same as one call per batch


# ----------------------------------------------------------- pixel modes

def _pil(mode, rng, h=23, w=31):
    if mode == "1":
        return Image.fromarray(rng.random((h, w)) < 0.5)
    if mode == "P":
        im = Image.fromarray(rng.integers(0, 6, (h, w), dtype=np.uint8)).convert("P")
        im.putpalette([10, 200, 30, 250, 0, 0, 0, 0, 255, 90, 90, 90, 255, 255, 0, 3, 3, 3])
        return im
    if mode in ("I;16", "I;16B"):
        return Image.frombytes(mode, (w, h), rng.integers(0, 65536, (h, w), dtype=np.uint16).tobytes())
    if mode == "I":
        return Image.fromarray(rng.integers(-70000, 90000, (h, w), dtype=np.int32))
    if mode == "F":
        return Image.fromarray((rng.standard_normal((h, w)) * 300).astype(np.float32))
    shape = {"L": (h, w), "LA": (h, w, 2), "RGB": (h, w, 3), "RGBA": (h, w, 4)}[mode]
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I", "F"])
@pytest.mark.parametrize("model", [1, 3])
def test_every_pil_mode_keeps_mode_and_known_pixels_bit_identical(mode, model):
    rng = np.random.default_rng(len(mode) + model)
    image = _pil(mode, rng)
    assert image.mode == mode
    mask = np.zeros((23, 31), bool)
    mask[5:15, 8:22] = True
    out = InpaintingPipeline(_G1 if model == 1 else _G3, model)(image, Image.fromarray(mask))
    a, b = np.asarray(image), np.asarray(out)
    assert out.mode == mode and out.size == image.size and b.dtype == a.dtype
    assert np.array_equal(a[~mask], b[~mask])
    if mode == "P":
        assert out.getpalette() == image.getpalette() and b[mask].max() < 6
    if mode in ("I", "F"):  # the fill stays within the known pixels' range
        assert a[~mask].min() <= b[mask].min() and b[mask].max() <= a[~mask].max()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int32, bool])
@pytest.mark.parametrize("channels", [0, 1, 2, 3, 4])
def test_numpy_images_of_each_dtype_keep_known_pixels(dtype, channels):
    rng = np.random.default_rng(channels)
    shape = (17, 20) if channels == 0 else (17, 20, channels)
    if dtype == bool:
        image = rng.random(shape) < 0.5
    elif np.issubdtype(dtype, np.floating):
        image = rng.random(shape).astype(dtype)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    mask = np.zeros((17, 20), bool)
    mask[3:9, 4:16] = True
    out = InpaintingPipeline(_G3, 3)(image, mask)
    assert out.dtype == image.dtype and out.shape == image.shape
    assert np.array_equal(out[~mask], image[~mask])
    if channels in (2, 4):
        assert np.array_equal(out[..., -1], image[..., -1])  # alpha untouched, holes included
    if np.issubdtype(dtype, np.floating):
        assert 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
def test_tensor_batches_keep_known_pixels(dtype):
    x = torch.rand(4, 3, 19, 22)
    x = (x * 255).to(torch.uint8) if dtype == torch.uint8 else (x * 2 - 1).to(dtype)
    masks = torch.zeros(4, 1, 19, 22, dtype=torch.bool)
    for i in range(4):
        masks[i, :, i:i + 6, 2 * i:2 * i + 9] = True
    out = InpaintingPipeline(_G1, 1)(x, masks)
    keep = ~masks.expand_as(x)
    assert out.dtype == dtype and torch.equal(out[keep], x[keep]) and not torch.equal(out, x)


def test_bad_inputs_are_data_errors():
    pipe = InpaintingPipeline(_G1, 1)
    with pytest.raises(DataError, match="1x1 pixels"):
        pipe(np.zeros((1, 1), np.uint8), np.ones((1, 1), bool))
    with pytest.raises(DataError, match="3x8 pixels"):
        pipe(Image.new("L", (3, 8)), Image.new("L", (3, 8), 255))
    with pytest.raises(DataError, match="mask is 5x4"):
        pipe(np.zeros((6, 6), np.uint8), np.ones((4, 5), bool))
    with pytest.raises(DataError, match="mode CMYK is not supported.*convert"):
        pipe(Image.new("CMYK", (8, 8)), np.ones((8, 8), bool))
    bad = np.zeros((8, 8), np.float32)
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        pipe(bad, np.fliplr(np.eye(8, dtype=bool)))  # the inf is a known pixel
    with pytest.raises(DataError, match="no missing pixels"):
        pipe(np.zeros((8, 8), np.uint8), np.zeros((8, 8), bool))
    with pytest.raises(ConfigError, match="max_pixels"):
        InpaintingPipeline(_G1, 1, max_pixels=100)


@pytest.mark.parametrize("side", [4, 5, 7])
def test_tiny_images_are_padded_not_refused(side):
    image = np.arange(side * side, dtype=np.uint8).reshape(side, side)
    mask = np.zeros((side, side), bool)
    mask[1:3, 1:3] = True
    out = InpaintingPipeline(_G3, 3)(image, mask)
    assert np.array_equal(out[~mask], image[~mask])
