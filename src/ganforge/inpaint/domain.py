"""Is this image like the ones the inpainting model was trained on? Checks before a fill.

An inpainting generator learns the statistics of its training images: their
channels (``data.channels``), their scale (``data.image_size``) and holes no
larger than those images. Given something else it still returns pixels, often
streaks or blur, and nothing says why. :func:`check_inputs` says it first:

* **errors** (:class:`~ganforge.errors.DataError`) for what cannot work: a float
  tensor whose known pixels lie outside [-1, 1] (the pipeline's float convention;
  the conversion to apply is named) or are not finite;
* **one-line warnings**, once per kind and pipeline, for what may work badly:
  a mask that leaves no known pixel (the fill is a guess from nothing),
  a colour image through a grayscale model or the reverse (the conversion the
  pipeline applies is stated), an image much larger than the training images
  (the model sees only its receptive field at the training scale: structure
  larger than the training images is not reproduced), and holes larger than the
  training images (their middle is far from any known pixel: expect a smooth,
  streaky fill there).

Thresholds: :data:`SIZE_FACTOR` times the training side for images, and the
training side itself for a hole's bounding box.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ganforge.errors import DataError

log = logging.getLogger("ganforge.inpaint")

SIZE_FACTOR = 4  # images up to 4x the training side behave like training crops (holes permitting)
RANGE_SLACK = 1e-3  # float tensors: rounding above 1 or below -1 is not an error


@dataclass(frozen=True)
class TrainingDomain:
    """What the model was trained on: channels (1 or 3) and the image side in pixels (None: unknown)."""

    channels: int
    image_size: int | None = None


def _hole_extent(mask: np.ndarray) -> tuple[int, int]:
    """The bounding box ``(height, width)`` of the largest hole (8-connected missing region) of bool (H, W).

    Images over 2^20 pixels are measured on the pipeline's 16-px cells (to within a cell).
    """
    from ganforge.inpaint.regions import DEFAULT_CELL, hole_cells, label

    cell = 1 if mask.size <= 1 << 20 else DEFAULT_CELL
    labels, n = label(mask if cell == 1 else hole_cells(mask, cell))
    if n == 0:
        return 0, 0
    ys, xs = np.nonzero(labels)
    k = labels[ys, xs]
    lo_y, lo_x = np.full(n + 1, ys.max(), np.int64), np.full(n + 1, xs.max(), np.int64)
    hi_y, hi_x = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    np.minimum.at(lo_y, k, ys)
    np.minimum.at(lo_x, k, xs)
    np.maximum.at(hi_y, k, ys)
    np.maximum.at(hi_x, k, xs)
    hh, ww = (hi_y - lo_y + 1)[1:] * cell, (hi_x - lo_x + 1)[1:] * cell
    i = int(np.argmax(hh * ww))
    return int(hh[i]), int(ww[i])


def check_inputs(domain: TrainingDomain, channels: int, mask: np.ndarray, said: set[str] | None = None
                 ) -> list[str]:
    """Check one image of ``channels`` colour channels with bool (H, W) ``mask`` (True = missing).

    Returns the warnings (each also logged once per ``said`` set: pass the pipeline's).
    """
    h, w = mask.shape
    notes: dict[str, str] = {}
    if mask.all():
        notes["empty"] = f"the mask covers the whole {w}x{h} image: with nothing known, the fill is a guess"
    if channels == 3 and domain.channels == 1:
        notes["channels"] = ("the model was trained on grayscale images; each colour channel of this RGB image "
                             "is filled as its own grayscale image (expect colour fringes in the holes)")
    elif channels == 1 and domain.channels == 3:
        notes["channels"] = ("the model was trained on RGB images; this grayscale image is replicated to RGB and "
                             "the fill converted back to gray (BT.601 luma)")
    side = domain.image_size
    if side:
        if max(h, w) > SIZE_FACTOR * side:
            notes["size"] = (f"the model was trained on {side}x{side} images and this one is {w}x{h}: it fills "
                             f"holes at the training scale, so expect texture but not structure larger than "
                             f"{side} px (downscale the image for results like training)")
        hh, hw = _hole_extent(mask)
        if max(hh, hw) > side:
            notes["hole"] = (f"a hole spans {hw}x{hh} px, more than the {side}x{side} training images: far from "
                             f"known pixels expect a smooth or streaky fill")
    if said is not None:
        for kind, text in notes.items():
            if kind not in said:
                said.add(kind)
                log.warning(text)
    return list(notes.values())


def check_float_tensor(images: torch.Tensor, missing: np.ndarray) -> None:
    """Refuse float images ``(N, C, H, W)`` whose known pixels (``missing`` (N, H, W) False) leave [-1, 1].

    Raises:
        DataError: naming the range found and the conversion that gives [-1, 1].
    """
    if not images.dtype.is_floating_point:
        return
    known = torch.from_numpy(~missing).to(images.device)[:, None].expand_as(images)
    values = images[known]
    if values.numel() == 0:
        return
    if not torch.isfinite(values).all():
        raise DataError(None, "the image has NaN or infinite known pixels")
    lo, hi = float(values.min()), float(values.max())
    if lo >= -1 - RANGE_SLACK and hi <= 1 + RANGE_SLACK:
        return
    if lo >= 0 and hi <= 255:
        how = "x / 127.5 - 1 for [0, 255], or pass a uint8 tensor" if hi > 1 + RANGE_SLACK else ""
    else:
        how = ""
    hint = f"; convert with {how}" if how else "; scale the values to [-1, 1]"
    raise DataError(None, f"float image tensors must be in [-1, 1] (the pipeline's convention), "
                          f"got values in [{lo:g}, {hi:g}]{hint}")
