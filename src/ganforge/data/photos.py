"""Named photo corpora: photographs from Debian wallpaper packages and scikit-image, checked by SHA-256.

Sources (``data.dataset`` / ``eval-inpaint --dataset``):

* ``photos``: colour photographs from Debian's ``mate-backgrounds``,
  ``plasma-workspace-wallpapers``, ``lomiri-wallpapers-20.04`` and ``lomiri-wallpapers-16.04`` packages,
  split **by photograph** into ``train`` and ``test`` (``photos:test`` names
  the held-out split directly). The list, with each file's path, SHA-256,
  licence and split, is ``photos.tsv`` next to this module; it was chosen by
  looking at every image of the packages and leaving out artwork, logos,
  renderings and abstract images.
* ``skimage-photos``: scikit-image's photographs (astronaut, chelsea, coffee,
  rocket, camera), never trained on: a second test set from another source.

What ``load_dataset`` returns for them (:func:`load_photo_dataset`):

* split ``train``: one image per photograph, short side resized and centre
  cropped (for previews; training on crops uses :mod:`ganforge.data.crops`);
* split ``test`` (and ``skimage-photos``): the fixed evaluation crops of
  ``photo_crops.tsv`` (photograph, position and side in the photograph's own
  pixels, mask seed), resized to ``image_size``, so that numbers are
  comparable across versions and resolutions.

A missing package is installed with apt on first use where that is possible
(root, or password-less sudo), as ``scripts/setup.sh photos`` does; otherwise a
one-line :class:`DataError` names the package and the command that installs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ganforge.data.checksums import file_digests
from ganforge.errors import ConfigError, DataError

__all__ = ["PHOTO_SOURCES", "Photo", "EvalCrop", "parse_spec", "catalogue", "photo_files", "eval_crops",
           "load_photo_dataset"]

PHOTO_SOURCES = ("photos", "skimage-photos")
_HERE = Path(__file__).resolve().parent
CATALOGUE = _HERE / "photos.tsv"
CROPS = _HERE / "photo_crops.tsv"
SETUP_HINT = "scripts/setup.sh photos"


@dataclass(frozen=True)
class Photo:
    """One row of ``photos.tsv``."""

    name: str
    package: str  # Debian package, or "scikit-image"
    path: str  # absolute, or relative to the installed skimage package
    sha256: str
    size: str  # "WxH" of the file as packaged
    split: str  # train | test | foreign
    licence: str
    copyright: str

    @property
    def source(self) -> str:
        return "skimage-photos" if self.package == "scikit-image" else "photos"


@dataclass(frozen=True)
class EvalCrop:
    """A fixed evaluation crop: ``side x side`` pixels at ``(top, left)`` of photo ``name``, and its mask seed."""

    name: str
    top: int
    left: int
    side: int
    mask_seed: int


def _rows(path: Path) -> list[list[str]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    return [ln.split("\t") for ln in lines[1:]]  # the first line is the header


@lru_cache(maxsize=1)
def catalogue() -> tuple[Photo, ...]:
    """Every photograph of ``photos.tsv``, in file order."""
    return tuple(Photo(*row) for row in _rows(CATALOGUE))


@lru_cache(maxsize=1)
def _all_crops() -> tuple[EvalCrop, ...]:
    return tuple(EvalCrop(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in _rows(CROPS))


def parse_spec(spec: str) -> tuple[str, str | None] | None:
    """``"photos"`` -> ``("photos", None)``, ``"photos:test"`` -> ``("photos", "test")``; None if not a photo source."""
    name, _, split = str(spec).strip().lower().partition(":")
    if name not in PHOTO_SOURCES:
        return None
    if split and split not in ("train", "test", "all"):
        raise ConfigError("data.dataset", f"{spec!r}: the split after ':' must be train, test or all")
    return name, split or None


def _select(source: str, split: str) -> list[Photo]:
    if source == "skimage-photos":
        return [p for p in catalogue() if p.split == "foreign"]
    wanted = ("train", "test") if split == "all" else (split,)
    return [p for p in catalogue() if p.source == "photos" and p.split in wanted]


def _skimage_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    return Path(spec.origin).parent if spec and spec.origin else None


def _resolve(photo: Photo) -> Path | None:
    if photo.package != "scikit-image":
        return Path(photo.path)
    root = _skimage_dir()
    return None if root is None else root / photo.path


def _can_apt() -> bool:
    if shutil.which("apt-get") is None:
        return False
    if os.geteuid() == 0:
        return True
    return shutil.which("sudo") is not None and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def _apt_install(packages: list[str]) -> bool:
    """Try ``apt-get install`` (then update and retry); True when it succeeded."""
    if not _can_apt():
        return False
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = prefix + ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(cmd, capture_output=True, env=env).returncode == 0:
        return True
    subprocess.run(prefix + ["apt-get", "update", "-q"], capture_output=True, env=env)
    return subprocess.run(cmd, capture_output=True, env=env).returncode == 0


def _missing(photos: list[Photo]) -> list[Photo]:
    return [p for p in photos if (_resolve(p) is None or not _resolve(p).is_file())]


def corpus_status(source: str) -> tuple[int, int, list[str]]:
    """``(found, total, missing packages)`` of ``source``'s photographs, without installing or hashing."""
    photos = _select(source, "all")
    missing = _missing(photos)
    return len(photos) - len(missing), len(photos), sorted({p.package for p in missing})


