"""Hole masks: reproducible, covering the requested fraction, and user mask files."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.errors import ConfigError, DataError
from ganforge.inpaint.masks import DEFAULT_TOL, MASK_KINDS, load_mask, make_masks, mask_from_array


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_same_seed_same_masks_other_seed_other_masks(kind):
    a = make_masks(kind, 12, 32, 0.25, _gen(0))
    b = make_masks(kind, 12, 32, 0.25, _gen(0))
    assert torch.equal(a, b)
    assert a.shape == (12, 1, 32, 32) and a.dtype == torch.float32
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    if kind != "center":
        assert not torch.equal(a, make_masks(kind, 12, 32, 0.25, _gen(1)))


@pytest.mark.parametrize("kind", ["boxes", "strokes", "mixed"])
@pytest.mark.parametrize("size, ratio", [(28, 0.25), (64, 0.1), (64, 0.4), ((24, 40), 0.25)])
def test_random_kinds_cover_the_requested_fraction(kind, size, ratio):
    m = make_masks(kind, 24, size, ratio, _gen(3))
    frac = m.mean(dim=(1, 2, 3))
    assert (frac - ratio).abs().max().item() <= DEFAULT_TOL + 1e-9


def test_generator_state_advances_so_successive_batches_differ():
    g = _gen(5)
    assert not torch.equal(make_masks("strokes", 4, 28, 0.25, g), make_masks("strokes", 4, 28, 0.25, g))


@pytest.mark.parametrize("size, side", [(28, 14), (64, 32), (16, 8)])
def test_center_box_is_exact(size, side):
    m = make_masks("center", 3, size, 0.25)[0, 0]
    assert m.sum().item() == side * side
    rows, cols = torch.nonzero(m, as_tuple=True)
    top, left = rows.min().item(), cols.min().item()
    assert (top, left) == ((size - side) // 2, (size - side) // 2)
    assert rows.max().item() - top + 1 == side and cols.max().item() - left + 1 == side


def test_strokes_are_irregular_not_boxes():
    m = make_masks("strokes", 8, 64, 0.25, _gen(2))[:, 0]
    for one in m:
        rows, cols = torch.nonzero(one, as_tuple=True)
        bbox = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert one.sum() < 0.8 * bbox  # a brush stroke does not fill its bounding box


def test_bad_kind_and_ratio_raise_config_error():
    with pytest.raises(ConfigError, match="inpaint.masks"):
        make_masks("circles", 1, 28, 0.25)
    with pytest.raises(ConfigError, match="hole_ratio"):
        make_masks("boxes", 1, 28, 1.5, _gen(0))


def _save(arr, path):
    Image.fromarray(arr).save(path)
    return path


def test_load_mask_white_is_missing(tmp_path):
    arr = np.zeros((10, 12), np.uint8)
    arr[2:5, 3:9] = 255
    arr[7, 0] = 127  # below the threshold: known
    arr[8, 0] = 128  # at the threshold: missing
    m = load_mask(_save(arr, tmp_path / "m.png"), size=(10, 12))
    assert m.shape == (1, 1, 10, 12)
    expect = torch.from_numpy(arr >= 128).float()
    assert torch.equal(m[0, 0], expect)


def test_load_mask_converts_colour_to_gray(tmp_path):
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[1:3, 1:3] = 255
    rgb[4, 4] = (0, 0, 255)  # pure blue: luma 29, known
    m = load_mask(_save(rgb, tmp_path / "c.png"))
    assert m.sum().item() == 4 and m[0, 0, 4, 4] == 0


def test_load_mask_size_mismatch_names_both_files(tmp_path):
    path = _save(np.full((10, 12), 255, np.uint8), tmp_path / "m.png")
    with pytest.raises(DataError) as info:
        load_mask(path, size=(20, 12), image_path=tmp_path / "photo.png")
    msg = str(info.value)
    assert "m.png" in msg and "photo.png" in msg and "12x10" in msg and "12x20" in msg


def test_empty_mask_is_an_error(tmp_path):
    path = _save(np.zeros((8, 8), np.uint8), tmp_path / "empty.png")
    with pytest.raises(DataError, match="mask has no missing pixels"):
        load_mask(path)
    with pytest.raises(DataError, match="no missing pixels"):
        mask_from_array(np.zeros((4, 4), bool))


def test_unreadable_and_missing_mask_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read"):
        load_mask(bad)
    with pytest.raises(DataError, match="not found"):
        load_mask(tmp_path / "nope.png")
