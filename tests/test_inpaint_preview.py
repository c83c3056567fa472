"""The eval-inpaint picture: every method's fill of the same crops, one block per mask family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.inpaint.preview import BAND, GAP, LABEL_W, comparison_image, preview_rows, write_comparison


def _result(masks, hole_range, k=3, n=5, channels=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    original = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    hole = torch.zeros(n, 1, size, size)
    hole[..., 2:5, 3:7] = 1
    fill = torch.where(hole.bool(), torch.zeros_like(original), original)
    return {"masks": masks, "hole_range": hole_range,
            "preview": preview_rows(original, hole, {"ganforge": fill, "telea": fill}, k)}, original, hole


def test_rows_are_the_first_crops_with_holes_white():
    result, original, hole = _result("thick", None)
    rows = result["preview"]
    assert list(rows) == ["original", "masked", "ganforge", "telea"]
    assert all(r.shape == (3, 3, 8, 8) and r.dtype == torch.uint8 for r in rows.values())
    assert torch.equal(rows["original"], original[:3])
    masked = rows["masked"]
    assert (masked[..., 2:5, 3:7] == 255).all()
    keep = ~hole[:3].bool().expand(-1, 3, -1, -1)
    assert torch.equal(masked[keep], original[:3][keep])


def test_rows_can_start_later_and_stop_at_the_last_crop():
    _, original, hole = _result("thick", None)
    fill = original.flip(0)  # a different image per crop, to see which crops were taken
    rows = preview_rows(original, hole, {"ganforge": fill}, k=3, start=3)
    assert all(len(r) == 2 for r in rows.values())  # crops 3 and 4 of five
    assert torch.equal(rows["original"], original[3:]) and torch.equal(rows["ganforge"], fill[3:])
    with pytest.raises(ValueError, match="preview start 5 is outside the 5 evaluated crops"):
        preview_rows(original, hole, {"ganforge": fill}, k=3, start=5)


def test_picture_layout_and_pixels(tmp_path):
    (a, original, _), (b, _, _) = _result("thick", None), _result("comod", [0.8, 1.0], channels=1, seed=1)
    im = comparison_image([a, b], scale=2)
    block = BAND + 4 * 8 * 2
    assert im.size == (LABEL_W + 3 * 8 * 2, 2 * block + GAP) and im.mode == "RGB"
    px = np.asarray(im)
    # Crop 1's pixel (row 4, column 5) of the first block's original row, scaled 2x, after the label column.
    y, x = BAND + 4 * 2, LABEL_W + 8 * 2 + 5 * 2
    assert (px[y:y + 2, x:x + 2] == original[1, :, 4, 5].numpy()).all()
    # The gray block is drawn as gray RGB; its masked row is white in the hole.
    y2 = block + GAP + BAND + 8 * 2 + 3 * 2
    assert (px[y2, LABEL_W + 4 * 2] == 255).all()
    path = write_comparison([a], tmp_path / "grid.png")
    with Image.open(path) as saved:
        assert saved.size == (LABEL_W + 3 * 8 * 2, block)


def test_results_without_rows_are_refused():
    with pytest.raises(ValueError, match="preview > 0"):
        comparison_image([{"masks": "thin", "hole_range": None}])
