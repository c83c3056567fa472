"""``ganforge bench``: training, sampling and Inception throughput, every execution mode side by side.

For each model preset and each execution mode this times full training
iterations (all D steps and the G step, optimizer included) after warm-up, on
synthetic in-memory data of the preset's shape, and reports images/s,
ms/iteration, FLOPs per iteration (``torch.utils.flop_counter``), the achieved
GFLOP/s, its ratio to the matrix-multiply peak this machine measured for the
mode's dtype, and peak memory. Modes run interleaved, round after round, so a
noisy machine slows all of them alike; each mode is also given as a ratio to
the reference path (plain eager float32). Prints a table; ``--json`` writes
every number with what ran, where, and how.

The same harness is ``benchmarks/train_throughput.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ganforge.errors import ConfigError, GanforgeError

PRESETS = {  # name -> config file under configs/
    "dcgan-28": "dcgan-fashion-mnist.yaml",
    "mlp-28": "mlp-fashion-mnist.yaml",
    "resnet-28": "resnet-fashion-mnist.yaml",
    "cresnet-28": "cresnet-fashion-mnist.yaml",
    "resnet-32": "resnet-cifar10.yaml",
    "wgan-gp-28": "wgan-gp-fashion-mnist.yaml",
    "inpaint-64": "inpaint-folder-64.yaml",
}
DEFAULT_PRESETS = ("dcgan-28", "mlp-28", "resnet-28", "cresnet-28", "resnet-32", "inpaint-64")

# Execution modes: train.* settings applied on top of the preset. Unknown-to-the-config
# keys are set as attributes, which the trainer reads with defaults. Every mode but
# "preset" states the memory layout and compilation itself, so that "reference" is the
# plain loop whatever the preset sets (the ResNet presets ship with channels_last).
REFERENCE = "reference"
_PLAIN = {"channels_last": False, "compile": False}
MODES = {
    REFERENCE: {**_PLAIN, "fast": False, "precision": "fp32"},
    "bf16": {**_PLAIN, "fast": False, "precision": "bf16"},
    "fp16": {**_PLAIN, "fast": False, "precision": "fp16"},
    "channels_last": {**_PLAIN, "fast": False, "precision": "fp32", "channels_last": True},
    "fused": {**_PLAIN, "fast": True, "precision": "fp32", "reuse_fake": False, "batch_d": False,
              "cuda_graphs": False, "cudnn_benchmark": False},
    "fused+reuse": {**_PLAIN, "fast": True, "precision": "fp32", "reuse_fake": True, "batch_d": False,
                    "cuda_graphs": False, "cudnn_benchmark": False},
    "fused+reuse+batch_d": {**_PLAIN, "fast": True, "precision": "fp32", "cuda_graphs": False,
                            "cudnn_benchmark": False},
    "fast-fp32": {**_PLAIN, "fast": True, "precision": "fp32"},
    "fast-no-graphs": {**_PLAIN, "fast": True, "cuda_graphs": False},
    "fast": {**_PLAIN, "fast": True},
    "fast+cl": {**_PLAIN, "fast": True, "channels_last": True},
    "fast+compile": {**_PLAIN, "fast": True, "compile": True},
    "fast-fp16": {**_PLAIN, "fast": True, "precision": "fp16"},
    "preset": {},  # the preset's own train.* settings: what `ganforge train` runs on this machine
}
DEFAULT_MODES = {
    "cpu": (REFERENCE, "bf16", "channels_last", "fused", "fused+reuse", "fused+reuse+batch_d", "fast", "fast+cl"),
    "cuda": (REFERENCE, "bf16", "fused+reuse+batch_d", "fast-fp32", "fast-no-graphs", "fast", "fast+cl", "fast-fp16"),
}


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark training, sampling and Inception throughput",
                       description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                   help=f"comma-separated presets (known: {', '.join(PRESETS)}); missing config files are skipped")
    p.add_argument("--modes", default=None, help=f"comma-separated modes (known: {', '.join(MODES)}); "
                   "default depends on the device")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--batch", type=int, default=0, help="batch size (default: each preset's)")
    p.add_argument("--iters", type=int, default=0, help="iterations per timed round (default 4 CPU, 50 GPU)")
    p.add_argument("--rounds", type=int, default=0, help="timed rounds per mode, interleaved (default 5)")
    p.add_argument("--warmup", type=int, default=0, help="warm-up iterations per mode (default 3 CPU, 15 GPU)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--configs", default=None, help="directory of the preset YAML files (default: ./configs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every preset, e.g. --set train.batch_size=256")
    p.add_argument("--sampling", type=int, default=-1,
                   help="images per sampling measurement (0: skip; default 1024 CPU, 32768 GPU)")
    p.add_argument("--inception", type=int, default=-1,
                   help="images per Inception-extraction measurement (0: skip; default 128 CPU, 4096 GPU)")
    p.add_argument("--peak-size", type=int, default=0, help="matrix size of the peak measurement")
    p.add_argument("--json", default=None, help="write all results to this JSON file")


def run(args: argparse.Namespace) -> int:
    bench(args)
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _write_json(path: str | None, results: dict) -> None:
    """Write (or rewrite) the results file; called after every preset, so a cut-short run keeps its numbers."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=1), encoding="utf-8")


