"""``ganforge inpaint``: fill the holes of an image (or a folder of images) with a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.commands._options import add_threads_option, use_threads_option
from ganforge.errors import ConfigError, DataError

DEFAULT_MAX_PIXELS = 1 << 20  # = ganforge.inpaint.pipeline.DEFAULT_MAX_PIXELS (not imported: keeps --help light)
# Missing pixels one image may have. A hole of a few hundred pixels across in a 12-megapixel photo
# (the job inpainting is for) is far below; a mask that is mostly white on a large image is not an
# inpainting job and would run for many minutes (a white 10000x10000 mask: over 300 s on 2 cores).
DEFAULT_MAX_HOLE_PIXELS = 1 << 22  # 4,194,304: e.g. 2048x2048
PROGRESS_MIN_TILES = 8  # fewer forward passes: no progress lines
PROGRESS_EVERY_S = 1.0


def register(sub) -> None:
    p = sub.add_parser("inpaint", help="inpaint images with a trained run",
                       description="Fill the white (missing) pixels of a mask in an image, or in every image of "
                                   "a folder. Only the neighbourhood of the holes is processed, in forward "
                                   "passes of at most --max-pixels. Known pixels are written back unchanged, "
                                   "in the input's mode and depth; outputs are PNG (TIFF for .tif/.tiff names, "
                                   "and for float or 32-bit images, which PNG cannot store).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="an inpainting run (task: inpaint) or its exported generator")
    p.add_argument("--image", required=True, help="an image file, or a folder of images")
    p.add_argument("--mask", required=True,
                   help="mask image (white = missing); with a folder of images, a folder of masks matched "
                        "by file name (extension may differ) or one mask for all")
    p.add_argument("--out", required=True, help="output file, or output folder for a folder of images")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: newest)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="pixels per forward pass (bounds memory; larger holes are tiled), default %(default)s")
    p.add_argument("--max-hole-pixels", type=int, default=DEFAULT_MAX_HOLE_PIXELS,
                   help="refuse an image whose mask has more missing pixels than this (time grows with the "
                        "hole); 0 for no limit. Default %(default)s (2048x2048)")
    add_threads_option(p)
    p.set_defaults(func=run)


def _images_in(folder: Path) -> list[Path]:
    from ganforge.data.folder import IMAGE_EXTENSIONS

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.startswith("."))
    if not files:
        raise DataError(folder, "no image files in this folder")
    return files


def _mask_for(image: Path, mask_arg: Path) -> Path:
    """One mask for all images, or the mask with the image's name (else its stem) in a folder."""
    if mask_arg.is_file():
        return mask_arg
    if not mask_arg.is_dir():
        raise DataError(mask_arg, "mask file or folder not found")
    exact = mask_arg / image.name
    if exact.is_file():
        return exact
    from ganforge.data.folder import IMAGE_EXTENSIONS

    same_stem = sorted(p for p in mask_arg.glob(f"{image.stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not same_stem:
        raise DataError(image, f"no mask named {image.stem}.* in {mask_arg}")
    return same_stem[0]


# PNG holds these modes bit-exactly; "I" (32-bit integers) only when its values fit 16 bits.
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B")
_TIFF = (".tif", ".tiff")


def _fits_png(im) -> bool:
    if im.mode == "I":
        lo, hi = im.getextrema()
        return 0 <= lo and hi <= 65535
    return im.mode in _PNG_MODES or im.mode == "I;16L"


def _save(im, path: Path) -> Path:
    """Write ``im`` atomically (temp file + rename): TIFF for .tif/.tiff names, else PNG."""
    from ganforge.atomic import write_file

    fmt = "TIFF" if path.suffix.lower() in _TIFF else "PNG"
    if fmt == "PNG" and im.mode in ("I", "I;16L"):
        import numpy as np
        from PIL import Image

        # The same values (checked to fit 16 bits) in the mode PNG stores; Image.convert would clip at 255.
        im = Image.frombytes("I;16", im.size, np.asarray(im).astype("<u2").tobytes())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(path, f"cannot write the output ({exc.strerror or exc})") from None
    return write_file(path, lambda f: im.save(f, format=fmt))


def _check_hole(mask, mask_path: Path, limit: int) -> None:
    """Refuse a hole above ``limit`` pixels (0: no limit) before the image is read."""
    import numpy as np

    holes = int(np.count_nonzero(mask))
    if limit and holes > limit:
        raise DataError(mask_path, f"the hole has {holes:,} missing pixels, above --max-hole-pixels {limit:,}; "
                                   "give a larger --max-hole-pixels (or 0) to inpaint it anyway")


class _Progress:
    """``inpaint: tiles DONE/TOTAL`` on stderr, at most once a second, for jobs of many forward passes."""

    def __init__(self, name: str):
        self.name, self.last = name, None

    def __call__(self, done: int, total: int) -> None:
        import sys
        import time

        if total < PROGRESS_MIN_TILES:
            return
        now = time.monotonic()
        if self.last is None or done == total or now - self.last >= PROGRESS_EVERY_S:  # first, last, each second
            print(f"inpaint: {self.name}: tiles {done}/{total}", file=sys.stderr, flush=True)
            self.last = now


def _inpaint_one(pipe, image_path: Path, mask_path: Path, out_path: Path, folder_mode: bool,
                 max_hole_pixels: int = 0) -> Path:
    from ganforge.imageio import read_image
    from ganforge.inpaint.masks import load_mask_array
    from ganforge.inpaint.pipeline import check_size, inpaint_pil
    from ganforge.inpaint.pixels import PIL_MODES

    with read_image(image_path, "image", load=False) as header:  # size only: the mask is read first
        w, h = header.size
    check_size(h, w, image_path)
    mask = load_mask_array(mask_path, size=(h, w), image_path=image_path)
    _check_hole(mask, mask_path, max_hole_pixels)
    image = read_image(image_path, "image")
    if image.mode not in PIL_MODES:  # CMYK, YCbCr, PA ...: PNG cannot store them either
        image = image.convert("RGBA" if "A" in image.mode or "a" in image.mode else "RGB")
    if not _fits_png(image):
        if folder_mode:
            out_path = out_path.with_suffix(".tiff")
        elif out_path.suffix.lower() not in _TIFF:
            kind = "float" if image.mode == "F" else "32-bit integer"
            raise DataError(out_path, f"PNG cannot store the {kind} pixels of {image_path} (mode {image.mode}); "
                                      "give an output name ending in .tif or .tiff")
    pipe.progress = _Progress(image_path.name)
    result = inpaint_pil(pipe, image, mask, release=True)
    del image, mask
    return _save(result, out_path)


def run(args: argparse.Namespace) -> int:
    use_threads_option(args)
    from ganforge.commands._paths import check_output_dir, check_output_file
    from ganforge.devices import resolve_device
    from ganforge.inpaint.pipeline import InpaintingPipeline

    image, mask, out = Path(args.image), Path(args.mask), Path(args.out)
    if not image.exists():
        raise DataError(image, "image file or folder not found")
    if not mask.exists():
        raise DataError(mask, "mask file or folder not found")
    if args.max_pixels < 1:
        raise ConfigError("--max-pixels", f"must be positive, got {args.max_pixels}")
    if args.max_hole_pixels < 0:
        raise ConfigError("--max-hole-pixels", f"must be 0 (no limit) or positive, got {args.max_hole_pixels}")
    if image.is_dir():
        if out.exists() and not out.is_dir():
            raise ConfigError("--out", f"{out} is a file; with a folder of images --out must be a folder")
        if out.resolve() == image.resolve():
            raise ConfigError("--out", "must differ from the image folder (outputs would replace inputs)")
        jobs = [(p, _mask_for(p, mask), out / f"{p.stem}.png") for p in _images_in(image)]
        stems: dict[str, Path] = {}
        for p, _, _ in jobs:
            if p.stem in stems:
                raise DataError(image, f"{stems[p.stem].name} and {p.name} would both be written as {p.stem}.png")
            stems[p.stem] = p
        check_output_dir(out, "--out")
    else:
        if mask.is_dir():
            raise ConfigError("--mask", f"{mask} is a folder; with one image give one mask file")
        target = out / f"{image.stem}.png" if out.is_dir() else out
        check_output_file(target, "--out")
        jobs = [(image, mask, target)]
    device = resolve_device(args.device, "--device")
    pipe = InpaintingPipeline.from_run(args.run_dir, ema=not args.no_ema, device=device,
                                       checkpoint=args.checkpoint, max_pixels=args.max_pixels)
    written = [_inpaint_one(pipe, image_path, mask_path, out_path, image.is_dir(), args.max_hole_pixels)
               for image_path, mask_path, out_path in jobs]
    where = written[0] if len(written) == 1 else out
    print(f"inpainted {len(jobs)} image(s) with step {pipe.step} -> {where}")
    return 0
