"""The harness's options and its run: presets x modes, then sampling and Inception throughput.

``ganforge bench`` and ``benchmarks/train_throughput.py`` both end up in
:func:`run` (the script through :func:`main`).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from ganforge.commands._options import THREADS
from ganforge.perf import summary as report
from ganforge.perf.machine import MEASURABLE, PEAK_SECONDS, device_name, keep_best, measure_peaks, native_dtypes
from ganforge.perf.exec_modes import MODES, default_modes, requested_precision
from ganforge.perf.bench_presets import DEFAULT_PRESETS, PRESETS, default_config_dir
from ganforge.perf.throughput import bench_inception, bench_sampling
from ganforge.perf.training import build_modes, make_rows, time_rounds
from ganforge.errors import ConfigError, GanforgeError

DESCRIPTION = "Training, sampling and Inception throughput, every execution mode side by side."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                   help=f"comma-separated presets (known: {', '.join(PRESETS)}); missing config files are skipped")
    p.add_argument("--modes", default=None, help=f"comma-separated modes (known: {', '.join(MODES)}); "
                   "default depends on the device, and leaves out bf16 modes where bf16 is not native")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--batch", type=int, default=0, help="batch size (default: each preset's)")
    p.add_argument("--iters", type=int, default=0, help="iterations per timed round (default 4 CPU, 50 GPU)")
    p.add_argument("--rounds", type=int, default=0, help="timed rounds per mode, interleaved (default 5)")
    p.add_argument("--warmup", type=int, default=0, help="warm-up iterations per mode (default 3 CPU, 15 GPU)")
    p.add_argument("--threads", type=THREADS, default=0, help="CPU threads (default 0: torch's own, the baseline)")
    p.add_argument("--configs", default=None, help="directory of the preset YAML files (default: ./configs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every preset, e.g. --set train.batch_size=256")
    p.add_argument("--sampling", type=int, default=-1,
                   help="images per sampling measurement (0: skip; default 1024 CPU, 32768 GPU)")
    p.add_argument("--inception", type=int, default=-1,
                   help="images per Inception-extraction measurement (0: skip; default 128 CPU, 4096 GPU)")
    p.add_argument("--peak-size", type=int, default=0, help="matrix size of the peak measurement")
    p.add_argument("--peak-seconds", type=float, default=PEAK_SECONDS,
                   help=f"time budget per dtype of each peak measurement (default {PEAK_SECONDS:g})")
    p.add_argument("--json", default=None, help="write all results to this JSON file")


def run(args: argparse.Namespace) -> int:
    bench(args)
    if args.json:
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``benchmarks/train_throughput.py``: the same options; bad input is one line on stderr, exit 2."""
    from ganforge.commands._options import OneLineErrorParser

    parser = OneLineErrorParser(prog="train_throughput", description=DESCRIPTION)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except GanforgeError as exc:
        print(f"train_throughput: {exc}", file=sys.stderr)
        return 2


def _check(args: argparse.Namespace) -> None:
    for name in ("batch", "iters", "rounds", "warmup", "threads", "peak_size"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}",
                              f"must be >= 0 (0: the default), got {getattr(args, name)}")
    for name in ("sampling", "inception"):
        if getattr(args, name) < -1:
            raise ConfigError(f"--{name}", f"must be >= 0 (0: skip), got {getattr(args, name)}")
    if not args.peak_seconds >= 0:
        raise ConfigError("--peak-seconds", f"must be >= 0, got {args.peak_seconds}")
    for m in args.modes.split(",") if args.modes else ():
        if m not in MODES:
            raise ConfigError("--modes", f"unknown mode {m!r} (known: {', '.join(MODES)})")
    for preset in args.presets.split(","):
        if preset not in PRESETS:
            raise ConfigError("--presets", f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")


def bench(args: argparse.Namespace) -> dict:
    """Run the benchmark the options describe; prints as it goes and returns the report (as in the JSON)."""
    import torch

    from ganforge.devices import resolve_device

    _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "--device")
    kind = "cuda" if device.type == "cuda" else "cpu"
    native = native_dtypes(device)
    modes = args.modes.split(",") if args.modes else list(default_modes(kind, "bf16" in native))
    asked = {requested_precision(m) for m in modes}
    # Peaks of the native dtypes, and of any other dtype a requested mode computes in (small, marked emulated).
    peak_dtypes = [d for d in MEASURABLE[kind] if d in native or d in asked]
    iters = args.iters or (50 if kind == "cuda" else 4)
    rounds = args.rounds or 5
    warmup = args.warmup or (15 if kind == "cuda" else 3)
    config_dir = Path(args.configs) if args.configs else default_config_dir()
    meta = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "device": device_name(device),
        "device_type": kind,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "iters_per_round": iters, "rounds": rounds, "warmup": warmup,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "native_dtypes": list(native), "modes": modes,
    }
    print(f"# {meta['device']} | torch {meta['torch']} | threads {meta['threads']}", flush=True)
    report.say(f"measuring matmul peaks ({', '.join(peak_dtypes)}; at most ~{args.peak_seconds:g} s each)")
    peaks = measure_peaks(device, args.peak_size, peak_dtypes, args.peak_seconds)
    report.say(report.peaks_line(peaks, native, kind))
    for m in modes:
        if requested_precision(m) in MEASURABLE[kind] and requested_precision(m) not in native:
            report.say(f"mode {m}: {requested_precision(m)} is emulated on this device; expect it to be slow")
    results, sampling, inception = [], [], []
    out = {"meta": meta, "peaks": peaks, "train": results, "sampling": sampling, "inception": inception}
    overrides = list(args.overrides) + ([f"train.batch_size={args.batch}"] if args.batch else [])
    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as tmp:
        for preset in args.presets.split(","):
            path = config_dir / PRESETS[preset]
            if not path.is_file():
                report.say(f"skip {preset}: no config {path}")
                continue
            report.say(f"{preset}: {len(modes)} mode{'s' * (len(modes) > 1)}, {warmup} warm-up iterations, "
                       f"{rounds} rounds of {iters} iterations")
            runs = build_modes(preset, path, modes, device, overrides, warmup, Path(tmp), report.say)
            time_rounds(preset, runs, device, iters, rounds, report.say)
            # The peak again, right after the timed rounds: on a shared machine a single measurement may
            # have caught a busy moment; the best of the measurements is the machine's peak.
            keep_best(peaks, measure_peaks(device, args.peak_size, peak_dtypes, args.peak_seconds))
            rows = make_rows(preset, path, runs, device, peaks, native)
            del runs
            results += rows
            report.print_rows(rows)
            if args.sampling != 0 and rows:
                n = args.sampling if args.sampling > 0 else (32768 if kind == "cuda" else 1024)
                report.say(f"sampling {preset}: {n} images")
                sampling += bench_sampling(preset, path, device, args.overrides, n, native, report.say)
            report.write_json(args.json, out)
    if args.inception != 0:
        n = args.inception if args.inception > 0 else (4096 if kind == "cuda" else 128)
        report.say(f"inception: {n} images")
        inception += bench_inception(device, n, native, report.say)
    report.print_throughput(sampling + inception)
    report.write_json(args.json, out)
    return out