# ------------------------------------------------------------------ helpers

def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peaks(device, size: int = 0) -> dict[str, dict]:
    """Best dense matmul rates on this machine, GFLOP/s per dtype (wall clock; CPU time too on CPU)."""
    import torch

    out = {}
    if device.type == "cpu":
        n, reps = size or 2048, 6
        kinds = {"fp32": (torch.float32, False), "bf16": (torch.bfloat16, False)}
    else:
        n, reps = size or 8192, 20
        kinds = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
                 "bf16": (torch.bfloat16, False), "fp16": (torch.float16, False)}
    for name, (dtype, tf32) in kinds.items():
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            for _ in range(2):
                a @ b
            _sync(device)
            best_wall = best_cpu = math.inf
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                a @ b
                _sync(device)
                best_wall = min(best_wall, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        flops = 2.0 * n**3
        entry = {"gflops": flops / best_wall / 1e9, "n": n}
        if device.type == "cpu":
            entry["gflops_per_cpu_second"] = flops / max(best_cpu, 1e-9) / 1e9
        out[name] = entry
        del a, b
    return out


class _Memory:
    """Peak memory of one stretch of work: CUDA allocator peak, or the process's resident high-water mark."""

    def __init__(self, device):
        self.device = device
        self.base = 0

    def start(self) -> None:
        import torch

        if self.device.type == "cuda":
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:  # resets VmHWM (Linux); without it the high-water mark covers the whole process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.base = _rss_kib("VmRSS") * 1024

    def peak_mib(self) -> dict[str, float]:
        """``peak`` of the process/allocator and ``delta`` above the level at :meth:`start`, in MiB."""
        import torch

        if self.device.type == "cuda":
            _sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = max(_rss_kib("VmHWM"), 0) * 1024 or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak": peak / 2**20, "delta": (peak - self.base) / 2**20}


def _rss_kib(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def synthetic_dataset(cfg, n: int):
    """Random uint8 images (and labels) of the preset's training shape, in memory."""
    import torch

    from ganforge.data import ImageDataset

    size = cfg.data.image_size
    if cfg.model.arch == "inpaint" and cfg.inpaint.random_crop and cfg.inpaint.load_size:
        size = cfg.inpaint.load_size
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, cfg.data.channels, size, size), generator=gen, dtype=torch.uint8)
    k = cfg.model.num_classes
    labels = torch.randint(0, k, (n,), generator=gen) if k else None
    return ImageDataset(images=images, labels=labels, num_classes=k, name="synthetic")


