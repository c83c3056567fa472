"""Training throughput: build each mode's trainer, count its FLOPs, time interleaved rounds, make the rows.

One iteration is a full ``Trainer.train_step()``: every D step and the G step,
optimizer included. Modes are timed interleaved, round after round, so load
that comes and goes on a shared machine slows all of them alike.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ganforge.perf.machine import sync
from ganforge.perf.memory import MemoryMeter
from ganforge.perf.exec_modes import MODES, REFERENCE, describe
from ganforge.perf.bench_presets import load_preset, synthetic_dataset


@dataclass
class ModeRun:
    """One mode of one preset: its warmed-up trainer and what was measured on it."""

    mode: str
    trainer: Any
    settings: dict  # describe(trainer): what actually runs
    memory_mib: dict
    flops: float  # per iteration; NaN when they could not be counted
    times: list[float] = field(default_factory=list)  # wall seconds per iteration, one per round
    cpu_times: list[float] = field(default_factory=list)
    last: dict = field(default_factory=dict)  # the last iteration's logged values


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


def build_modes(preset: str, path: Path, modes: list[str], device, overrides: list[str], warmup: int,
                tmp: Path, say: Callable[[str], None]) -> list[ModeRun]:
    """A warmed-up trainer per mode, on shared synthetic data; modes the device cannot run are reported and left out."""
    from ganforge.train.trainer import Trainer

    base = load_preset(path, device.type, overrides, {})
    data = synthetic_dataset(base, max(8 * base.train.batch_size, 256))
    runs = []
    for mode in modes:
        t0 = time.perf_counter()
        cfg = load_preset(path, device.type, overrides, MODES[mode])
        meter = MemoryMeter(device)
        meter.start()
        try:
            trainer = Trainer(cfg, tmp / f"{preset}-{mode}", dataset=data)
            for _ in range(warmup):
                trainer.train_step()
        except Exception as exc:  # a mode this device cannot run (e.g. fp16 on CPU)
            say(f"{preset} {mode}: not run ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            continue
        sync(device)
        memory = meter.peak_mib()
        # FLOPs are a property of the algorithm: count them on an eager copy of the mode.
        probe_mode = dict(MODES[mode], cuda_graphs=False, compile=False)
        probe = Trainer(load_preset(path, device.type, overrides, probe_mode), tmp / f"{preset}-{mode}-flops",
                        dataset=data)
        probe.train_step()
        flops = count_flops(probe)
        del probe
        run = ModeRun(mode, trainer, describe(trainer), memory, flops)
        runs.append(run)
        say(f"{preset} {mode}: ready ({run.settings['precision']}, {warmup} warm-up iterations, "
            f"{flops / 1e9:.2f} GFLOP/iteration) in {time.perf_counter() - t0:.1f} s")
    return runs


def time_rounds(preset: str, runs: list[ModeRun], device, iters: int, rounds: int,
                say: Callable[[str], None]) -> None:
    """``rounds`` rounds of ``iters`` iterations per mode, modes interleaved; appends to each run's times."""
    for r in range(rounds):
        for run in runs:
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                run.last = run.trainer.train_step()
            sync(device)
            run.times.append((time.perf_counter() - t0) / iters)
            run.cpu_times.append((time.process_time() - c0) / iters)
        say(f"{preset} round {r + 1}/{rounds}: "
            + ", ".join(f"{run.mode} {run.times[-1] * 1e3:.1f} ms/it" for run in runs))


def peak_dtype(settings: dict, device) -> str:
    """The dtype whose matmul peak a mode is compared with (fp32 on CUDA means TF32 when cuDNN allows it)."""
    import torch

    dtype = settings["precision"]
    if device.type == "cuda" and dtype == "fp32":
        dtype = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return dtype


def make_rows(preset: str, path: Path, runs: list[ModeRun], device, peaks: dict[str, dict],
              native: tuple[str, ...]) -> list[dict]:
    """One JSON row per timed mode; ratios against the reference mode when it ran."""
    by_mode = {run.mode: run for run in runs}
    ref_run = by_mode.get(REFERENCE)
    ref = statistics.median(ref_run.times) if ref_run else None
    rows = []
    for run in runs:
        t = run.trainer
        sec = statistics.median(run.times)
        batch = t.cfg.train.batch_size
        per_iter_images = batch * t.cfg.optim.n_dis
        dtype = peak_dtype(run.settings, device)
        if dtype not in peaks:  # not measured: compare with what the machine does in fp32
            dtype = "fp32"
        peak = peaks[dtype]["gflops"]
        achieved = run.flops / sec / 1e9  # NaN when the FLOPs could not be counted
        losses = {k: run.last.get(k) for k in ("d_loss", "g_loss")}
        rows.append({
            "preset": preset, "mode": run.mode, "settings": run.settings, "config": str(path),
            "arch": t.cfg.model.arch, "batch": batch, "n_dis": t.cfg.optim.n_dis,
            "images_per_s": per_iter_images / sec, "ms_per_iter": sec * 1e3,
            "ms_per_iter_min": min(run.times) * 1e3,
            "ms_per_iter_rounds": [x * 1e3 for x in run.times],
            "cpu_ms_per_iter": statistics.median(run.cpu_times) * 1e3,
            "flops_per_iter": run.flops, "gflops_achieved": achieved,
            "peak_dtype": dtype, "peak_gflops": peak, "fraction_of_peak": achieved / peak,
            # True when the mode computes in a dtype this hardware only emulates (bf16 without AVX-512 BF16).
            "emulated": run.settings["precision"] not in native,
            "memory_mib": run.memory_mib,
            "speedup_vs_reference": (ref / sec) if ref else None,
            # Round by round (neighbouring measurements), then the median: robust to load that drifts.
            "speedup_vs_reference_paired": statistics.median(
                a / b for a, b in zip(ref_run.times, run.times)) if ref else None,
            "last_losses": losses,
            "finite": all(v is not None and math.isfinite(v) for v in losses.values()),
        })
    return rows
