"""Generated images for an evaluation, from any source, as uint8 batches.

A source is a folder of image files, a callable ``f(b) -> (b, C, H, W)`` or an
iterable of batches (a generator's stream). Folders are decoded by the data
loader's own rules (:func:`ganforge.data.folder.read_image`: format allow-list,
EXIF orientation, alpha over white, 16-bit, CMYK), one file at a time, so a
folder of 50,000 images is never held in memory whole. Unusable files are
skipped and named, as training folders skip them, up to
:data:`~ganforge.data.folder.DEFAULT_MAX_BAD_FRACTION` of the files tried.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ganforge.errors import DataError
from ganforge.metrics.inception import as_uint8_batch

log = logging.getLogger(__name__)


@dataclass
class FakeReport:
    """What a pass over a generated-image source found: how the images came, and what was skipped.

    ``quantised``: some batch was float (quantised to uint8 here) rather than uint8.
    ``skipped``: ``"name (reason)"`` of each unusable file of a folder.
    """

    quantised: bool = False
    skipped: list[str] = field(default_factory=list)


def count_folder_images(path: str | os.PathLike) -> int:
    """Image files a folder holds (before decoding; see :func:`ganforge.data.folder.list_image_files`)."""
    from ganforge.data.folder import list_image_files

    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "not a directory of images")
    return len(list_image_files(root)[0])


def iter_folder_images(path: str | os.PathLike, n: int, batch_size: int = 64,
                       report: FakeReport | None = None) -> Iterator[torch.Tensor]:
    """Up to ``n`` images of a folder (recursively, sorted) as uint8 batches ``(B, C, H, W)``.

    Grayscale files give 1 channel, colour ones 3; a batch that mixes both is
    promoted to 3. All images must have the same size.

    Raises:
        DataError: not a folder, no image files, images of different sizes, or more
            unusable files than the data loader tolerates (the message names some).
    """
    from ganforge.data.folder import DEFAULT_MAX_BAD_FRACTION, IMAGE_EXTENSIONS, list_image_files, read_image

    root = Path(path)
    report = report if report is not None else FakeReport()
    if not root.is_dir():
        raise DataError(root, "not a directory of images")
    files, not_files = list_image_files(root)
    report.skipped += [f"{os.path.relpath(p, root)} ({why})" for p, why in not_files]
    if not files:
        raise DataError(root, f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found")
    size, arrays, tried, bad, seen = None, [], 0, [], 0
    for f in files:
        if seen >= n:
            break
        tried += 1
        try:
            a = read_image(f)
        except DataError as exc:
            bad.append(f"{os.path.relpath(f, root)} ({exc.reason})")
            if len(bad) > DEFAULT_MAX_BAD_FRACTION * len(files):  # cannot end below the limit any more
                break
            continue
        size = size or a.shape[:2]
        if a.shape[:2] != size:
            raise DataError(f, f"size {a.shape[1]}x{a.shape[0]} differs from {size[1]}x{size[0]}")
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        seen += 1
        if len(arrays) == batch_size and seen < n:
            yield _stack(arrays)
            arrays = []
    # Checked before the last batch goes out: a consumer that stops after n images never resumes us.
    report.skipped += bad
    if bad:
        log.warning("%s: skipped %d of %d image files: %s%s", root, len(bad), tried, "; ".join(bad[:5]),
                    " ..." if len(bad) > 5 else "")
    if len(bad) > DEFAULT_MAX_BAD_FRACTION * tried:
        raise DataError(root, f"{len(bad)} of {tried} image files could not be decoded, more than the allowed "
                              f"{DEFAULT_MAX_BAD_FRACTION:.0%} (e.g. {'; '.join(bad[:3])})")
    if arrays:
        yield _stack(arrays)


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    c = max(a.shape[0] for a in arrays)
    return torch.from_numpy(np.stack([np.broadcast_to(a, (c,) + a.shape[1:]) for a in arrays]))


def iter_fake_batches(fake, n: int, batch_size: int = 64, report: FakeReport | None = None
                      ) -> Iterator[torch.Tensor]:
    """Up to ``n`` generated images as uint8 batches, from any supported source.

    Args:
        fake: a folder of images (str / path); a callable ``f(b) -> (b, C, H, W)``
            called until ``n`` images are produced; or an iterable of batches.
            Float batches are taken as [-1, 1] and quantised to uint8 exactly
            like saved images (:func:`ganforge.metrics.inception.quantize_images`).
        n: stop after this many images.
        report: filled in with what the pass found (:class:`FakeReport`).

    Batches stay on the device they come on (a generator's batches are
    quantised there and go to the extractor without a trip through the host).
    """
    report = report if report is not None else FakeReport()
    if isinstance(fake, (str, os.PathLike)):
        source: Iterable = iter_folder_images(fake, n, batch_size, report)
    elif callable(fake):
        def gen():
            left = n
            while left > 0:
                yield fake(min(batch_size, left))
                left -= batch_size
        source = gen()
    else:
        source = fake
    seen = 0
    for batch in source:
        if isinstance(batch, torch.Tensor) and batch.is_floating_point():
            report.quantised = True
        elif isinstance(batch, np.ndarray) and batch.dtype != np.uint8:
            report.quantised = True
        batch = as_uint8_batch(batch)[: n - seen]
        if batch.shape[0]:
            seen += batch.shape[0]
            yield batch
        if seen >= n:
            return
