"""What the web app does, without the web: load runs, generate, interpolate, check uploads, inpaint.

Every function here takes and returns plain values (PIL images, numpy arrays, ints), so it
is tested without a browser; :mod:`ganforge.serve.app` only wires them to widgets. Bad
input raises :class:`UploadError` (a :class:`~ganforge.errors.DataError`) whose message is
meant for the page.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from ganforge.config import RunConfig
from ganforge.errors import DataError
from ganforge.imageio import make_grid, to_uint8
from ganforge.serve import MAX_PIXELS, MAX_UPLOAD_MB

DISPLAY_SIDE = 384            # small images are enlarged (nearest) to about this for display
MAX_IMAGES = 64
MAX_SEED = 2**63 - 1          # torch seeds are signed 64-bit integers
DEEP_IMAGE = ("has {what} pixels; the page works on 8-bit images and would lose that depth: "
              "use `ganforge inpaint`, which keeps the image's mode and depth")


class UploadError(DataError):
    """An uploaded file that cannot be used (not an image, too large, mask of the wrong size)."""


def check_seed(value, what: str = "seed") -> int:
    """A seed typed in the page as an int in ``[0, 2**63 - 1]`` (empty is 0); UploadError otherwise."""
    if value is None or value == "":
        return 0
    try:
        f = float(value)
        ok = math.isfinite(f) and f == int(f)
        n = int(value) if isinstance(value, int) else int(f)
    except (TypeError, ValueError, OverflowError):
        ok, n = False, -1
    if not ok or not 0 <= n <= MAX_SEED:
        raise UploadError(what, f"must be a whole number between 0 and {MAX_SEED}, got {str(value)[:40]}")
    return n


def pixel_depth(im: Image.Image) -> str | None:
    """``"16-bit"`` / ``"32-bit integer"`` / ``"floating-point"`` for images deeper than 8 bits, else None.

    Pillow opens 16-bit RGB(A) and gray+alpha PNGs as 8-bit modes and drops the low
    byte when decoding; only the tile's raw mode (from the header) tells.
    """
    if im.mode == "F":
        return "floating-point"
    if im.mode.startswith("I;16"):
        return "16-bit"
    if im.mode == "I":
        return "32-bit integer"
    for tile in getattr(im, "tile", None) or []:
        raw = tile[3][0] if isinstance(tile[3], tuple) else tile[3]
        # "RGB;16B", "LA;16B", "RGBA;16L"...: 16 bits per sample ("BGR;16" is a 5-6-5 BMP: 8 bits or less)
        if isinstance(raw, str) and re.search(r";16[BLN]$", raw):
            return "16-bit"
    return None


def header_problem(fileobj, name: str, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why an uploaded file must be refused, from its header alone (no pixel is decoded), or None.

    Refused: images above ``max_pixels`` and images deeper than 8 bits. Files that are
    not images pass: they cannot be decoded into a bomb, and the page says what is
    wrong with them when they are used.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fileobj)
    except Image.DecompressionBombError as exc:  # Pillow's own limit (lowered by the server) read the header
        found = re.findall(r"\d+", str(exc))
        size = f"{int(found[0]):,} pixels" if found else "far more pixels than that"
        return f"{name}: the image has {size}; the limit is {max_pixels:,} pixels"
    except Exception:  # not an image Pillow can identify: nothing to decode
        return None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            return f"{name}: the image is {w}x{h} pixels; the limit is {max_pixels:,} pixels"
        depth = pixel_depth(im)
    return f"{name}: the image {DEEP_IMAGE.format(what=depth)}" if depth else None


@dataclass
class GeneratorRun:
    """A loaded image generator: name shown in the page, model, config, checkpoint step."""

    name: str
    G: nn.Module
    cfg: RunConfig
    step: int

    @property
    def num_classes(self) -> int:
        return int(self.cfg.model.num_classes or 0)


def load_runs(paths: list[str], device: str = "cpu", ema: bool = True):
    """``(generators, inpainters)``: dicts name -> :class:`GeneratorRun` / InpaintingPipeline.

    Each run's task decides its tab: a task drawing from noise goes to Generate,
    inpainting (or a task derived from it) to Inpaint; any other task is a
    ConfigError naming the run. Names are the directory names (made unique with
    a suffix when two runs share one).
    """
    from ganforge.artifacts import load_generator
    from ganforge.errors import ConfigError
    from ganforge.inpaint.pipeline import InpaintingPipeline
    from ganforge.tasks import InpaintingTask, task_class

    generators, inpainters = {}, {}
    for p in paths:
        G, cfg, step = load_generator(p, ema=ema, device=device)
        name = Path(p).name or Path(p).resolve().name
        taken = set(generators) | set(inpainters)
        k = 2
        base = name
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        task = task_class(cfg)
        if issubclass(task, InpaintingTask):
            pipe = InpaintingPipeline(G, cfg.data.channels, train_size=cfg.data.image_size)
            pipe.step = step
            inpainters[name] = pipe
        elif task.from_noise:
            generators[name] = GeneratorRun(name, G, cfg, step)
        else:
            raise ConfigError(p, f"a run of the {task.name} task: the web app serves generation and inpainting runs")
    return generators, inpainters


def enlarge(arr: np.ndarray, side: int = DISPLAY_SIDE) -> Image.Image:
    """uint8 (H, W[, C]) -> PIL image enlarged by an integer factor (nearest) to about ``side`` pixels."""
    arr = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    img = Image.fromarray(arr)
    k = max(1, side // max(img.size))
    return img.resize((img.width * k, img.height * k), Image.NEAREST) if k > 1 else img


def _device(run: GeneratorRun) -> torch.device:
    return next(run.G.parameters()).device


def generate_grid(run: GeneratorRun, seed: int, n: int, label: int | None = None, per_class: bool = False,
                  truncation: float | None = None) -> Image.Image:
    """A grid of ``n`` images (or, with ``per_class``, a row of ``n`` per class), enlarged for display."""
    from ganforge.sampling import generate, per_class_labels

    n = int(n)
    if not 1 <= n <= MAX_IMAGES:
        raise UploadError("number of images", f"must be between 1 and {MAX_IMAGES}, got {n}")
    labels, nrow = None, None
    if per_class:
        labels, nrow = per_class_labels(run.cfg, n), n
    total = len(labels) if labels is not None else n
    images = torch.cat(list(generate(run.G, run.cfg, total, int(seed), label, device=_device(run),
                                     labels=labels, truncation=truncation))).cpu()
    return enlarge(make_grid(to_uint8(images), nrow), side=max(DISPLAY_SIDE, 48 * (nrow or math.isqrt(n))))


def interpolation_strip(run: GeneratorRun, seed_a: int, seed_b: int, steps: int, label: int | None = None,
                        truncation: float | None = None, mode: str = "slerp") -> Image.Image:
    """One row of ``steps`` images walking from ``seed_a``'s sample to ``seed_b``'s, enlarged for display."""
    from ganforge.sampling import interpolation_latents

    steps = int(steps)
    if not 2 <= steps <= 32:
        raise UploadError("steps", f"must be between 2 and 32, got {steps}")
    z, y = interpolation_latents(run.cfg, int(seed_a), int(seed_b), steps, mode, label, truncation)
    dev = _device(run)
    with torch.inference_mode():
        images = run.G(z.to(dev), None if y is None else y.to(dev)).float().cpu()
    return enlarge(make_grid(to_uint8(images), steps), side=96 * steps)


def read_upload(path: str | Path | None, what: str = "image", max_pixels: int = MAX_PIXELS,
                max_mb: float = MAX_UPLOAD_MB) -> Image.Image:
    """Open an uploaded file as a PIL image (L, RGB or RGBA), refusing non-images and huge ones.

    The byte size and the pixel count (from the header) are checked before any pixel is
    decoded, so a decompression bomb costs nothing.
    """
    if path is None:
        raise UploadError(what, f"no {what} uploaded")
    path = Path(path)
    size_mb = path.stat().st_size / 2**20
    if size_mb > max_mb:
        raise UploadError(path.name, f"the {what} file is {size_mb:.1f} MB; the limit is {max_mb:g} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise UploadError(path.name, f"the {what} is {w}x{h} pixels; the limit is {max_pixels:,} pixels "
                                             f"(about {math.isqrt(max_pixels)}x{math.isqrt(max_pixels)})")
            if depth := pixel_depth(im):  # converting would clip it: refuse rather than lose depth silently
                raise UploadError(path.name, f"the {what} {DEEP_IMAGE.format(what=depth)}")
            im.load()
            img = im.copy()
    except UploadError:
        raise
    except Image.DecompressionBombError:  # PIL refuses absurd sizes before we see them
        raise UploadError(path.name, f"the {what} is far larger than the limit of {max_pixels:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError(path.name, "this file is not an image that can be read (PNG, JPEG, BMP, WebP, ...)") from None
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    return img


def check_image_array(arr: np.ndarray, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an editor image (H, W[, C]) above the pixel limit."""
    h, w = arr.shape[:2]
    if h * w > max_pixels:
        raise UploadError("image", f"the image is {w}x{h} pixels; the limit is {max_pixels:,} pixels")