def photo_files(source: str, split: str = "train", install: bool = True) -> list[tuple[Photo, Path]]:
    """The photographs of ``source`` / ``split`` and their files, after checking every file's SHA-256.

    Args:
        source: ``photos`` or ``skimage-photos``.
        split: ``train``, ``test`` or ``all`` (``skimage-photos`` has one split).
        install: install missing Debian packages with apt where possible.

    Raises:
        DataError: a package is missing (the message names it and the command that
            installs it) or a file's digest differs from the list's.
    """
    photos = _select(source, split)
    missing = _missing(photos)
    if missing and source == "photos" and install:
        _apt_install(sorted({p.package for p in missing}))
        missing = _missing(photos)
    if missing:
        p = missing[0]
        if p.package == "scikit-image":
            raise DataError(source, "needs scikit-image's data files: pip install scikit-image")
        packages = " ".join(sorted({m.package for m in missing}))
        raise DataError(source, f"package {p.package} is not installed ({p.path} is missing); install it with "
                                f"'{SETUP_HINT}' or 'apt-get install {packages}'")
    out = []
    for p in photos:
        path = _resolve(p)
        if file_digests(path, ["sha256"])["sha256"] != p.sha256:
            raise DataError(path, f"SHA-256 differs from photos.tsv for {p.name} ({p.package}); "
                                  "a different version of the package is installed")
        out.append((p, path))
    return out


def eval_crops(source: str, split: str = "test") -> list[tuple[EvalCrop, Photo]]:
    """The fixed evaluation crops of the photographs of ``source`` / ``split``, in file order."""
    photos = {p.name: p for p in _select(source, split)}
    return [(c, photos[c.name]) for c in _all_crops() if c.name in photos]


def _crop_resize(arr: np.ndarray, top: int, left: int, side: int, size: int) -> np.ndarray:
    from PIL import Image

    patch = arr[top:top + side, left:left + side]
    if patch.shape[:2] != (side, side):
        raise DataError("photo_crops.tsv", f"crop {side}px at ({top}, {left}) leaves a {arr.shape[1]}x{arr.shape[0]} photo")
    if side == size:
        return patch
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.BICUBIC))


def load_photo_dataset(spec: str, split: str, image_size: int | None, channels: int | None, download: bool = True):
    """``load_dataset`` for a photo source (see the module doc); images ``(N, C, s, s)`` uint8.

    Raises:
        ConfigError: no ``image_size`` (photographs differ in size).
        DataError: see :func:`photo_files`.
    """
    import torch

    from ganforge.data.folder import read_image
    from ganforge.data.images import ImageDataset, convert_channels

    source, forced = parse_spec(spec)
    split = forced or split
    if image_size is None:
        raise ConfigError("data.image_size", f"{source} photographs differ in size; give an image_size")
    files = {p.name: path for p, path in photo_files(source, split, install=download)}
    arrays = []
    if source == "photos" and split == "train":
        arrays = [read_image(path, image_size) for path in files.values()]
    else:
        decoded: dict[str, np.ndarray] = {}
        for crop, photo in eval_crops(source, split):
            if photo.name not in decoded:
                decoded = {photo.name: read_image(files[photo.name])}  # crops are grouped by photo
            arrays.append(_crop_resize(decoded[photo.name], crop.top, crop.left, crop.side, image_size))
    out = np.stack([a.transpose(2, 0, 1) if a.ndim == 3 else np.repeat(a[None], 3, 0) for a in arrays])
    images = torch.from_numpy(np.ascontiguousarray(out))
    if channels is not None:
        images = convert_channels(images, channels)
    return ImageDataset(images, None, 0, f"{source}/{'foreign' if source == 'skimage-photos' else split}")


def mask_seeds(spec: str, split: str) -> list[int] | None:
    """Per-image mask seeds of the evaluation crops of ``spec`` (None for the centre-cropped train split)."""
    parsed = parse_spec(spec)
    if parsed is None:
        return None
    source, forced = parsed
    split = forced or split
    if source == "photos" and split == "train":
        return None
    return [c.mask_seed for c, _ in eval_crops(source, split)]
