"""The in-memory image dataset and :func:`load_dataset`, the one entry point for all formats.

Images are kept as one contiguous uint8 tensor ``(N, C, H, W)``: 60k 28x28 images are
47 MB, CIFAR-10 is 180 MB, so everything the toolkit targets fits in memory (and on
the GPU), and batching becomes a single indexing operation (see ``loader.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError, DataError

__all__ = ["ImageDataset", "load_dataset", "resize_center_crop", "convert_channels"]

SPLITS = ("train", "test", "all")
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


def _check_args(split: str, image_size: int | None, channels: int | None) -> None:
    if split not in SPLITS:
        raise ConfigError("split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1):
        raise ConfigError("image_size", f"must be a positive integer, got {image_size!r}")
    if channels is not None and channels not in (1, 3):
        raise ConfigError("channels", f"must be 1 or 3, got {channels!r}")


def _finish(ds: ImageDataset, image_size: int | None, channels: int | None) -> ImageDataset:
    images = ds.images
    # Convert to gray before resizing and to RGB after it: resize the fewest channels.
    if channels == 1:
        images = convert_channels(images, 1)
    if image_size is not None:
        images = resize_center_crop(images, image_size)
    if channels == 3:
        images = convert_channels(images, 3)
    if images is not ds.images:
        ds.images = images.contiguous()
    return ds


def _tensors(images: np.ndarray, labels: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    img = torch.from_numpy(np.ascontiguousarray(images))
    lab = None if labels is None else torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return img, lab


def _from_arrays(images, labels, name, class_names=None, num_classes=None) -> ImageDataset:
    img, lab = _tensors(images, labels)
    if lab is None:
        k = 0
    else:
        k = num_classes if num_classes is not None else (int(lab.max()) + 1 if len(lab) else 0)
        if class_names is not None:
            k = max(k, len(class_names))
    return ImageDataset(img, lab, k, name, class_names)


def _concat(parts: list[ImageDataset], name: str) -> ImageDataset:
    if len(parts) == 1:
        parts[0].name = name
        return parts[0]
    first = parts[0]
    for p in parts[1:]:
        if p.images.shape[1:] != first.images.shape[1:]:
            raise DataError(p.name, f"image shape {tuple(p.images.shape[1:])} differs from {first.name}'s {tuple(first.images.shape[1:])}")
        if (p.labels is None) != (first.labels is None) or p.class_names != first.class_names:
            raise DataError(p.name, f"classes differ from {first.name}'s, cannot combine them into split 'all'")
    labels = None if first.labels is None else torch.cat([p.labels for p in parts])
    k = max(p.num_classes for p in parts)
    skipped = [s for p in parts for s in p.skipped]
    return ImageDataset(torch.cat([p.images for p in parts]), labels, k, name, first.class_names, skipped)


def _load_named(name: str, split: str, root: str | None, download: bool) -> ImageDataset:
    from ganforge.data import cifar, idx, sources

    source = sources.DATASETS[name]
    directory = sources.locate(name, split, root=root, download=download)
    parts = []
    for s in ("train", "test") if split == "all" else (split,):
        if source.format == "idx":
            images, labels = idx.load_idx_split(directory, s)
            if labels.max(initial=0) >= len(source.class_names):
                raise DataError(directory, f"label {int(labels.max())} out of range for {name} ({len(source.class_names)} classes)")
        else:
            images, labels, _ = cifar.load_cifar_split(directory, s)
        parts.append(_from_arrays(images, labels, f"{name}/{s}", list(source.class_names), len(source.class_names)))
    return _concat(parts, f"{name}/{split}")


def _load_directory(path: Path, split: str, image_size: int | None, channels: int | None) -> ImageDataset:
    from ganforge.data import cifar, folder, idx

    splits = ("train", "test") if split == "all" else (split,)
    pairs = idx.find_idx_files(path)
    if pairs:
        parts = []
        for s in splits:
            images, labels = idx.load_idx_split(path, s)
            parts.append(_from_arrays(images, labels, f"{path}/{s}"))
        return _concat(parts, f"{path}" if split == "all" else f"{path}/{split}")
    cifar_dir = cifar.find_cifar_dir(path)
    if cifar_dir is not None:
        parts = []
        for s in splits:
            images, labels, names = cifar.load_cifar_split(cifar_dir, s)
            parts.append(_from_arrays(images, labels, f"{path}/{s}", names, len(names) if names else None))
        return _concat(parts, f"{path}" if split == "all" else f"{path}/{split}")
    # Image folder; a train/ or test/ subfolder selects the split.
    present = [s for s in ("train", "test") if (path / s).is_dir()]
    if not present:
        return folder.load_image_folder(path, image_size=image_size, channels=channels)
    wanted = present if split == "all" else [split]
    missing = [s for s in wanted if s not in present]
    if missing:
        raise DataError(path, f"has a {'/ and '.join(present)}/ subfolder but no {missing[0]}/ subfolder for split '{split}'")
    parts = [folder.load_image_folder(path / s, image_size=image_size, channels=channels) for s in wanted]
    if split == "all" and len({p.channels for p in parts}) > 1:
        parts = [_finish(p, None, 3) for p in parts]
    return _concat(parts, str(path) if split == "all" else str(path / split))


def load_dataset(
    spec: str,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    root: str | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load a dataset fully into memory.

    Args:
        spec: a named dataset (``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``; see
            :func:`ganforge.data.list_datasets`) or a path: a directory of images (class
            labels from first-level subfolders), a directory with MNIST-style IDX files or
            CIFAR-10 python batches (detected from the file names), or a ``.npz`` file. Use
            ``./mnist`` to mean a folder that happens to share a dataset's name.
        split: ``"train"``, ``"test"`` or ``"all"`` (both concatenated). Image folders and
            ``.npz`` files have no split unless they contain ``train/``/``test/`` subfolders
            (or ``x_train``/``x_test`` arrays); then it picks one.
        image_size: if given, resize (short side, bicubic, antialiased) and center-crop
            every image to ``image_size x image_size``.
        channels: if given, 1 or 3: convert gray <-> RGB (BT.601 luma / replication).
            Image folders otherwise get 3 channels if any image is in colour, else 1.
        root: directory to look in first for named datasets (as ``root/<name>`` or ``root``
            itself), and where to download them.
        download: allow downloading a named dataset that is not found locally.

    Returns:
        :class:`ImageDataset` with ``images`` ``(N, C, H, W)`` uint8.

    Raises:
        DataError: missing, unreadable or malformed data (the message names the file).
        ConfigError: a bad ``split``, ``image_size`` or ``channels`` value.
    """
    _check_args(split, image_size, channels)
    from ganforge.data import arrays, sources

    name = sources.canonical_name(spec)
    if name is not None:
        ds = _load_named(name, split, root, download)
    else:
        path = Path(os.path.expanduser(spec))
        if path.is_dir():
            ds = _load_directory(path, split, image_size, channels)
        elif path.is_file():
            if path.suffix.lower() != ".npz":
                raise DataError(path, "unsupported file type (expected a .npz file, or a directory)")
            ds = arrays.load_npz(path, split)
        else:
            known = ", ".join(sources.DATASETS)
            raise DataError(spec, f"no such file or directory, and not a known dataset name ({known})")
    return _finish(ds, image_size, channels)
