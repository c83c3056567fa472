"""Datasets stored as numpy ``.npz`` archives.

Accepted contents:

* images under ``images`` or ``x`` (or ``x_train`` / ``x_test``, as in Keras' ``mnist.npz``,
  picked by ``split``), laid out ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with
  C 1 or 3. The layout is told apart by where the size-1/3 axis is; when both axis 1 and
  the last axis could be channels, ``(N, H, W, C)`` is assumed.
* values: uint8 as is; other integer types if every value lies in 0..255; floats
  scaled from ``[0, 1]`` (x255) when all values lie in ``[0, 1]``, else from ``[-1, 1]``
  (``(x+1) x 127.5``), rounded. Anything else is rejected rather than clipped.
* optional labels under ``labels`` or ``y`` (``y_train`` / ``y_test``): ``(N,)`` non-negative
  integers; optional ``class_names``: 1-D string array.

The file is opened with ``allow_pickle=False``, so object arrays (which would unpickle
arbitrary code) are refused.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ganforge.data.images import ImageDataset
from ganforge.errors import DataError

__all__ = ["load_npz", "images_to_uint8_nchw"]


def _pick(keys, names):
    for n in names:
        if n in keys:
            return n
    return None


def images_to_uint8_nchw(arr: np.ndarray, where) -> np.ndarray:
    """Convert an image array (see module doc for accepted layouts and ranges) to uint8 ``(N, C, H, W)``."""
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)
        elif arr.shape[1] not in (1, 3):
            raise DataError(where, f"cannot tell the channel axis of shape {arr.shape}: need 1 or 3 channels first or last")
    else:
        raise DataError(where, f"images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(where, f"integer pixel values must lie in 0..255, found {arr.min()}..{arr.max()}")
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.dtype.kind == "f":
        if arr.size and not np.isfinite(arr).all():
            raise DataError(where, "float pixel values contain NaN or infinity")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            scaled = arr.astype(np.float32) * 255.0
        elif lo >= -1.0 and hi <= 1.0:
            scaled = (arr.astype(np.float32) + 1.0) * 127.5
        else:
            raise DataError(where, f"float pixel values must lie in [0, 1] or [-1, 1], found [{lo:g}, {hi:g}]")
        return np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
    raise DataError(where, f"unsupported pixel dtype {arr.dtype}")


def load_npz(path: str | os.PathLike, split: str = "train") -> ImageDataset:
    """Load an image dataset from a ``.npz`` file (see the module doc for the accepted keys).

    ``split`` only matters when the file holds ``x_train`` / ``x_test``; ``"all"`` joins both.

    Returns:
        :class:`ImageDataset` with images ``(N, C, H, W)`` uint8.
    """
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise DataError(path, "holds a single .npy array, expected a .npz archive of named arrays")
        with loaded as npz:
            keys = set(npz.files)
            if "x_train" in keys or "x_test" in keys:
                wanted = ["train", "test"] if split == "all" else [split]
                missing = [s for s in wanted if f"x_{s}" not in keys]
                if missing:
                    raise DataError(path, f"no 'x_{missing[0]}' array for split '{split}' (arrays: {', '.join(sorted(keys))})")
                pairs = [(f"x_{s}", f"y_{s}" if f"y_{s}" in keys else None) for s in wanted]
            else:
                img_key = _pick(keys, ("images", "x"))
                if img_key is None:
                    raise DataError(path, f"no 'images' or 'x' array (arrays: {', '.join(sorted(keys)) or 'none'})")
                pairs = [(img_key, _pick(keys, ("labels", "y")))]
            images, labels = [], []
            for ik, lk in pairs:
                imgs = images_to_uint8_nchw(npz[ik], f"{path}[{ik}]")
                images.append(imgs)
                labels.append(None if lk is None else _labels(npz[lk], len(imgs), f"{path}[{lk}]"))
            class_names = None
            if "class_names" in keys:
                class_names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                               for n in np.atleast_1d(npz["class_names"]).tolist()]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        # ValueError also covers object arrays refused because allow_pickle=False.
        raise DataError(path, f"cannot read .npz archive ({exc})") from None
    if any(a.shape[1:] != images[0].shape[1:] for a in images):
        raise DataError(path, "x_train and x_test have different image shapes")
    if any(lab is None for lab in labels) and not all(lab is None for lab in labels):
        raise DataError(path, "labels are present for only some splits")
    img = torch.from_numpy(np.concatenate(images) if len(images) > 1 else images[0])
    lab = None if labels[0] is None else torch.from_numpy(np.concatenate(labels))
    k = 0 if lab is None else (int(lab.max()) + 1 if len(lab) else 0)
    if lab is not None and class_names is not None:
        if k > len(class_names):
            raise DataError(path, f"label {k - 1} but only {len(class_names)} class names")
        k = len(class_names)
    return ImageDataset(img, lab, k, str(path), class_names if lab is not None else None)


def _labels(arr: np.ndarray, n: int, where: str) -> np.ndarray:
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(where, f"labels must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(where, "labels must be whole numbers")
    elif arr.dtype.kind not in "iu":
        raise DataError(where, f"labels must be integers, got {arr.dtype}")
    if n and arr.min() < 0:
        raise DataError(where, f"labels must be non-negative, found {arr.min()}")
    return arr.astype(np.int64)
