"""``ganforge inpaint``: fill the holes of an image (or a folder of images) with a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.errors import ConfigError, DataError

def register(sub) -> None:
    p = sub.add_parser("inpaint", help="inpaint images with a trained run",
                       description="Fill the white (missing) pixels of a mask in an image, or in every image of "
                                   "a folder. Known pixels are written back unchanged; outputs are PNG.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run trained with model.arch=inpaint")
    p.add_argument("--image", required=True, help="an image file, or a folder of images")
    p.add_argument("--mask", required=True,
                   help="mask image (white = missing); with a folder of images, a folder of masks matched "
                        "by file name (extension may differ) or one mask for all")
    p.add_argument("--out", required=True, help="output file, or output folder for a folder of images")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: newest)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, f"cannot read the image ({type(exc).__name__})") from None


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


def _inpaint_one(pipe, image_path: Path, mask_path: Path, out_path: Path) -> Path:
    import numpy as np

    from ganforge.imageio import save_png
    from ganforge.inpaint.masks import load_mask

    image = _read_image(image_path)
    mask = load_mask(mask_path, size=(image.height, image.width), image_path=image_path)
    result = pipe(image, mask[0, 0].bool())
    return save_png(np.asarray(result), out_path)


def run(args: argparse.Namespace) -> int:
    from ganforge.inpaint.pipeline import InpaintingPipeline

    image, mask, out = Path(args.image), Path(args.mask), Path(args.out)
    if not image.exists():
        raise DataError(image, "image file or folder not found")
    if not mask.exists():
        raise DataError(mask, "mask file or folder not found")
    if image.is_dir():
        if out.exists() and not out.is_dir():
            raise ConfigError("--out", f"{out} is a file; with a folder of images --out must be a folder")
        jobs = [(p, _mask_for(p, mask), out / f"{p.stem}.png") for p in _images_in(image)]
    else:
        if mask.is_dir():
            raise ConfigError("--mask", f"{mask} is a folder; with one image give one mask file")
        target = out / f"{image.stem}.png" if out.is_dir() else out
        jobs = [(image, mask, target)]
    pipe = InpaintingPipeline.from_run(args.run_dir, ema=not args.no_ema, device=args.device,
                                       checkpoint=args.checkpoint)
    for image_path, mask_path, out_path in jobs:
        _inpaint_one(pipe, image_path, mask_path, out_path)
    where = jobs[0][2] if len(jobs) == 1 else out
    print(f"inpainted {len(jobs)} image(s) with step {pipe.step} -> {where}")
    return 0