def as_model_input(rgba: np.ndarray) -> np.ndarray:
    """An editor image (H, W, 3|4) uint8 -> (H, W) if it is gray, else (H, W, 3); alpha over white."""
    arr = rgba.astype(np.float32)
    if arr.ndim == 2:
        return rgba.astype(np.uint8)
    if arr.shape[2] == 4:
        a = arr[:, :, 3:4] / 255.0
        arr = arr[:, :, :3] * a + 255.0 * (1 - a)
    rgb = np.clip(np.rint(arr[:, :, :3]), 0, 255).astype(np.uint8)
    gray = (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()
    return rgb[:, :, 0].copy() if gray else rgb


def mask_from_layers(layers: list[np.ndarray] | None, hw: tuple[int, int]) -> np.ndarray | None:
    """Brush strokes (RGBA layers of the editor) -> bool (H, W) mask (True = missing), or None if unpainted."""
    mask = np.zeros(hw, dtype=bool)
    for layer in layers or []:
        if layer is None:
            continue
        a = np.asarray(layer)
        a = a[:, :, 3] if a.ndim == 3 and a.shape[2] == 4 else (a.max(axis=2) if a.ndim == 3 else a)
        painted = a > 0
        if painted.shape != hw:
            painted = np.asarray(Image.fromarray(painted).resize((hw[1], hw[0]), Image.NEAREST))
        mask |= painted
    return mask if mask.any() else None


def mask_from_upload(img: Image.Image, hw: tuple[int, int]) -> np.ndarray:
    """An uploaded mask (white = missing) -> bool (H, W); its size must equal the image's."""
    if (img.height, img.width) != hw:
        raise UploadError("mask", f"the mask is {img.width}x{img.height} but the image is {hw[1]}x{hw[0]}; "
                                  "upload a mask of the same size")
    m = np.asarray(img.convert("L")) >= 128
    if not m.any():
        raise UploadError("mask", "the mask has no white (missing) pixels")
    return m


def show_holes(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The input with its holes painted magenta: uint8 (H, W, 3)."""
    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image.copy()
    rgb[mask] = (255, 0, 255)
    return rgb


def telea(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """OpenCV's Telea inpainting of the same image and mask, or None when OpenCV is not installed."""
    from ganforge.inpaint import baselines

    if not baselines.available("telea"):
        return None
    return baselines.inpaint_array("telea", image, mask)


def inpaint(pipe, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ganforge result for uint8 ``(H, W)`` / ``(H, W, 3)`` and bool ``(H, W)``: same shape and dtype."""
    return pipe(image, mask)
