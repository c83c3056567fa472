"""Random-crop training from photographs of any size: a bounded in-memory cache and a crop batcher.

:class:`PhotoCache` decodes every photograph once with :func:`ganforge.data.folder.read_image`
(EXIF orientation, alpha over white, 16-bit, CMYK handled there) and keeps it as
uint8, downscaled so that its longer side is at most ``max_side`` pixels. Memory is
``sum(H * W * C)`` bytes after the downscale: at most ``max_side**2 * 3`` bytes per
photograph (3 MiB at 1024, 0.75 MiB at 512); :attr:`PhotoCache.nbytes` reports it and a
cache over ``max_bytes`` is refused. A file that does not decode is skipped with a warning
(:attr:`PhotoCache.skipped`), as in image folders; more than a few of them is an error.

:class:`CropBatcher` draws each batch from its own NumPy generator seeded by
``(seed, batch number)``: a photograph (uniformly), a crop side as a fraction of the
photograph's short side (uniform in ``scale``, never below the output size, so crops
are not upsampled when the photograph allows), a position (uniform) and a horizontal
flip (probability 1/2); the crop is resized to ``size`` with Pillow's antialiased
bicubic filter. The stream position is the number of images drawn, so a checkpoint's
``{"epoch": 0, "index": images, "seed"}`` resumes it bit-identically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.errors import CheckpointError, ConfigError, DataError

__all__ = ["PhotoCache", "CropBatcher", "DEFAULT_MAX_SIDE", "DEFAULT_MAX_BYTES"]

log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 1024
DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: about 1400 photographs at max_side 1024


class PhotoCache:
    """Decoded photographs, each ``(H, W, C)`` uint8 with ``max(H, W) <= max_side``.

    Args:
        files: image files (any format :func:`~ganforge.data.folder.read_image` reads).
        channels: 3 (grayscale photographs are replicated) or 1 (BT.601 luma).
        max_side: longer side after the (antialiased bicubic) downscale.
        max_bytes: refuse a cache larger than this.
        name: for messages and the dataset name.
    """

    def __init__(self, files: list[Path], channels: int = 3, max_side: int = DEFAULT_MAX_SIDE,
                 max_bytes: int = DEFAULT_MAX_BYTES, name: str = "photos"):
        from ganforge.data.folder import decode_images

        if channels not in (1, 3):
            raise ConfigError("data.channels", f"must be 1 or 3, got {channels!r}")
        if not files:
            raise DataError(name, "no photographs to crop from")
        self.name, self.channels, self.max_side = name, channels, max_side
        total = 0

        def fit(a: np.ndarray) -> np.ndarray:
            nonlocal total
            a = _channels(_fit(a, max_side), channels)
            total += a.nbytes
            if total > max_bytes:
                raise DataError(name, f"decoded photographs exceed {max_bytes / 2**20:.0f} MiB at max_side "
                                      f"{max_side}; lower data.max_side or use fewer photographs")
            return a

        # A bad file (truncated, not an image, ...) is skipped with a warning, as in image folders.
        self.arrays, kept, self.skipped = decode_images([Path(f) for f in files], name, transform=fit)
        self.files = [Path(files[i]) for i in kept]
        log.info("%s: %d photographs cached, %.1f MiB (longer side <= %d px)", name, len(self.arrays),
                 total / 2**20, max_side)

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs) -> PhotoCache:
        """Every image file under ``folder`` (recursively, in the order of ``list_image_files``)."""
        from ganforge.data.folder import list_image_files

        root = Path(folder)
        if not root.is_dir():
            raise DataError(root, "not a directory")
        files, _ = list_image_files(root)
        if not files:
            raise DataError(root, "no image files to crop from")
        return cls(files, name=kwargs.pop("name", str(root)), **kwargs)

    preview_size: int | None = None  # side of :attr:`images` (set to the training load size)

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def images(self) -> torch.Tensor:
        """``(N, C, s, s)`` uint8 centre crops at :attr:`preview_size`, for fixed preview grids."""
        if self.preview_size is None:
            raise DataError(self.name, "no preview size set")
        if getattr(self, "_images", None) is None or self._images.shape[-1] != self.preview_size:
            self._images = self.centre_crops(self.preview_size)
        return self._images

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    def min_short_side(self) -> int:
        return min(min(a.shape[:2]) for a in self.arrays)

    def centre_crops(self, size: int) -> torch.Tensor:
        """``(N, C, size, size)`` uint8: each photograph's short side resized to ``size``, centre cropped."""
        out = []
        for a in self.arrays:
            h, w = a.shape[:2]
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            out.append(_resize(a[top:top + s, left:left + s], size))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def _fit(a: np.ndarray, max_side: int) -> np.ndarray:
    h, w = a.shape[:2]
    if max(h, w) <= max_side:
        return a
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC))


