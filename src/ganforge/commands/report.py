"""``ganforge report``: a run's curves, evaluations and samples as one HTML page."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("report", help="write an HTML report of a run (curves, metrics, samples)",
                       description="Plot a run's losses, D outputs, throughput, skipped updates and evaluation "
                       "metrics over steps and training seconds, with its sample grids over time, config, "
                       "execution settings and best checkpoint, into RUN_DIR/report/index.html (PNG "
                       "figures beside it). Works while the run is still training; run files that cannot "
                       "be read are skipped with a warning. Needs matplotlib: pip install 'ganforge[report]'.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", help="output folder: new, empty or an earlier report's (default RUN_DIR/report)")
    p.add_argument("--no-animation", action="store_true", help="skip the animated GIF of the sample grids")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.errors import shorten
    from ganforge.report import build_report

    t0 = time.perf_counter()
    report = build_report(args.run_dir, args.out, animation=not args.no_animation)
    for line in report.warnings:
        print(f"warning: skipped {shorten(line, 800)}", file=sys.stderr)
    h = report.history
    print(f"report: {report.page}")
    print(f"{len(h.train)} training records, {len(h.evals)} evaluations, {len(report.figures)} figures, "
          f"{len(report.strip_steps)} sample grids in the strip ({time.perf_counter() - t0:.1f}s)")
    return 0
