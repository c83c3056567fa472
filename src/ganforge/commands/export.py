"""``ganforge export``: write a run's generator as config.yaml + generator.safetensors, to share."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("export", help="export a run's generator (config + safetensors) to share it")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-ema", action="store_true", help="export the raw generator, not its EMA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.artifacts import export_generator
    from ganforge.commands._paths import check_output_dir

    check_output_dir(args.out, "--out")
    out = export_generator(args.run_dir, args.out, ema=not args.no_ema)
    print(f"exported generator to {out}")
    return 0
