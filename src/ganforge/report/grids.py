"""The run's fixed-noise sample grids over time: a labelled strip (PNG) and an animation (GIF).

Both are drawn with Pillow (a core dependency), each grid under a band that
names its step. A grid that cannot be read (being written while the report
reads it, damaged, too large, not a regular file of the run) is skipped, and
its reason added to ``notes``.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ganforge.report.inputs import Unreadable, open_image
from ganforge.report.outputs import write_file

_GRID = re.compile(r"step_(\d+)\.png$")
BAND = 18  # pixels of label band above each grid


def label_font():
    """Pillow's built-in font at 13 px where FreeType is there, else its bitmap font."""
    try:
        return ImageFont.load_default(size=13)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def sample_grids(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``RUN/samples/step_*.png``, by step."""
    folder = Path(run_dir) / "samples"
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.png") if (m := _GRID.search(p.name))]
    return sorted(found)


def evenly(items: list, k: int) -> list:
    """``k`` items spread over ``items``, the first and last included (all when there are few)."""
    if len(items) <= k:
        return list(items)
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def _labelled(step: int, path: Path, side: int, root: Path | None = None,
              notes: dict[str, str] | None = None) -> Image.Image | None:
    """The grid scaled to ``side`` under a band naming ``step``; None (and a note) when unreadable."""
    try:
        with open_image(path, root if root is not None else path.parent.parent) as im:
            im = im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16") else "RGB")  # gray stays small
    except Unreadable as exc:  # being written right now, damaged, too large, not a plain file
        if notes is not None:
            notes[str(path)] = str(exc)
        return None
    scale = side / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.NEAREST)
    out = Image.new(im.mode, (im.width, im.height + BAND), "white")
    out.paste(im, (0, BAND))
    ImageDraw.Draw(out).text((3, 1), f"step {step}", fill="black", font=label_font())
    return out


def write_strip(grids: list[tuple[int, Path]], path: Path, k: int = 8, per_row: int = 4,
                side: int = 224, root: Path | None = None, notes: dict[str, str] | None = None) -> list[int]:
    """Up to ``k`` grids, ``per_row`` side by side (``side`` pixels each); returns the steps shown.

    ``root``: the run (grids are read only inside it); ``notes``: path -> why a grid was skipped.
    """
    tiles = [(s, t) for s, p in evenly(grids, k) if (t := _labelled(s, p, side, root, notes)) is not None]
    if not tiles:
        return []
    gap = 8
    w, h = max(t.width for _, t in tiles), max(t.height for _, t in tiles)
    cols = min(per_row, len(tiles))
    rows = -(-len(tiles) // cols)
    mode = "L" if all(t.mode == "L" for _, t in tiles) else "RGB"
    strip = Image.new(mode, (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), "white")
    for i, (_, t) in enumerate(tiles):
        strip.paste(t.convert(mode), ((i % cols) * (w + gap), (i // cols) * (h + gap)))
    write_file(path, lambda f: strip.save(f, format="PNG", optimize=True))
    return [s for s, _ in tiles]


def write_animation(grids: list[tuple[int, Path]], path: Path, max_frames: int = 40, side: int = 224,
                    ms_per_frame: int = 400, root: Path | None = None, notes: dict[str, str] | None = None) -> list[int]:
    """The grids as a looping GIF (at most ``max_frames``, the last held longer); returns the steps shown."""
    frames = [(s, t) for s, p in evenly(grids, max_frames)
              if (t := _labelled(s, p, side, root, notes)) is not None]
    if not frames:
        return []
    mode = "L" if all(t.mode == "L" for _, t in frames) else "RGB"
    images = [t.convert(mode) for _, t in frames]
    size = (max(i.width for i in images), max(i.height for i in images))
    images = [i if i.size == size else i.resize(size) for i in images]
    durations = [ms_per_frame] * (len(images) - 1) + [2000]
    write_file(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                              duration=durations, loop=0, optimize=True))
    return [s for s, _ in frames]
