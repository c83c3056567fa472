"""Classical inpainting baselines, for comparison with a trained generator.

* ``telea``: fast marching (Telea 2004), ``cv2.inpaint(..., cv2.INPAINT_TELEA)``.
* ``navier-stokes``: fluid-dynamics propagation (Bertalmio et al. 2001),
  ``cv2.inpaint(..., cv2.INPAINT_NS)``.
* ``biharmonic``: the smooth biharmonic interpolation of the hole (Damelin &
  Hoang 2018), ``skimage.restoration.inpaint_biharmonic``.

OpenCV methods use an inpainting radius of 3 px. OpenCV and scikit-image are
optional (``pip install opencv-python-headless scikit-image``, or the project's
``baselines`` extra) and imported only when a baseline runs.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import torch
from torch import Tensor

from ganforge.errors import ConfigError

BASELINES = ("telea", "navier-stokes", "biharmonic")
RADIUS = 3
INSTALL_HINT = "pip install opencv-python-headless scikit-image (or ganforge[baselines])"
_MODULES = {"telea": "cv2", "navier-stokes": "cv2", "biharmonic": "skimage"}


class BaselineUnavailable(ConfigError):
    """A baseline's package (OpenCV or scikit-image) is not installed."""


def available(method: str) -> bool:
    """Whether the package ``method`` needs is installed (without importing it)."""
    return importlib.util.find_spec(_MODULES[method]) is not None


def library_version(method: str) -> str:
    """``"<module> <version>"`` of the package that implements ``method`` (part of cache keys)."""
    mod = _require(method)
    top = importlib.import_module(mod.__name__.split(".")[0])
    return f"{top.__name__} {getattr(top, '__version__', '?')}"


def _require(method: str):
    if method not in BASELINES:
        raise ConfigError("baseline", f"unknown method {method!r} (known: {', '.join(BASELINES)})")
    name = _MODULES[method]
    try:
        if name == "cv2":
            import cv2

            return cv2
        from skimage import restoration

        return restoration
    except ImportError:
        raise BaselineUnavailable(method, f"needs {'OpenCV' if name == 'cv2' else 'scikit-image'}: "
                                          f"{INSTALL_HINT}") from None


def inpaint_array(method: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One image: uint8 ``(H, W)`` or ``(H, W, 3)``, bool mask ``(H, W)`` (True = missing) -> uint8, same shape.

    Known pixels are copied from the input (the methods leave them alone
    anyway; the copy makes it exact).
    """
    lib = _require(method)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    mask = np.asarray(mask, dtype=bool)
    if method == "biharmonic":
        rgb = image.ndim == 3 and image.shape[2] > 1
        img = image[..., 0] if image.ndim == 3 and not rgb else image
        out = lib.inpaint_biharmonic(img.astype(np.float64) / 255.0, mask, channel_axis=-1 if rgb else None)
        out = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8).reshape(image.shape)
    else:
        flag = lib.INPAINT_TELEA if method == "telea" else lib.INPAINT_NS
        src = np.ascontiguousarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
        out = lib.inpaint(src, mask.astype(np.uint8) * 255, RADIUS, flag).reshape(image.shape)
    m = mask[..., None] if image.ndim == 3 else mask
    return np.where(m, out, image)


def inpaint_batch(method: str, images: Tensor, masks: Tensor) -> Tensor:
    """uint8 ``(N, C, H, W)`` images and ``(N, 1, H, W)`` masks (1 = missing) -> uint8 ``(N, C, H, W)``."""
    _require(method)
    imgs = images.permute(0, 2, 3, 1).cpu().numpy()
    ms = masks[:, 0].cpu().numpy() > 0.5
    out = np.stack([inpaint_array(method, img, m) for img, m in zip(imgs, ms)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
