""":func:`load_dataset`, the one entry point for all formats: named datasets, folders, ``.npz``.

The dataset type itself and the shared transforms live in :mod:`ganforge.data.images`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ganforge.data import arrays, cifar, folder, idx, photos, sources, stacked
from ganforge.data.images import ImageDataset, convert_channels, resize_center_crop
from ganforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["load_dataset"]

SPLITS = ("train", "test", "all")


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
            CIFAR-10 python batches (detected from the file names), a ``.npz`` file, or a photo corpus (``photos``,
            ``photos:test``, ``skimage-photos``; :mod:`ganforge.data.photos`). Use
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
    name = sources.canonical_name(spec)
    is_named = name is not None or photos.parse_spec(spec) is not None or str(spec).strip().lower() in stacked.STACKED
    if is_named and Path(os.path.expanduser(str(spec))).is_dir():
        log.warning("data.dataset %r names the built-in data set; the folder of that name is not used "
                    "(write ./%s for the folder)", spec, str(spec).strip())
    if photos.parse_spec(spec) is not None:
        return photos.load_photo_dataset(spec, split, image_size, channels, download)
    if str(spec).strip().lower() in stacked.STACKED:  # derived from a named dataset (data/stacked.py)
        ds = stacked.load_stacked(str(spec).strip().lower(), split, root, download)
    elif name is not None:
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
