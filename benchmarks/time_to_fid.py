"""Time to quality: training seconds until FID first falls below given thresholds.

Trains a preset with evaluation every ``--eval-every`` generator steps (FID of
``--eval-n`` generated images against the data set's test split, of the
preset's ``data.classes`` only when it sets them, the EMA generator when the
preset has one) and reports, for each threshold, the first
evaluation below it: generator steps, images seen and training seconds.
Training seconds are the run's ``train_seconds`` (``metrics.jsonl``): wall
clock of the training loop with sample grids and checkpoints included and the
evaluations themselves excluded, so the answer does not depend on how often
one evaluates. It stops when every threshold is reached, or at
``--max-train-seconds`` / ``--max-steps``.

``--eval-at-seconds 15,30,60`` evaluates at those training seconds instead
(the step count is extrapolated from the measured rate; each point lands
within a fraction of a second past its mark). ``--defer-eval`` keeps a copy of
the generator at each point and evaluates them all after training, so the
extractor never shares the device with training and a run under a fixed time
budget is not interrupted; the curve is the same. ``--json`` is rewritten
after every evaluation, so an interrupted run leaves its curve so far
(``"complete": false``).

``--truncation 1.0,1.5`` also scores the final generator with the truncation
trick at those thresholds (``"truncation"`` in the JSON), next to the plain
curve, which never truncates.

The run's ``train.max_seconds`` is set to ``--max-train-seconds``, so a preset's
learning-rate decay under a time budget ends where this run ends.

Usage::

    python benchmarks/time_to_fid.py --config configs/resnet-fashion-mnist.yaml \
        --device cuda --thresholds 20,10 --eval-every 4000 --json ttf.json
    python benchmarks/time_to_fid.py --config configs/dcgan-fashion-mnist.yaml \
        --device cuda --eval-every 10000 --max-train-seconds 600 train.ema_decay=0.999
    python benchmarks/time_to_fid.py --config configs/resnet-fashion-mnist.yaml --device cuda \
        --eval-at-seconds 30,60,120,240 --max-train-seconds 240 --defer-eval --json ttf.json

Evaluation uses the standard protocol (TF-Inception pool3, fp32 features):
10k images take about 6 s on an H100 and about 20 minutes on a 2-core CPU, so
the CPU is for smoke tests with a small ``--eval-n`` only (and the FID of a
smaller sample is biased upwards: thresholds are meant for 10k).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from ganforge.commands._options import OneLineErrorParser

    p = OneLineErrorParser(prog="time_to_fid", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="preset YAML, e.g. configs/resnet-fashion-mnist.yaml")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--thresholds", default="20,10", help="comma-separated FID thresholds (default 20,10)")
    p.add_argument("--eval-every", type=int, default=2000, help="generator steps between evaluations")
    p.add_argument("--eval-at-seconds", default="",
                   help="comma-separated training seconds to evaluate at instead of --eval-every "
                        "(e.g. 15,30,60,120); the run ends at the last one")
    p.add_argument("--defer-eval", action="store_true",
                   help="keep a copy of the (EMA) generator at each evaluation point and evaluate all of "
                        "them after training: same curve, no extractor on the device while training")
    p.add_argument("--eval-n", type=int, default=10000, help="generated images per evaluation (default 10000)")
    p.add_argument("--max-train-seconds", type=float, default=3600.0, help="training-time budget")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="generator-step budget")
    p.add_argument("--run-dir", help="where the run is written (default: a temporary directory)")
    p.add_argument("--json", help="write the result to this file (rewritten after every evaluation)")
    p.add_argument("--truncation", default="",
                   help="comma-separated thresholds: also score the final generator truncated at each")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)
    try:
        args.threshold_list = sorted({float(x) for x in args.thresholds.split(",") if x.strip()}, reverse=True)
    except ValueError:
        p.error(f"--thresholds: expected comma-separated numbers, got {args.thresholds!r}")
    if not args.threshold_list:
        p.error("--thresholds: give at least one number")
    try:
        args.seconds_marks = sorted({float(x) for x in args.eval_at_seconds.split(",") if x.strip()})
    except ValueError:
        p.error(f"--eval-at-seconds: expected comma-separated numbers, got {args.eval_at_seconds!r}")
    if any(not 0 < x < float("inf") for x in args.seconds_marks):
        p.error("--eval-at-seconds: every mark must be a positive number of seconds")
    args.seconds_marks = [x for x in args.seconds_marks if x <= args.max_train_seconds]
    if args.eval_at_seconds.strip() and not args.seconds_marks:
        p.error("--eval-at-seconds: no mark within --max-train-seconds")
    try:
        args.truncations = [float(x) for x in args.truncation.split(",") if x.strip()]
    except ValueError:
        p.error(f"--truncation: expected comma-separated numbers, got {args.truncation!r}")
    if any(not 0 < t < float("inf") for t in args.truncations):
        p.error("--truncation: every threshold must be a positive number")
    if not 0 < args.max_train_seconds < float("inf"):
        p.error("--max-train-seconds: must be a positive number")
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


class Marks:
    """Where to evaluate next: every ``every`` generator steps, or at given training seconds.

    ``steps_to_next`` says how many steps to train before the next evaluation.
    For seconds it extrapolates the steady rate (steps per training second,
    measured after the first chunk, which holds start-up and graph capture), so
    a run lands close to each mark; ``due`` accepts a point within ``slack``
    seconds of its mark.
    """

    WARMUP_STEPS = 50

    def __init__(self, every: int, seconds: list[float], slack: float = 0.2):
        self.every, self.seconds, self.slack = every, list(seconds), slack
        self.by_time = bool(self.seconds)
        self._warmed_up = False
        self._origin: tuple[int, float] | None = None  # (step, clock) where the rate is measured from

    def finished(self) -> bool:
        return self.by_time and not self.seconds

    def due(self, step: int, clock: float) -> bool:
        if self.by_time:
            return clock >= self.seconds[0] - self.slack
        return step > 0 and step % self.every == 0

    def passed(self) -> None:
        """The due point was evaluated (or kept for later)."""
        if self.by_time:
            self.seconds.pop(0)

    def steps_to_next(self, step: int, clock: float) -> int:
        if not self.by_time:
            return self.every - step % self.every
        if not self._warmed_up:  # start-up and graph capture: not part of the rate
            self._warmed_up = True
            return self.WARMUP_STEPS
        if self._origin is None:
            self._origin = (step, clock)
        s0, c0 = self._origin
        if step <= s0 or clock - c0 < 0.05:  # too little since the warm-up to measure a rate
            return self.WARMUP_STEPS
        rate = (step - s0) / (clock - c0)
        return max(1, math.ceil((self.seconds[0] - clock) * rate))


def _curve_point(step: int, train_seconds: float, images_per_step: int, key: str, fid: float,
                 eval_seconds: float | None) -> dict:
    return {"step": step, "train_seconds": train_seconds, "images_seen": step * images_per_step,
            "fid": fid, "metric": key, "eval_seconds": eval_seconds}


def run(args: argparse.Namespace) -> dict:
    import torch

    from ganforge.config import load_config
    from ganforge.train.distributed import unwrap
    from ganforge.train.periodic_eval import generator_fid
    from ganforge.train.trainer import Trainer

    marks = Marks(args.eval_every, args.seconds_marks)
    end_of_run = args.max_steps if marks.by_time else args.eval_every
    # time_to_fid decides when to evaluate; grids and checkpoints come at evaluation points and at the end.
    cfg = load_config(args.config, [
        f"train.device={args.device}", f"train.steps={args.max_steps}", "train.eval_every=0",
        f"train.max_seconds={args.max_train_seconds:g}",
        f"train.eval_n={args.eval_n}", f"train.ckpt_every={end_of_run}", f"train.sample_every={end_of_run}",
        f"train.log_every={min(args.eval_every, 500)}", *args.overrides])
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="time_to_fid-")) / cfg.name
    trainer = Trainer(cfg, run_dir)
    images_per_step = cfg.train.batch_size * cfg.optim.n_dis
    curve: list[dict] = []
    truncated: dict[str, float] = {}
    grid = None
    kept: list[tuple[int, float, dict]] = []  # deferred: (step, train_seconds, generator state)
    # The evaluator's one-off set-up (extractor, real statistics, warm-up), when this run paid it (the
    # first evaluation in the process); result() reads it when called.
    setup_seconds: float | None = None
    wall0 = time.perf_counter()

    def result(complete: bool) -> dict:
        device = trainer.device
        return {
            "config": str(args.config), "overrides": args.overrides, "run_dir": str(run_dir),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "precision": trainer.plan.precision, "execution": trainer.plan.as_dict(),
            # A planned CUDA graph that failed to capture leaves the run eager (and slower): say why.
            "cuda_graph_failed": [r.get("reason") for r in event_records(run_dir, "cuda_graph_failed")],
            "batch_size": cfg.train.batch_size, "n_dis": cfg.optim.n_dis,
            "eval_every": None if marks.by_time else args.eval_every,
            "eval_at_seconds": args.seconds_marks or None, "deferred_eval": args.defer_eval,
            "eval_n": args.eval_n, "eval_setup_seconds": setup_seconds, "ema": cfg.train.ema_decay > 0,
            # data.classes: FID is against the test images of these classes only (periodic_eval)
            "classes": cfg.data.classes,
            "thresholds": first_crossings(curve, args.threshold_list), "curve": curve,
            "train_seconds": trainer.clock.total, "wall_seconds": time.perf_counter() - wall0,
            "steps": trainer.step, "complete": complete, "grid": str(grid) if grid else None,
            "truncation": {"step": trainer.step, "fid": truncated} if truncated else None,
        }

    def save(complete: bool) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(result(complete), indent=2) + "\n", encoding="utf-8")

    def generator():
        return trainer.ema.model if trainer.ema is not None else unwrap(trainer.G)

    out_of_time = False
    while True:
        if marks.due(trainer.step, trainer.clock.total):
            marks.passed()
            if args.defer_eval:
                state = {k: v.detach().clone() for k, v in generator().state_dict().items()}
                kept.append((trainer.step, trainer.clock.total, state))
                print(f"step {trainer.step}: generator kept after {trainer.clock.total:.1f} s of training",
                      flush=True)
            else:
                r = trainer.evaluate()
                setup_seconds = r.get("eval_setup_seconds", setup_seconds)
                key = next(k for k in r if k.startswith("fid"))
                curve.append(_curve_point(r["step"], r["train_seconds"], images_per_step, key, r[key],
                                          r.get("eval_seconds")))
                print(f"step {r['step']}: {key} = {r[key]:.2f} after {r['train_seconds']:.1f} s of training "
                      f"({r.get('eval_seconds', 0):.1f} s to evaluate)", flush=True)
                save(False)
                if all(first_crossings(curve, args.threshold_list).values()):
                    break
        if (trainer.step >= cfg.train.steps or marks.finished() or trainer.stop_requested
                or trainer.clock.total >= args.max_train_seconds or out_of_time):
            break  # (out_of_time: the config's own budget, an override, ended the run)
        out_of_time = trainer.train(stop_after=marks.steps_to_next(trainer.step, trainer.clock.total))["out_of_time"]
    grid = trainer.sample_grid(run_dir / "samples" / f"step_{trainer.step:08d}.png")
    if kept:
        model = generator()
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for step, seconds, state in kept:
            model.load_state_dict(state)
            key, fid, timing = generator_fid(model, cfg, trainer.device)
            if "setup" in timing:
                setup_seconds = round(timing["setup"], 3)
            curve.append(_curve_point(step, round(seconds, 3), images_per_step, key, fid,
                                      round(timing["seconds"], 3)))
            record = {"step": step, "event": "eval", key: fid, "train_seconds": round(seconds, 3),
                      "eval_seconds": round(timing["seconds"], 3), "deferred": True}
            if cfg.data.classes is not None:  # as evaluate_during_training's records
                record["classes"] = sorted(cfg.data.classes)
            trainer.metrics.write(record)
            print(f"step {step}: {key} = {fid:.2f} after {seconds:.1f} s of training "
                  f"({timing['seconds']:.1f} s to evaluate)", flush=True)
            save(False)
        model.load_state_dict(live)
    for t in args.truncations:  # the final generator, as it is now
        key, fid, _ = generator_fid(generator(), cfg, trainer.device, truncation=t)
        truncated[f"{t:g}"] = fid
        print(f"step {trainer.step}, truncation {t:g}: {key} = {fid:.2f}", flush=True)
        save(False)
    save(True)
    return result(True)


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
