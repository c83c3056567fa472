"""Time to quality: training seconds until FID first falls below given thresholds.

Trains a preset with evaluation every ``--eval-every`` generator steps (FID of
``--eval-n`` generated images against the data set's test split, the EMA
generator when the preset has one) and reports, for each threshold, the first
evaluation below it: generator steps, images seen and training seconds.
Training seconds are the run's ``train_seconds`` (``metrics.jsonl``): wall
clock of the training loop with sample grids and checkpoints included and the
evaluations themselves excluded, so the answer does not depend on how often
one evaluates. It stops when every threshold is reached, or at
``--max-train-seconds`` / ``--max-steps``.

Usage::

    python benchmarks/time_to_fid.py --config configs/resnet-fashion-mnist.yaml \
        --device cuda --thresholds 20,10 --eval-every 4000 --json ttf.json
    python benchmarks/time_to_fid.py --config configs/dcgan-fashion-mnist.yaml \
        --device cuda --eval-every 10000 --max-train-seconds 600 train.ema_decay=0.999

Evaluation uses the standard protocol (TF-Inception pool3, fp32 features):
10k images take about 6 s on an H100 and about 20 minutes on a 2-core CPU, so
the CPU is for smoke tests with a small ``--eval-n`` only (and the FID of a
smaller sample is biased upwards: thresholds are meant for 10k).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from ganforge.cli import OneLineErrorParser

    p = OneLineErrorParser(prog="time_to_fid", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="preset YAML, e.g. configs/resnet-fashion-mnist.yaml")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--thresholds", default="20,10", help="comma-separated FID thresholds (default 20,10)")
    p.add_argument("--eval-every", type=int, default=2000, help="generator steps between evaluations")
    p.add_argument("--eval-n", type=int, default=10000, help="generated images per evaluation (default 10000)")
    p.add_argument("--max-train-seconds", type=float, default=3600.0, help="training-time budget")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="generator-step budget")
    p.add_argument("--run-dir", help="where the run is written (default: a temporary directory)")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)
    try:
        args.threshold_list = sorted({float(x) for x in args.thresholds.split(",") if x.strip()}, reverse=True)
    except ValueError:
        p.error(f"--thresholds: expected comma-separated numbers, got {args.thresholds!r}")
    if not args.threshold_list:
        p.error("--thresholds: give at least one number")
    for name in ("eval_every", "eval_n", "max_steps"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')}: must be positive")
    return args


def event_records(run_dir: Path, event: str) -> list[dict]:
    """The ``event: <event>`` records of a run's metrics.jsonl, in order."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("event") == event:
            records.append(r)
    return records


def eval_records(run_dir: Path) -> list[dict]:
    """The ``event: eval`` records of a run's metrics.jsonl, in order."""
    return event_records(run_dir, "eval")


def first_crossings(curve: list[dict], thresholds: list[float]) -> dict[str, dict | None]:
    """For each threshold, the first point of ``curve`` whose FID is below it (None if none)."""
    out = {}
    for th in thresholds:
        hit = next((pt for pt in curve if pt["fid"] is not None and pt["fid"] < th), None)
        out[f"{th:g}"] = dict(hit) if hit else None
    return out


def run(args: argparse.Namespace) -> dict:
    import torch

    from ganforge.config import load_config
    from ganforge.train.trainer import Trainer

    every = args.eval_every
    cfg = load_config(args.config, [
        f"train.device={args.device}", f"train.steps={args.max_steps}", f"train.eval_every={every}",
        f"train.eval_n={args.eval_n}", f"train.ckpt_every={every}", f"train.sample_every={every}",
        f"train.log_every={min(every, 500)}", *args.overrides])
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="time_to_fid-")) / cfg.name
    trainer = Trainer(cfg, run_dir)
    images_per_step = cfg.train.batch_size * cfg.optim.n_dis
    curve: list[dict] = []
    wall0 = time.perf_counter()
    while trainer.step < cfg.train.steps:
        trainer.train(stop_after=every - trainer.step % every)  # ends right after an evaluation
        curve = []
        for r in eval_records(run_dir):
            key = next(k for k in r if k.startswith("fid"))
            curve.append({"step": r["step"], "train_seconds": r["train_seconds"],
                          "images_seen": r["step"] * images_per_step, "fid": r[key], "metric": key})
        if curve:
            print(f"step {curve[-1]['step']}: {curve[-1]['metric']} = {curve[-1]['fid']:.2f} "
                  f"after {curve[-1]['train_seconds']:.1f} s of training", flush=True)
        crossed = first_crossings(curve, args.threshold_list)
        if all(crossed.values()) or trainer.clock.total >= args.max_train_seconds or trainer.stop_requested:
            break
    device = trainer.device
    return {
        "config": str(args.config), "overrides": args.overrides, "run_dir": str(run_dir),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": trainer.plan.precision, "execution": trainer.plan.as_dict(),
        # A planned CUDA graph that failed to capture leaves the run eager (and slower): say why.
        "cuda_graph_failed": [r.get("reason") for r in event_records(run_dir, "cuda_graph_failed")], "batch_size": cfg.train.batch_size, "n_dis": cfg.optim.n_dis,
        "eval_every": every, "eval_n": args.eval_n, "ema": cfg.train.ema_decay > 0,
        "thresholds": first_crossings(curve, args.threshold_list), "curve": curve,
        "train_seconds": trainer.clock.total, "wall_seconds": time.perf_counter() - wall0, "steps": trainer.step,
    }


def main(argv: list[str] | None = None) -> int:
    from ganforge.errors import GanforgeError

    args = parse_args(argv)
    try:
        result = run(args)
    except GanforgeError as exc:
        print(f"time_to_fid: {exc}", file=sys.stderr)
        return 2
    for th, hit in result["thresholds"].items():
        if hit:
            print(f"FID < {th}: step {hit['step']}, {hit['images_seen']:,} images, "
                  f"{hit['train_seconds']:.1f} s of training")
        else:
            print(f"FID < {th}: not reached in {result['steps']} steps ({result['train_seconds']:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
