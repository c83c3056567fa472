"""A picture of an inpainting evaluation: the same crops filled by every method, a block per mask family.

Numbers alone hide what a fill looks like (a smooth fill and a textured one can
have the same L1; a periodic artefact costs FID without changing PSNR much), so
``ganforge eval-inpaint --grid out.png`` also draws consecutive crops of each
evaluation (the first ones, or from ``--grid-start``): a band naming the family
(and the CoModGAN bucket), then one row each for the original, the masked input
(holes white) and every method, a column per crop, scaled up with
nearest-neighbour so single pixels stay visible.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ganforge.atomic import write_file
from ganforge.imageio import make_grid
from ganforge.report.grids import label_font

LABEL_W = 96  # pixels of the row-name column
BAND = 18  # pixels of the family's title band
GAP = 6  # pixels between blocks


def preview_rows(original: Tensor, hole: Tensor, restored: dict[str, Tensor], k: int,
                 start: int = 0) -> dict[str, Tensor]:
    """``{"original", "masked", method...}``: crops ``start`` to ``start + k - 1``, uint8 ``(k', C, H, W)``.

    ``original`` and every ``restored`` set are uint8 ``(N, C, H, W)``; ``hole`` is
    ``(N, 1, H, W)`` with 1 where pixels are missing (shown white in ``masked``).
    ``k'`` is ``k``, or fewer where the crops end first.
    """
    if not 0 <= start < len(original):
        raise ValueError(f"preview start {start} is outside the {len(original)} evaluated crops")
    window = slice(start, start + k)
    original, hole = original[window], hole[window].bool()
    rows = {"original": original, "masked": torch.where(hole, torch.full_like(original, 255), original)}
    rows.update({name: images[window] for name, images in restored.items()})
    return rows


def _title(result: dict) -> str:
    bucket = result.get("hole_range")
    return result["masks"] + (f" ({bucket[0]:g}, {bucket[1]:g}]" if bucket else "")


def _strip(images: Tensor, scale: int) -> Image.Image:
    """``(k, C, H, W)`` uint8 side by side as one RGB image, each pixel ``scale`` x ``scale``."""
    row = make_grid(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images, nrow=len(images), padding=0)
    im = Image.fromarray(row, "RGB")
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def comparison_image(results: list[dict], scale: int = 2) -> Image.Image:
    """One RGB image of the ``"preview"`` rows of ``results`` (those of :func:`evaluate_inpainting`)."""
    blocks = [(r, r["preview"]) for r in results if r.get("preview")]
    if not blocks:
        raise ValueError("no result carries preview rows (evaluate with preview > 0)")
    font = label_font()
    strips = [(r, [(name, _strip(images, scale)) for name, images in rows.items()]) for r, rows in blocks]
    width = LABEL_W + max(s.width for _, rows in strips for _, s in rows)
    height = sum(BAND + sum(s.height for _, s in rows) for _, rows in strips) + GAP * (len(strips) - 1)
    out = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(out)
    y = 0
    for result, rows in strips:
        draw.text((3, y + 2), _title(result), fill="black", font=font)
        y += BAND
        for name, strip in rows:
            draw.text((3, y + strip.height // 2 - 7), name, fill="black", font=font)
            out.paste(strip, (LABEL_W, y))
            y += strip.height
        y += GAP
    return out


def write_comparison(results: list[dict], path: str | Path, scale: int = 2) -> Path:
    """:func:`comparison_image` written to ``path`` as PNG (by rename: a failed write leaves no half file)."""
    image = comparison_image(results, scale)
    path = Path(path)
    write_file(path, lambda f: image.save(f, format="PNG", optimize=True))
    return path
