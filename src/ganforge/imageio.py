"""Reading images safely, converting image tensors to 8-bit pixels and writing PNG grids."""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ganforge.atomic import write_file


def pixel_limit() -> int | None:
    """Largest image (pixels) :func:`read_image` opens: Pillow's decompression-bomb error threshold,
    ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (178,956,970 by default; None when that is disabled)."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def read_image(path: str | os.PathLike, what: str = "image", load: bool = True) -> Image.Image:
    """Open an image file; every way it can be unusable is a one-line :class:`DataError`.

    Missing or empty files, files Pillow cannot identify, truncated or corrupt
    data, and images above :func:`pixel_limit` (checked from the header, before
    any pixel is decoded) all raise ``DataError(path, reason)``; ``what`` names
    the file's role in the message ("image", "mask"). Pillow's warning for
    images between one and two times ``MAX_IMAGE_PIXELS`` is silenced: that size
    is accepted here. With ``load=False`` the header is read and the pixels are
    decoded later by the caller (use the result as a context manager).
    """
    from ganforge.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} file not found")
    if path.stat().st_size == 0:
        raise DataError(path, f"cannot read the {what} (empty file)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            found = re.findall(r"\d+", str(exc))
            size = f"has {int(found[0]):,} pixels" if found else "is too large"
            raise DataError(path, f"{what} {size}, above the limit of {pixel_limit():,} pixels "
                                  "(Pillow's decompression-bomb limit, 2 x PIL.Image.MAX_IMAGE_PIXELS)") from None
        except UnidentifiedImageError:
            raise DataError(path, f"cannot read the {what} (UnidentifiedImageError: not an image Pillow "
                                  "can identify)") from None
        except Exception as exc:  # OSError, SyntaxError, ValueError ... from the format's header parser
            raise DataError(path, f"cannot read the {what} ({_one_line(exc)})") from None
        if not load:
            return im
        try:
            with im:
                im.load()
                return im
        except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, zlib/struct errors ...
            raise DataError(path, f"cannot read the {what} ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def to_uint8(images: Tensor) -> Tensor:
    """(N, C, H, W) float in [-1, 1] -> uint8 in [0, 255], rounded to nearest (same for real and fake)."""
    return images.detach().float().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """(N, C, H, W) uint8 -> one (H', W', C) uint8 array with ``nrow`` images per row."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, k = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + k * (w + padding)
        grid[y0:y0 + h, x0:x0 + w] = arr[i]
    return grid


def save_png(array: np.ndarray, path: str | Path, *, tidy: bool = True) -> Path:
    """Write an (H, W) / (H, W, 1|3) uint8 array as PNG atomically (:func:`ganforge.atomic.write_file`).

    ``tidy``: as in :func:`~ganforge.atomic.write_file`.

    Raises:
        DataError: naming ``path`` when it cannot be written (a full disk, a read-only folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(array)
    return write_file(path, lambda f: image.save(f, format="PNG"), tidy=tidy)


def save_grid(images: Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """(N, C, H, W) float in [-1, 1] -> a PNG grid at ``path``."""
    return save_png(make_grid(to_uint8(images), nrow), path)


def save_gif(images: Tensor, path: str | Path, frame_ms: int = 120, min_side: int = 128) -> Path:
    """(N, C, H, W) float in [-1, 1] -> an animated GIF that plays the frames there and back, looping.

    Small images are enlarged by an integer factor (nearest neighbour) to at least
    ``min_side`` pixels, so 28x28 samples are visible in a browser.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
    scale = max(1, -(-min_side // max(arr.shape[1:3])))
    frames = [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).resize(
        (a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST) for a in arr]
    frames = frames + frames[-2:0:-1]  # ping-pong, so the loop has no jump
    return write_file(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                      duration=frame_ms, loop=0))
