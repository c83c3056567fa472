"""Image-folder datasets: every image file under a directory, decoded with Pillow.

Decisions (each one is a choice between defensible options, fixed here so results are
reproducible):

* Files: extensions in :data:`IMAGE_EXTENSIONS`, searched recursively (iteratively, at most
  :data:`MAX_DEPTH` folders deep), hidden files and folders skipped; only Pillow's plugins
  for those formats are tried (no EPS etc.). Names that are not regular files (a FIFO
  called ``x.png`` would block the reader forever, a device would never end) are skipped
  by name, without being opened.
* Labels: with two or more first-level subfolders holding images, each subfolder is a
  class, ids in sorted name order; images directly in the top folder are then left out
  (listed in ``skipped``). Otherwise the dataset is unlabelled.
* Orientation: the EXIF orientation tag is applied (``ImageOps.exif_transpose``).
* Transparency (RGBA, LA, palette with transparency): composited over a white
  background. Dropping alpha instead would expose whatever colour happens to be stored
  under fully transparent pixels, which is arbitrary (often black, sometimes noise).
* 16-bit grayscale (``I;16*``, and ``I`` with values in 0..65535): scaled to 8 bits by
  ``round(v / 257)``, which maps 0..65535 exactly onto 0..255 (clipping would turn
  most 16-bit images white).
* Colour: grayscale modes (1, L, LA, I;16, I) give 1 channel; everything else (RGB,
  RGBA, P, CMYK, YCbCr) is converted to RGB. The dataset has 3 channels if any image is
  in colour (grayscale ones are replicated), else 1, unless ``channels`` is given.
* Size: with ``image_size``, the short side is scaled to ``image_size`` (Pillow BICUBIC,
  which is antialiased when shrinking) and the center is cropped; without it, all
  images must already have the same size.
* Bad files (empty, truncated, not an image, decompression bomb, unsupported mode) are
  skipped, recorded in ``ImageDataset.skipped`` and summarised in a logged warning; more
  than ``max_bad_fraction`` of them is an error.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.data.images import ImageDataset, convert_channels
from ganforge.errors import DataError

__all__ = ["load_image_folder", "list_image_files", "read_image", "IMAGE_EXTENSIONS", "DEFAULT_MAX_BAD_FRACTION",
           "MAX_DEPTH"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}
)
# Pillow plugins allowed to open files; restricting them keeps exotic decoders (and EPS,
# which runs Ghostscript) away from untrusted folders.
_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF", "PPM", "TGA")
DEFAULT_MAX_BAD_FRACTION = 0.10
# Folder levels searched below the root. Real data sets are a few levels deep; a deeper
# tree is a mistake (or a hostile input), refused with its path rather than walked.
MAX_DEPTH = 64
_GRAY_16 = ("I;16", "I;16L", "I;16B", "I;16N")


class _BadImage(Exception):
    """A file that cannot be turned into an image; the message is the reason."""


def list_image_files(root: str | os.PathLike) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``root`` in a fixed order, and the names skipped as not regular files.

    The order is that of a sorted top-down walk (a folder's files, then its
    subfolders in name order). The walk keeps its own stack, so depth costs no
    recursion; symbolic links to folders are not followed.

    Returns:
        ``(files, skipped)``: paths of regular files with an image extension, and
        ``(path, reason)`` for image names that are not regular files (FIFOs, devices,
        folders called ``x.png``).

    Raises:
        DataError: folders nested more than :data:`MAX_DEPTH` levels below ``root``.
    """
    root = Path(root)
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if folder == root:
                raise DataError(root, f"cannot list the folder ({exc.strerror or exc})") from None
            skipped.append((str(folder), f"cannot list the folder ({exc.strerror or exc})"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(Path(entry.path))
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                if entry.is_file():  # follows a link to a file; FIFOs, sockets, devices are not files
                    files.append(Path(entry.path))
                else:
                    skipped.append((entry.path, "not a regular file"))
        if subfolders and depth >= MAX_DEPTH:
            deep = os.path.relpath(subfolders[0], root)
            shown = deep if len(deep) <= 60 else f"{deep[:28]}...{deep[-28:]}"
            raise DataError(root, f"folders are nested more than {MAX_DEPTH} levels deep (at {shown}); "
                                  "point at the folder that holds the images")
        stack.extend((d, depth + 1) for d in reversed(subfolders))
    return files, skipped


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.uint32)[..., None] if rgb.ndim == 3 else alpha.astype(np.uint32)
    out = (rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _to_uint8(im: Image.Image) -> np.ndarray:
    """Pixels as ``(H, W)`` (grayscale) or ``(H, W, 3)`` (colour) uint8."""
    mode = im.mode
    if mode in _GRAY_16 or mode == "I":
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise _BadImage(f"32-bit pixel values outside 0..65535 (mode {mode})")
        return np.rint(a.astype(np.float32) / 257.0).astype(np.uint8)
    if mode == "L":
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA"))
        return _over_white(la[..., 0], la[..., 1])
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        return _over_white(rgba[..., :3], rgba[..., 3])
    if mode == "RGB":
        return np.asarray(im)
    if mode == "F":
        raise _BadImage("unsupported mode F (floating-point pixels)")
    try:
        return np.asarray(im.convert("RGB"))  # P, CMYK, YCbCr, RGBX, HSV ...
    except ValueError:
        raise _BadImage(f"unsupported mode {mode}") from None


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        return arr
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    im = Image.fromarray(arr).resize((nw, nh), Image.Resampling.BICUBIC)
    return np.asarray(im.crop((left, top, left + size, top + size)))


def _decode(path: Path, image_size: int | None) -> np.ndarray:
    if path.stat().st_size == 0:
        raise _BadImage("empty file")
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; such files are refused too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=_FORMATS) as im:
                im = ImageOps.exif_transpose(im)  # loads the pixels: truncation shows up here
                arr = _to_uint8(im)
        except _BadImage:
            raise
        except UnidentifiedImageError:
            raise _BadImage("not a decodable image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _BadImage(f"decompression bomb ({exc})") from None
        except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error ...
            raise _BadImage(f"{type(exc).__name__}: {exc}") from None
    return _resize(arr, image_size) if image_size is not None else arr


def read_image(path: str | os.PathLike, image_size: int | None = None) -> np.ndarray:
    """Decode one image file by the rules of the module doc (orientation, alpha, 16-bit, CMYK ...).

    Returns ``(H, W)`` (grayscale) or ``(H, W, 3)`` uint8, resized as
    :func:`load_image_folder` does when ``image_size`` is given.

    Raises:
        DataError: the file cannot be read or is not a usable image (the reason says why).
    """
    path = Path(path)
    try:
        return _decode(path, image_size)
    except _BadImage as exc:
        raise DataError(path, str(exc)) from None
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc})") from None


