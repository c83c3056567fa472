"""``ganforge eval``: FID, KID, precision/recall and domain-classifier scores for a run or two image sets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganforge.errors import ConfigError


def register(sub) -> None:
    from ganforge.metrics.registry import metric_names

    p = sub.add_parser("eval", help="evaluate a run (or two image sets) with FID/KID/PR/classifier scores",
                       description="Evaluate a run's generator against its data set, or --fake DIR against "
                       "--real DIR_OR_DATASET. Results are printed and appended to RUN_DIR/metrics.jsonl.")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR")
    p.add_argument("--metrics", default=None, help=f"comma list of {','.join(metric_names())} "
                   "(default: fid,kid,pr, and cls for a labelled named data set)")
    p.add_argument("--n", type=int, default=10000, help="generated images (default 10000)")
    p.add_argument("--split", default="test", help="real split: test, train or all (default test)")
    p.add_argument("--real", help="real images: a dataset name or a folder (two-set mode)")
    p.add_argument("--fake", help="folder of generated images (two-set mode)")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw generator, not its EMA")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: newest)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="feature extraction precision (fp32 is the reference)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=run)


def default_metrics(real: str) -> str:
    """The domain-classifier score needs a labelled named data set."""
    from ganforge.data.sources import canonical_name

    return "fid,kid,pr,cls" if canonical_name(real) else "fid,kid,pr"


def print_table(result: dict, out=None) -> None:
    out = out or sys.stdout  # looked up at call time: sys.stdout may have been replaced
    for key, value in result.items():
        if key == "protocol":
            continue
        if isinstance(value, (tuple, list)) and len(value) == 2:
            text = f"{value[0]:.6g} +- {value[1]:.2g}"
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
        print(f"{key:<24} {text}", file=out)
    if "protocol" in result:
        print(f"protocol: {result['protocol']}", file=out)


def run(args: argparse.Namespace) -> int:
    import json

    from ganforge.metrics.evaluate import append_jsonl, compute_metrics

    if args.n < 2:
        raise ConfigError("--n", f"need at least 2 images, got {args.n}")
    if args.run_dir and (args.fake or args.real):
        raise ConfigError("--fake", "give either RUN_DIR or --real/--fake, not both")
    if args.run_dir:
        from ganforge.artifacts import load_generator
        from ganforge.sampling import generate

        G, cfg, step = load_generator(args.run_dir, args.checkpoint, ema=not args.no_ema, device=args.device)
        stream = generate(G, cfg, args.n, seed=args.seed, device=args.device, batch_size=args.batch_size)
        real = cfg.data.dataset
        metrics = args.metrics or default_metrics(real)
        result = compute_metrics(stream, real, args.split, metrics.split(","), args.n,
                                 image_size=cfg.data.image_size, channels=cfg.data.channels, root=cfg.data.root,
                                 device=args.device, precision=args.precision, batch_size=args.batch_size,
                                 seed=args.seed, progress=lambda m: None)
        result = {"step": step, "generator": "raw" if args.no_ema else "ema-if-present", **result}
        append_jsonl(Path(args.run_dir) / "metrics.jsonl", {"event": "eval", **result})
    else:
        if not (args.real and args.fake):
            raise ConfigError("RUN_DIR", "give a run directory, or both --real and --fake")
        metrics = args.metrics or default_metrics(args.real)
        result = compute_metrics(args.fake, args.real, args.split, metrics.split(","), args.n,
                                 device=args.device, precision=args.precision, batch_size=args.batch_size,
                                 seed=args.seed)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=list), encoding="utf-8")
    return 0
