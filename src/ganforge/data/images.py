"""The in-memory image dataset type and the transforms every reader shares.

Images are kept as one contiguous uint8 tensor ``(N, C, H, W)``: 60k 28x28 images are
47 MB, CIFAR-10 is 180 MB, so everything the toolkit targets fits in memory (and on
the GPU), and batching becomes a single indexing operation (see ``loader.py``).

The readers (``arrays``, ``folder``, ...) build an :class:`ImageDataset`, and
``dataset.load_dataset`` dispatches to the readers, so this module imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ganforge.errors import DataError

__all__ = ["ImageDataset", "resize_center_crop", "convert_channels"]

# Images per chunk when resizing: bounds the float32 working copy to a few hundred MB.
_RESIZE_CHUNK = 2048


@dataclass
class ImageDataset:
    """A whole image dataset held in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8, contiguous, C is 1 (grayscale) or 3 (RGB).
        labels: ``(N,)`` int64 class ids in ``[0, num_classes)``, or None when unlabelled.
        num_classes: number of classes; 0 when unlabelled.
        name: where the data came from, e.g. ``"fashion-mnist/train"`` or a folder path.
        class_names: ``num_classes`` names, or None when unknown.
        skipped: ``(file, reason)`` for every file that could not be used (image
            folders only; empty otherwise).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int
    name: str
    class_names: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(self.name, f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and tuple(self.labels.shape) != (self.images.shape[0],):
            raise DataError(self.name, f"{tuple(self.labels.shape)} labels for {self.images.shape[0]} images")
        self.images = self.images.contiguous()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.images.shape[2]), int(self.images.shape[3])


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Scale ``(N, C, H, W)`` uint8 images so the short side is ``size``, then center-crop to ``size x size``.

    Bicubic with antialiasing (``antialias=True`` reproduces Pillow's BICUBIC filter, so
    tensor datasets and image folders are resized the same way); the result is rounded
    and clamped back to uint8.
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    for start in range(0, n, _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()
        if (nh, nw) != (h, w):
            chunk = F.interpolate(chunk, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        chunk = chunk[:, :, top : top + size, left : left + size]
        out[start : start + _RESIZE_CHUNK] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert ``(N, C, H, W)`` uint8 between 1 and 3 channels.

    Gray -> RGB replicates the channel; RGB -> gray uses ITU-R BT.601 luma
    ``Y = 0.299 R + 0.587 G + 0.114 B`` (the weights Pillow's ``convert("L")`` uses),
    computed in integers and rounded.
    """
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
        for start in range(0, images.shape[0], _RESIZE_CHUNK):
            x = images[start : start + _RESIZE_CHUNK].to(torch.int32)
            y = (299 * x[:, 0] + 587 * x[:, 1] + 114 * x[:, 2] + 500) // 1000
            out[start : start + _RESIZE_CHUNK, 0] = y.to(torch.uint8)
        return out
    raise DataError(None, f"cannot convert {c}-channel images to {channels} channels")