def decode_images(
    files: list[Path],
    root: str | os.PathLike,
    image_size: int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    """Decode ``files`` by the rules of the module doc, skipping bad files.

    Args:
        files: image files, decoded in order.
        root: the folder they came from, for messages.
        image_size: as in :func:`read_image`.
        transform: applied to each decoded array (e.g. a downscale); a :class:`DataError`
            it raises is not a bad file and propagates.
        max_bad_fraction: largest tolerated fraction of undecodable files.

    Returns:
        ``(arrays, kept, bad)``: the decoded arrays, the indices into ``files`` they came
        from, and ``(path, reason)`` of each skipped file (also summarised in a warning).

    Raises:
        DataError: no file decodes, or more than ``max_bad_fraction`` of them do not.
    """
    arrays, kept, bad = [], [], []
    for i, f in enumerate(files):
        try:
            a = _decode(Path(f), image_size)
        except (_BadImage, OSError) as exc:
            bad.append((str(f), str(exc) if isinstance(exc, _BadImage) else f"cannot read ({exc})"))
            continue
        arrays.append(a if transform is None else transform(a))
        kept.append(i)
    if bad:
        first = "; ".join(f"{os.path.relpath(p, root)} ({why})" for p, why in bad[:5])
        log.warning("%s: skipped %d of %d image files: %s%s", root, len(bad), len(files), first,
                    " ..." if len(bad) > 5 else "")
    if not arrays:
        raise DataError(root, f"no usable images: all {len(files)} image files failed to decode (first: {bad[0][1]})")
    if len(bad) > max_bad_fraction * len(files):
        names = ", ".join(os.path.relpath(p, root) for p, _ in bad[:5])
        raise DataError(root, f"{len(bad)} of {len(files)} image files could not be decoded, more than the "
                              f"allowed {max_bad_fraction:.0%} (e.g. {names}; first reason: {bad[0][1]})")
    return arrays, kept, bad


def load_image_folder(
    path: str | os.PathLike,
    image_size: int | None = None,
    channels: int | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> ImageDataset:
    """Load every image under ``path`` (recursively); see the module doc for the rules.

    Args:
        path: the folder.
        image_size: resize (short side) and center-crop to ``image_size x image_size``.
        channels: 1 or 3; default 3 if any image is in colour, else 1.
        max_bad_fraction: largest tolerated fraction of undecodable files.

    Returns:
        :class:`ImageDataset` with images ``(N, C, H, W)`` uint8, labels from class
        subfolders (or None), ``name`` the folder path, ``skipped`` the unusable files.

    Raises:
        DataError: not a folder, no usable images, too many bad files, or images of
            different sizes without ``image_size``.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "not a directory")
    files, not_files = list_image_files(root)
    if not_files:
        log.warning("%s: skipped %d name(s) that are not regular files: %s", root, len(not_files),
                    ", ".join(os.path.relpath(p, root) for p, _ in not_files[:5]))
    if not files:
        raise DataError(root, f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    class_of = {f: f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1}
    class_names = sorted(set(class_of.values()))
    skipped: list[tuple[str, str]] = list(not_files)
    if len(class_names) >= 2:
        outside = [f for f in files if f not in class_of]
        if outside:
            log.warning("%s: %d image(s) outside the class subfolders are not used", root, len(outside))
        skipped += [(str(f), "outside the class subfolders") for f in outside]
        files = [f for f in files if f in class_of]
        class_id = {name: i for i, name in enumerate(class_names)}
    else:
        class_names, class_id = [], None

    arrays, kept, bad = decode_images(files, root, image_size, max_bad_fraction=max_bad_fraction)
    labels = [class_id[class_of[files[i]]] for i in kept] if class_id is not None else []
    skipped += bad

    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        raise DataError(root, f"images have different sizes ({', '.join(f'{w}x{h}' for h, w in sorted(shapes)[:4])} ...); "
                              "pass image_size to resize them")
    colour = any(a.ndim == 3 for a in arrays)
    n, (h, w) = len(arrays), shapes.pop()
    out = np.empty((n, 3 if colour else 1, h, w), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = a.transpose(2, 0, 1) if a.ndim == 3 else a  # gray broadcasts over 3 channels
    images = torch.from_numpy(out)
    if channels is not None:
        images = convert_channels(images, channels)
    lab = torch.tensor(labels, dtype=torch.int64) if class_id is not None else None
    return ImageDataset(images, lab, len(class_names), str(root), class_names or None, skipped)
