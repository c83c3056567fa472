"""A held-out photograph at full size through ``ganforge inpaint``, beside OpenCV's Telea.

Runs the CLI in a subprocess on the photograph (any size; the README uses the
held-out 6028x3391 ``Kleiber`` of the ``photos`` corpus) with a rectangular
hole, and records:

* the peak resident memory of the command above the resident size once its
  imports are done (:func:`ganforge.perf.memory.cli_peak_memory`), and its time;
* that every known pixel of the output equals the input's (bit-identical);
* hole PSNR / L1 of ganforge and of Telea against the original pixels.

It writes ``--out``.png: a strip of four crops of the region around the hole, each
at 100% (no resampling): the photograph with the hole in magenta, ganforge, Telea
and the original; and ``--out``.json with the numbers.

    python benchmarks/photo_demo.py runs/inpaint-photos-64 --photo Kleiber --box 1500,1700,2400,2700 \
        --out docs/photo-demo
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.perf.memory import cli_peak_memory

def photo_path(name: str) -> Path:
    """A photograph of the ``photos`` corpus by name, or a file path."""
    if Path(name).is_file():
        return Path(name)
    from ganforge.data import photos

    for photo, path in photos.photo_files("photos", "test") + photos.photo_files("photos", "train"):
        if photo.name == name:
            return path
    raise SystemExit(f"error: --photo: {name!r} is neither a file nor a photograph of the photos corpus")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="an inpainting run or exported generator folder")
    ap.add_argument("--photo", default="Kleiber", help="a photograph of the photos corpus, or an image file")
    ap.add_argument("--box", default="1500,1700,2400,2700", help="hole as top,bottom,left,right (pixels)")
    ap.add_argument("--context", type=int, default=96, help="pixels shown around the hole in the strip")
    ap.add_argument("--out", default="photo-demo", help="output prefix (.png and .json are added)")
    args = ap.parse_args(argv)
    try:
        y0, y1, x0, x1 = (int(v) for v in args.box.split(","))
    except ValueError:
        ap.error(f"--box: expected four integers top,bottom,left,right, got {args.box!r}")
    src = photo_path(args.photo)
    original = np.asarray(Image.open(src).convert("RGB"))
    h, w = original.shape[:2]
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        ap.error(f"--box: {args.box} is not a non-empty box inside the {w}x{h} photograph")
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 255
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Image.fromarray(original).save(tmp / "photo.png", compress_level=1)
        Image.fromarray(mask).save(tmp / "mask.png")
        t = time.perf_counter()
        proc, rc, extra, _ = cli_peak_memory(["inpaint", args.run, "--image", tmp / "photo.png",
                                              "--mask", tmp / "mask.png", "--out", tmp / "out.png"])
        seconds = time.perf_counter() - t
        if rc != 0:
            sys.stderr.write(proc.stderr[-2000:])
            return 1
        result = np.asarray(Image.open(tmp / "out.png").convert("RGB"))
    from ganforge.inpaint import baselines
    from ganforge.metrics.restoration import restoration_scores
    import torch

    hole = mask > 0
    telea = baselines.inpaint_array("telea", original, hole)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
    m = torch.from_numpy(hole)[None, None].float()
    c0, c1 = max(0, y0 - args.context), min(h, y1 + args.context)
    d0, d1 = max(0, x0 - args.context), min(w, x1 + args.context)
    crop = lambda a: a[c0:c1, d0:d1]
    scores = {}
    for name, img in (("ganforge", result), ("telea", telea)):
        # Scored on the region around the hole (the rest of the image is identical for both).
        s = restoration_scores(to_t(crop(img)), to_t(crop(original)), m[..., c0:c1, d0:d1])
        scores[name] = {k: s[k] for k in ("psnr_hole", "ssim_hole", "l1_hole")}
    shown = original.copy()
    shown[hole] = (255, 0, 255)
    gap = np.full((c1 - c0, 8, 3), 255, np.uint8)
    strip = np.concatenate([crop(shown), gap, crop(result), gap, crop(telea), gap, crop(original)], axis=1)
    Image.fromarray(strip).save(f"{args.out}.png", optimize=True)
    record = {"photo": str(src.name), "size": [w, h], "megapixels": w * h / 1e6, "hole": [y0, y1, x0, x1],
              "hole_pixels": int(hole.sum()), "known_pixels_identical": bool(np.array_equal(result[~hole], original[~hole])),
              "peak_extra_bytes": extra, "peak_extra_bytes_per_pixel": extra / (w * h),
              "seconds": seconds, "scores": scores, "run": args.run,
              "strip": "photo with the hole (magenta) | ganforge | OpenCV Telea | original, each at 100%"}
    Path(f"{args.out}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