def load_preset(path: Path, device: str, overrides: list[str], mode: dict):
    """The preset's config with the run-independent overrides and the mode's train.* settings applied."""
    from ganforge.config import load_config

    cfg = load_config(path, [f"train.device={device}", "train.ema_decay=0", *overrides])
    for key, value in mode.items():
        setattr(cfg.train, key, value)  # fields the config does not know yet are read with defaults
    return cfg


def describe(trainer) -> dict:
    """What actually ran: the trainer's resolved execution plan."""
    plan = trainer.plan
    return {
        "precision": plan.precision,
        "channels_last": plan.channels_last,
        "compile": plan.compile_g or plan.compile_d,
        "fused_adam": plan.fused_optim,
        "reuse_fake": plan.reuse_fake,
        "batch_d": plan.batch_d,
        "cuda_graphs": plan.cuda_graphs,
        "sync_per_update": not plan.skip_on_device,
    }


class _NoModuleTracker:
    """Stands in for FlopCounterMode's per-module tracker, whose backward hooks break double backward."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_flops(trainer) -> float:
    """FLOPs of one training iteration (matmuls and convolutions, forward and backward).

    Gradient penalties differentiate twice; FlopCounterMode's module tracker cannot
    follow ``autograd.grad`` there, so those iterations are counted without it
    (only the per-module breakdown, which is not used here, is lost). NaN if
    counting fails anyway.
    """
    from torch.utils.flop_counter import FlopCounterMode

    for attempt in range(2):
        counter = FlopCounterMode(display=False)
        if attempt:
            counter.mod_tracker = _NoModuleTracker()
        try:
            with counter:
                trainer.train_step()
            return float(counter.get_total_flops())
        except RuntimeError:
            continue
    return math.nan


# ------------------------------------------------------------------- bench

def bench(args: argparse.Namespace) -> dict:
    import torch

    from ganforge.train.precision import resolve_device

    for name in ("batch", "iters", "rounds", "warmup", "threads", "peak_size"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}", f"must be >= 0 (0: the default), got {getattr(args, name)}")
    for name in ("sampling", "inception"):
        if getattr(args, name) < -1:
            raise ConfigError(f"--{name}", f"must be >= 0 (0: skip), got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    modes = args.modes.split(",") if args.modes else list(DEFAULT_MODES[kind])
    for m in modes:
        if m not in MODES:
            raise ConfigError("--modes", f"unknown mode {m!r} (known: {', '.join(MODES)})")
    for preset in args.presets.split(","):
        if preset not in PRESETS:
            raise ConfigError("--presets", f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    iters = args.iters or (50 if kind == "cuda" else 4)
    rounds = args.rounds or 5
    warmup = args.warmup or (15 if kind == "cuda" else 3)
    config_dir = Path(args.configs) if args.configs else _default_config_dir()
    meta = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if kind == "cuda" else _cpu_name(),
        "device_type": kind,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "iters_per_round": iters, "rounds": rounds, "warmup": warmup,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"# {meta['device']} | torch {meta['torch']} | threads {meta['threads']}", flush=True)
    peaks = measure_peaks(device, args.peak_size)
    print("# matmul peak GFLOP/s (re-measured after each preset, best kept): "
          + ", ".join(f"{k} {v['gflops']:.0f}" for k, v in peaks.items()), flush=True)
    results, sampling, inception = [], [], []
    report = {"meta": meta, "peaks": peaks, "train": results, "sampling": sampling, "inception": inception}
    tmp = tempfile.TemporaryDirectory(prefix="ganforge-bench-")
    try:
        for preset in args.presets.split(","):
            path = config_dir / PRESETS.get(preset, preset)
            if not path.is_file():
                print(f"# skip {preset}: no config {path}", flush=True)
                continue
            rows = _bench_preset(preset, path, modes, device, args, iters, rounds, warmup, peaks, Path(tmp.name))
            results += rows
            _print_rows(rows)
            if args.sampling != 0 and rows:
                n = args.sampling if args.sampling > 0 else (32768 if kind == "cuda" else 1024)
                sampling += _bench_sampling(preset, path, device, args, n)
            _write_json(args.json, report)
    finally:
        tmp.cleanup()
    if args.inception != 0:
        n = args.inception if args.inception > 0 else (4096 if kind == "cuda" else 128)
        inception += _bench_inception(device, n)
    for s in sampling + inception:
        print(f"# {s['what']:<40} {s['images_per_s']:>10.0f} images/s")
    _write_json(args.json, report)
    return report


def _default_config_dir() -> Path:
    here = Path("configs")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "configs"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _bench_preset(preset, path, modes, device, args, iters, rounds, warmup, peaks, tmp) -> list[dict]:
    import torch

    from ganforge.train.trainer import Trainer

    overrides = list(args.overrides) + ([f"train.batch_size={args.batch}"] if args.batch else [])
    base = load_preset(path, device.type, overrides, {})
    data = synthetic_dataset(base, max(8 * base.train.batch_size, 256))
    trainers, mem, flops, info = {}, {}, {}, {}
    for mode in modes:
        cfg = load_preset(path, device.type, overrides, MODES[mode])
        meter = _Memory(device)
        meter.start()
        try:
            t = Trainer(cfg, tmp / f"{preset}-{mode}", dataset=data)
            for _ in range(warmup):
                t.train_step()
        except Exception as exc:  # a mode this device cannot run (e.g. fp16 on CPU)
            print(f"# {preset} {mode}: not run ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})", flush=True)
            continue
        _sync(device)
        mem[mode] = meter.peak_mib()
        trainers[mode] = t
        info[mode] = describe(t)
        # FLOPs are a property of the algorithm: count them on an eager copy of the mode.
        probe_mode = dict(MODES[mode], cuda_graphs=False, compile=False)
        probe = Trainer(load_preset(path, device.type, overrides, probe_mode), tmp / f"{preset}-{mode}-flops",
                        dataset=data)
        probe.train_step()
        flops[mode] = count_flops(probe)
        del probe
    times = {m: [] for m in trainers}
    cpu_times = {m: [] for m in trainers}
    last = {}
    for _ in range(rounds):
        for mode, t in trainers.items():
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                last[mode] = t.train_step()
            _sync(device)
            times[mode].append((time.perf_counter() - t0) / iters)
            cpu_times[mode].append((time.process_time() - c0) / iters)
    # The peak again, right after the timed rounds: on a shared machine a single measurement may
    # have caught a busy moment; the best of the measurements is the machine's peak.
    for name, entry in measure_peaks(device, args.peak_size).items():
        for key, value in entry.items():
            if key != "n":
                peaks[name][key] = max(peaks[name][key], value)
    rows = []
    ref = statistics.median(times[REFERENCE]) if REFERENCE in times else None
    for mode, t in trainers.items():
        sec = statistics.median(times[mode])
        batch = t.cfg.train.batch_size
        per_iter_images = batch * t.cfg.optim.n_dis
        dtype = info[mode]["precision"]
        if device.type == "cuda" and dtype == "fp32":
            dtype = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
        peak = peaks.get(dtype, peaks.get("fp32"))["gflops"]
        achieved = flops[mode] / sec / 1e9  # NaN when the FLOPs could not be counted
        losses = {k: last[mode].get(k) for k in ("d_loss", "g_loss")}
        rows.append({
            "preset": preset, "mode": mode, "settings": info[mode], "config": str(path),
            "arch": t.cfg.model.arch, "batch": batch, "n_dis": t.cfg.optim.n_dis,
            "images_per_s": per_iter_images / sec, "ms_per_iter": sec * 1e3,
            "ms_per_iter_min": min(times[mode]) * 1e3,
            "ms_per_iter_rounds": [x * 1e3 for x in times[mode]],
            "cpu_ms_per_iter": statistics.median(cpu_times[mode]) * 1e3,
            "flops_per_iter": flops[mode], "gflops_achieved": achieved,
            "peak_dtype": dtype, "peak_gflops": peak, "fraction_of_peak": achieved / peak,
            "memory_mib": mem[mode],
            "speedup_vs_reference": (ref / sec) if ref else None,
            # Round by round (neighbouring measurements), then the median: robust to load that drifts.
            "speedup_vs_reference_paired": statistics.median(
                a / b for a, b in zip(times[REFERENCE], times[mode])) if ref else None,
            "last_losses": losses,
            "finite": all(v is not None and math.isfinite(v) for v in losses.values()),
        })
    return rows


def _print_rows(rows: list[dict]) -> None:
    head = (f"{'preset':<11} {'mode':<20} {'prec':<5} {'img/s':>8} {'ms/it':>8} {'x ref':>6} "
            f"{'GFLOP/it':>9} {'GFLOP/s':>8} {'%peak':>6} {'mem MiB':>8}")
    print(head)
    for r in rows:
        x = f"{r['speedup_vs_reference_paired']:.2f}" if r["speedup_vs_reference_paired"] else "-"
        print(f"{r['preset']:<11} {r['mode']:<20} {r['settings']['precision']:<5} {r['images_per_s']:>8.0f} "
              f"{r['ms_per_iter']:>8.2f} {x:>6} {r['flops_per_iter'] / 1e9:>9.2f} {r['gflops_achieved']:>8.1f} "
              f"{100 * r['fraction_of_peak']:>5.1f}% {r['memory_mib']['delta']:>8.0f}"
              + ("" if r["finite"] else "  NON-FINITE"), flush=True)


def _bench_sampling(preset, path, device, args, n: int) -> list[dict]:
    """images/s of ganforge.sampling.generate (G in eval mode), fp32 and bf16 autocast."""
    import torch

    from ganforge.models import build_models
    from ganforge.sampling import generate

    cfg = load_preset(path, device.type, list(args.overrides), {})
    if cfg.model.arch == "inpaint":
        return []
    G, _ = build_models(cfg)
    G = G.to(device).eval().requires_grad_(False)
    out = []
    batch = 1024 if device.type == "cuda" else 256
    for prec in ("fp32", "bf16"):
        ctx = (torch.autocast(device.type, dtype=torch.bfloat16) if prec == "bf16" else contextlib.nullcontext())
        with ctx:
            for _ in generate(G, cfg, batch, batch_size=batch, device=device):
                pass
            _sync(device)
            best = math.inf
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in generate(G, cfg, n, batch_size=batch, device=device):
                    pass
                _sync(device)
                best = min(best, time.perf_counter() - t0)
        out.append({"what": f"sample {preset} {prec} batch {batch}", "preset": preset, "precision": prec,
                    "batch": batch, "n": n, "images_per_s": n / best})
    return out


def _bench_inception(device, n: int) -> list[dict]:
    """images/s of the FID Inception feature extractor on 28x28 uint8 input, when its weights are installed."""
    import torch

    try:
        from ganforge.metrics.inception import InceptionFeatures
    except ImportError:
        return []
    out = []
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    for prec in ("fp32", "bf16"):
        try:
            model = InceptionFeatures(device=device, precision=prec, batch_size=200 if device.type == "cuda" else 64)
        except Exception as exc:  # weights not installed
            print(f"# inception: not run ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
            return out
        model.extract(images[: model.batch_size])
        _sync(device)
        t0 = time.perf_counter()
        model.extract(images)
        _sync(device)
        out.append({"what": f"inception {prec} batch {model.batch_size}", "precision": prec,
                    "batch": model.batch_size, "n": n, "images_per_s": n / (time.perf_counter() - t0)})
        del model
    return out


def main(argv: list[str] | None = None) -> int:
    from ganforge.cli import OneLineErrorParser

    parser = OneLineErrorParser(prog="train_throughput", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except GanforgeError as exc:
        print(f"train_throughput: {exc}", file=sys.stderr)
        return 2
