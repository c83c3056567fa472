"""``ganforge eval-inpaint``: score a run's inpainting against classical baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganforge.commands._options import SEED, float_in, int_in, add_threads_option, use_threads_option
from ganforge.errors import ConfigError

MAX_N = 100_000  # test images (each is inpainted by every method)
MAX_GRID_N = 64  # crops per family in the --grid picture (its width grows with them)
DEFAULT_GRID_N = 8


def register(sub) -> None:
    from ganforge.config_schema import CHOICES  # not ganforge.inpaint.masks: no torch to build the parser

    p = sub.add_parser("eval-inpaint", help="evaluate inpainting against classical baselines",
                       description="Mask test images, fill them with the run's generator and with OpenCV "
                                   "Telea / Navier-Stokes and scikit-image biharmonic inpainting, and report "
                                   "PSNR, SSIM (hole and whole image), hole L1, FID, P-IDS / U-IDS and a perceptual "
                                   "distance (IPD, on the FID network). Prints a table, "
                                   "appends a record to RUN_DIR/metrics.jsonl, optionally writes JSON.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    kinds = CHOICES["inpaint.masks"]
    p.add_argument("--masks", default="center", type=_kinds(kinds),
                   help=f"mask kinds, comma-separated, from {','.join(kinds)} (default center); comod is "
                        "reported per hole-ratio bucket (0,0.2] ... (0.8,1.0)")
    p.add_argument("--dataset", help="images to evaluate on instead of the run's test split, e.g. photos:test, "
                                     "skimage-photos or a folder")
    p.add_argument("--n", type=int_in(1, MAX_N), default=1000,
                   help=f"number of test images (default 1000, at most {MAX_N}; fewer if the split is smaller)")
    p.add_argument("--ratio", type=float_in(0, 1, lo_open=True, hi_open=True), default=0.25,
                   help="fraction of missing pixels, in (0, 1) (default 0.25)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the masks")
    p.add_argument("--split", default="test", choices=("train", "test", "all"))
    p.add_argument("--baselines", help="comma-separated subset of telea,navier-stokes,biharmonic "
                                       "(default: all installed); 'none' for none")
    p.add_argument("--no-fid", action="store_true",
                   help="skip FID, P-IDS / U-IDS and IPD (no Inception features)")
    p.add_argument("--no-perceptual", action="store_true",
                   help="skip the perceptual distance IPD (at 64 px it costs about as much as FID again)")
    p.add_argument("--fid-precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the feature statistics of the originals and baselines")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON here")
    p.add_argument("--grid", metavar="PATH",
                   help="also draw a PNG here: --grid-n crops of each mask family (and bucket), "
                        "original, masked and every method's fill")
    p.add_argument("--grid-n", type=int_in(1, MAX_GRID_N),
                   help=f"crops per family in --grid (default {DEFAULT_GRID_N}, at most {MAX_GRID_N})")
    p.add_argument("--grid-start", type=int_in(0, MAX_N - 1),
                   help="the first crop drawn in --grid, counted from 0 (default 0; below --n)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: newest)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    add_threads_option(p)
    p.set_defaults(func=run)


def _kinds(known):
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown mask kind {bad[0] if bad else text!r} (known: {', '.join(known)})")
        return list(dict.fromkeys(names))
    return parse


def _methods(text: str | None) -> list[str] | None:
    from ganforge.inpaint.baselines import BASELINES

    if text is None:
        return None
    if text.strip() == "none":
        return []
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in BASELINES:
            raise ConfigError("--baselines", f"unknown method {name!r} (known: {', '.join(BASELINES)})")
    return names


def run(args: argparse.Namespace) -> int:
    use_threads_option(args)
    from ganforge.commands._paths import check_output_file
    from ganforge.devices import resolve_device
    from ganforge.inpaint.compare import evaluate_families, format_table, summary_rows
    from ganforge.train.runlog import MetricsLog

    # Checked before the evaluation, which can take minutes.
    methods = _methods(args.baselines)
    if args.json:
        check_output_file(args.json, "--json")
    if args.grid:
        check_output_file(args.grid, "--grid")
    else:
        for name, value in (("--grid-n", args.grid_n), ("--grid-start", args.grid_start)):
            if value is not None:
                raise ConfigError(name, "has no effect without --grid PATH")
    if args.grid_start is not None and args.grid_start >= args.n:
        raise ConfigError("--grid-start", f"must be below --n ({args.n}), got {args.grid_start}")
    if Path(args.run_dir, "config.yaml").is_file():
        check_output_file(Path(args.run_dir) / "metrics.jsonl", "RUN_DIR")
    device = resolve_device(args.device, "--device")
    masks = args.masks if isinstance(args.masks, list) else [args.masks]
    results = evaluate_families(args.run_dir, masks, n=args.n, hole_ratio=args.ratio, seed=args.seed,
                                split=args.split, methods=methods, fid=not args.no_fid,
                                fid_precision=args.fid_precision, ema=not args.no_ema, checkpoint=args.checkpoint,
                                device=device, fid_cache=not args.no_cache, dataset=args.dataset,
                                perceptual=not args.no_perceptual,
                                preview=(args.grid_n or DEFAULT_GRID_N) if args.grid else 0,
                                preview_start=args.grid_start or 0)
    if args.grid:
        from ganforge.inpaint.preview import write_comparison

        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        print(f"wrote {write_comparison(results, args.grid)}")
        for result in results:
            del result["preview"]  # tensors: not for metrics.jsonl or --json
    log = MetricsLog(Path(args.run_dir) / "metrics.jsonl")
    for result in results:
        print(format_table(result))
        record = {"step": result["step"], "eval": "inpaint", "masks": result["masks"], "n": result["n"],
                  "hole_ratio": result["hole_ratio"], "split": result["split"], "seed": result["seed"],
                  "dataset": result["dataset"]}
        if result.get("hole_range"):
            record["hole_range"] = result["hole_range"]
        for method, metrics in result["results"].items():
            record.update({f"inpaint/{method}/{k}": v for k, v in metrics.items()})
        log.write(record)
    if args.json:
        from ganforge.atomic import write_text

        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        # One evaluation keeps its old layout; several are listed, with a flat table of every row.
        doc = results[0] if len(results) == 1 else {"evaluations": results, "table": summary_rows(results)}
        write_text(path, json.dumps(doc, indent=2) + "\n")  # by rename: a failed write leaves the old file
        print(f"wrote {path}")
    return 0