def _channels(a: np.ndarray, channels: int) -> np.ndarray:
    if a.ndim == 2:
        a = a[..., None]
    if channels == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if channels == 1 and a.shape[2] == 3:
        luma = a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(a)


def _resize(patch: np.ndarray, size: int) -> np.ndarray:
    """``(h, w, C)`` uint8 -> ``(size, size, C)``: Pillow bicubic (antialiased when shrinking)."""
    if patch.shape[:2] == (size, size):
        return patch
    c = patch.shape[2]
    im = Image.fromarray(patch[..., 0] if c == 1 else patch)
    out = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC))
    return out[..., None] if c == 1 else out


class CropBatcher:
    """Infinite batches of random crops from a :class:`PhotoCache` (see the module doc).

    Args:
        cache: the photographs.
        batch_size: crops per batch (the global batch under data parallelism).
        size: output side in pixels.
        seed: base seed of the per-batch generators.
        scale: ``(lo, hi)`` range of the crop side as a fraction of the short side, ``0 < lo <= hi <= 1``.
        flip: random horizontal flips.
        device: where batches are produced.
        shard: ``(rank, world_size)``: this process decodes only its rows of each global batch.

    Yields:
        ``(images, None)``: float32 ``(B, C, size, size)`` in ``[-1, 1]`` on ``device``.
    """

    def __init__(self, cache: PhotoCache, batch_size: int, size: int, seed: int, scale: tuple[float, float] = (0.25, 1.0),
                 flip: bool = True, device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1)):
        lo, hi = (float(v) for v in scale)
        if not 0 < lo <= hi <= 1:
            raise ConfigError("data.crop_scale", f"must be [lo, hi] with 0 < lo <= hi <= 1, got {list(scale)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        short = cache.min_short_side()
        if short < size:
            raise DataError(cache.name, f"a photograph's short side is {short} px after the downscale, smaller than "
                                        f"the {size} px crops; raise data.max_side or drop small photographs")
        rank, world = shard
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        per = batch_size // world
        self._rows = range(rank * per, (rank + 1) * per)
        self.cache, self.batch_size, self.size = cache, batch_size, size
        self.scale, self.flip = (lo, hi), flip
        self.device = torch.device(device)
        self._seed = int(seed)
        self._drawn = 0  # images drawn, all processes together

    def __iter__(self) -> CropBatcher:
        return self

    def _params(self, batch_no: int) -> list[tuple[int, int, int, int, bool]]:
        """``(photo, top, left, side, flip)`` of every crop of global batch ``batch_no``."""
        rng = np.random.default_rng([self._seed, batch_no])
        out = []
        for _ in range(self.batch_size):
            i = int(rng.integers(len(self.cache)))
            h, w = self.cache.arrays[i].shape[:2]
            short = min(h, w)
            side = int(np.clip(round(rng.uniform(*self.scale) * short), self.size, short))
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
            flip = bool(rng.random() < 0.5) and self.flip
            out.append((i, top, left, side, flip))
        return out

    def crops(self, batch_no: int) -> np.ndarray:
        """``(b, size, size, C)`` uint8: this process's rows of global batch ``batch_no``."""
        params = self._params(batch_no)
        out = []
        for r in self._rows:
            i, top, left, side, flip = params[r]
            patch = _resize(self.cache.arrays[i][top:top + side, left:left + side], self.size)
            out.append(patch[:, ::-1] if flip else patch)
        return np.stack(out)

    def __next__(self) -> tuple[torch.Tensor, None]:
        batch_no = self._drawn // self.batch_size
        arr = self.crops(batch_no)
        self._drawn += self.batch_size
        images = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
        return images.to(self.device).float().div_(127.5).sub_(1.0), None

    def state_dict(self) -> dict:
        """``{"epoch": 0, "index": images drawn, "seed", "kind": "crops"}``: JSON-able stream position."""
        return {"epoch": 0, "index": self._drawn, "seed": self._seed, "kind": "crops"}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where the batcher that produced ``state`` was."""
        try:
            index, seed = state["index"], state["seed"]
        except (KeyError, TypeError):
            raise CheckpointError("batcher state", f"expected a dict with index and seed, got {state!r}") from None
        if state.get("kind") != "crops":
            raise CheckpointError("batcher state", "saved by a run that did not train on crops (data.crops)")
        for key, value in (("index", index), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError("batcher state", f"{key} must be a non-negative integer, got {value!r}")
        if index % self.batch_size:
            raise CheckpointError("batcher state", f"index {index} is not a multiple of batch_size {self.batch_size}")
        self._drawn, self._seed = index, seed
