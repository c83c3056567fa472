"""Training throughput per CPU thread choice, on an idle machine and beside a busy process.

Trains the demo preset (``dcgan-fashion-mnist``, on synthetic images of its shape,
so no data set is needed) for ``--steps`` steps in a fresh process per run, once per
choice:

``default``
    PyTorch's own thread count (one per CPU in this process's affinity mask).
``1``, ``2``
    ``train.threads=1`` / ``2``.
``auto``
    ``train.threads=0``: the cores other processes leave free (:mod:`ganforge.threads`).
``auto-passive``
    ``auto`` with ``OMP_WAIT_POLICY=PASSIVE`` in the environment (OpenMP threads sleep
    at barriers instead of spinning; settable only before the process imports torch).

under each load: ``idle``, and ``busy`` (a pure-Python busy loop pinned to CPU 0
for the whole run). Runs are paired A/B: each round runs every choice once under
each load, in an order rotated from round to round, so slow drifts of the machine
fall on every choice alike. The JSON (default ``benchmarks/results/threads.json``)
holds every run's images/s, the median per choice and load, and each median's
ratio to ``default`` under the same load. ``OMP_NUM_THREADS`` is removed from the
runs' environment (it would decide ``auto`` and ``default``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/threads.py                # 300 steps, 3 rounds, every choice and load
    python benchmarks/threads.py --quick                          # 60 steps, 1 round
    python benchmarks/threads.py --choices default,1,auto --loads busy --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    """The CPU model and whether it computes bf16 natively (the thread choices' ratios depend on both)."""
    import torch

    from ganforge.cpu_features import cpu_has_native_bf16
    from ganforge.perf.machine import device_name

    return f"{device_name(torch.device('cpu'))} ({'native' if cpu_has_native_bf16() else 'no native'} bf16)"
CHOICES = ("default", "1", "2", "auto", "auto-passive")
LOADS = ("idle", "busy")

# One run, in a fresh interpreter: the thread count must be chosen before torch's first operator.
RUN = r"""
import json, sys, tempfile, time
import torch
from ganforge.config import load_config
from ganforge.perf.bench_presets import synthetic_dataset
from ganforge.preset_files import find_preset
from ganforge.train.trainer import Trainer
choice, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
threads = 0 if choice.startswith("auto") else torch.get_num_threads() if choice == "default" else int(choice)
cfg = load_config(find_preset("dcgan-fashion-mnist"), [
    f"train.steps={steps}", f"train.threads={threads}", f"train.batch_size={batch}", "train.device=cpu",
    f"train.log_every={max(1, steps // 4)}", f"train.sample_every={10**9}", f"train.ckpt_every={10**9}",
    "train.eval_every=0", "train.max_seconds=0"])
with tempfile.TemporaryDirectory() as tmp:
    t = Trainer(cfg, tmp + "/run", dataset=synthetic_dataset(cfg, 2048))
    warm = max(1, steps // 10)
    t.train(stop_after=warm)  # first steps: allocations, one-off set-up
    t0, n0 = time.perf_counter(), t.counters.images_seen
    t.train()
    seconds = time.perf_counter() - t0
    out = {"threads": torch.get_num_threads(), "reason": t.plan.threads_reason, "precision": t.plan.precision,
           "steps": t.counters.step - warm, "seconds": seconds,
           "images_per_s": (t.counters.images_seen - n0) / max(seconds, 1e-9)}
print("RESULT " + json.dumps(out))
"""

BUSY = "import os\nos.sched_setaffinity(0, {%d})\nwhile True:\n    pass\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    sys.path.insert(0, str(ROOT / "src"))
    from ganforge.commands._options import OneLineErrorParser, int_in

    p = OneLineErrorParser(prog="threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int_in(2, 10**6), default=300, help="timed training steps per run (default 300)")
    p.add_argument("--rounds", type=int_in(1, 100), default=3, help="A/B rounds (default 3)")
    p.add_argument("--batch", type=int_in(1, 4096), default=64, help="batch size (default 64, the preset's)")
    p.add_argument("--choices", default=",".join(CHOICES), help=f"comma list of {','.join(CHOICES)}")
    p.add_argument("--loads", default=",".join(LOADS), help=f"comma list of {','.join(LOADS)}")
    p.add_argument("--busy-cpu", type=int_in(0, 4096), default=0, help="CPU the busy loop is pinned to")
    p.add_argument("--quick", action="store_true", help="60 steps, 1 round (a first look; still minutes)")
    p.add_argument("--json", help="output file (default benchmarks/results/threads.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = min(args.steps, 60), 1
    args.choices = [c.strip() for c in args.choices.split(",") if c.strip()]
    args.loads = [c.strip() for c in args.loads.split(",") if c.strip()]
    for value, known, name in ((args.choices, CHOICES, "--choices"), (args.loads, LOADS, "--loads")):
        bad = [v for v in value if v not in known]
        if bad or not value:
            p.error(f"{name}: unknown {bad or 'empty list'}; choose from {', '.join(known)}")
    return args


def start_busy(cpu: int) -> subprocess.Popen:
    """A busy loop pinned to ``cpu`` (the competing process)."""
    return subprocess.Popen([sys.executable, "-c", BUSY % cpu])


def stop_busy(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_once(choice: str, steps: int, batch: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if choice == "auto-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    done = subprocess.run([sys.executable, "-c", RUN, choice, str(steps), str(batch)], env=env,
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"run {choice} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def measure(args: argparse.Namespace) -> dict:
    runs = []
    for r in range(args.rounds):
        for load in args.loads:
            busy = start_busy(args.busy_cpu) if load == "busy" else None
            try:
                if busy is not None:
                    time.sleep(0.5)  # the loop is running before the run's auto rule measures the load
                k = r % len(args.choices)
                for choice in args.choices[k:] + args.choices[:k]:  # rotated: A/B, then B/A
                    result = run_once(choice, args.steps, args.batch)
                    runs.append({"round": r, "load": load, "choice": choice, **result})
                    print(f"round {r} {load:<4} {choice:<12} threads {result['threads']:<2} "
                          f"{result['images_per_s']:8.0f} images/s", flush=True)
            finally:
                if busy is not None:
                    stop_busy(busy)
    summary = {}
    for load in args.loads:
        med = {c: statistics.median(x["images_per_s"] for x in runs if x["load"] == load and x["choice"] == c)
               for c in args.choices}
        base = med.get("default")
        summary[load] = {c: {"images_per_s": round(v, 1),
                             "vs_default": round(v / base, 3) if base else None} for c, v in med.items()}
    return {"what": "demo preset (dcgan-fashion-mnist) training throughput per CPU thread choice",
            "cpu": _cpu(), "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "torch": _torch_version(), "device": "cpu",
            "batch": args.batch, "steps": args.steps, "rounds": args.rounds, "busy_cpu": args.busy_cpu,
            "dtype": runs[0]["precision"] if runs else None, "summary": summary, "runs": runs}


def _torch_version() -> str:
    import torch

    return torch.__version__


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / "threads.json"
    result = measure(args)
    print(f"\n{'load':<5} {'choice':<12} {'images/s':>9} {'x default':>9}")
    for load, per in result["summary"].items():
        for choice, row in per.items():
            ratio = f"{row['vs_default']:.2f}" if row["vs_default"] else "-"
            print(f"{load:<5} {choice:<12} {row['images_per_s']:9.0f} {ratio:>9}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
