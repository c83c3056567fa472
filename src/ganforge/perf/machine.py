"""The machine under test: its name, the dtypes it computes natively, and its dense matmul peaks."""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

# dtype name -> (torch dtype name, allow TF32) for the peak measurement.
_KINDS = {"fp32": ("float32", False), "tf32": ("float32", True), "bf16": ("bfloat16", False),
          "fp16": ("float16", False)}
MEASURABLE = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "bf16", "fp16")}
PEAK_SECONDS = 2.0  # default time budget of one dtype's measurement
EMULATED_SIZE = 256  # matrix size for a dtype the hardware only emulates: a 2048² bf16 product takes minutes


def sync(device) -> None:
    """Wait for queued CUDA work, so wall-clock intervals cover it; a no-op on CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def native_dtypes(device) -> tuple[str, ...]:
    """The matmul dtypes ``device`` computes in hardware (others run emulated, if at all).

    bf16 is native on CPUs with AVX-512 BF16 or AMX (read from the CPU's flags, see
    :mod:`ganforge.cpu_features`: plain AVX-512 only emulates it) and on CUDA devices of
    compute capability 8.0 and later: the same checks that make ``precision: auto`` pick it.
    """
    # Looked up through the module so that tests can force the capability off.
    from ganforge.train import precision

    if device.type == "cuda":
        bf16 = precision.cuda_supports_bf16(device)
        return ("fp32", "tf32", "bf16", "fp16") if bf16 else ("fp32", "tf32", "fp16")
    return ("fp32", "bf16") if precision.cpu_supports_bf16() else ("fp32",)


def measure_peaks(device, size: int = 0, dtypes=None, budget_s: float = PEAK_SECONDS) -> dict[str, dict]:
    """Best dense matmul rates on this machine, per dtype.

    Args:
        device: ``torch.device``.
        size: matrix size ``n`` of the ``(n, n) @ (n, n)`` product (default 2048 CPU, 8192 CUDA).
        dtypes: names among ``fp32, tf32, bf16, fp16`` (default: the native ones). Dtypes the
            device cannot compute natively are measured on ``min(size, 256)`` matrices.
        budget_s: time budget per dtype; repetitions stop once it is spent (the budget is
            exceeded by at most one product, and at least one product is timed).

    Returns:
        ``{dtype: {"gflops", "n", "reps", "native"}}`` plus ``"gflops_per_cpu_second"`` on CPU;
        the rate is the best (shortest) repetition's, wall clock.
    """
    import torch

    kind = "cuda" if device.type == "cuda" else "cpu"
    native = native_dtypes(device)
    n_default, reps = (size or 8192, 20) if kind == "cuda" else (size or 2048, 6)
    out = {}
    for name in dtypes if dtypes is not None else native:
        if name not in MEASURABLE[kind]:
            continue
        n = n_default if name in native else min(n_default, EMULATED_SIZE)
        dtype_name, tf32 = _KINDS[name]
        a = torch.randn(n, n, device=device).to(getattr(torch, dtype_name))
        b = torch.randn(n, n, device=device).to(getattr(torch, dtype_name))
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            wall, cpu = _time_products(a, b, device, reps, budget_s)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        flops = 2.0 * n**3
        entry = {"gflops": flops / min(wall) / 1e9, "n": n, "reps": len(wall), "native": name in native}
        if kind == "cpu":
            entry["gflops_per_cpu_second"] = flops / max(min(cpu), 1e-9) / 1e9
        out[name] = entry
        del a, b
    return out


def _time_products(a, b, device, reps: int, budget_s: float) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of up to ``reps`` products ``a @ b`` after warm-up, within ``budget_s``."""
    start = time.perf_counter()
    for _ in range(2):  # warm-up: first-call allocation and kernel selection
        a @ b
        sync(device)
        if time.perf_counter() - start > budget_s / 2:
            break  # a slow product: the rest of the budget goes to timed repetitions
    wall, cpu = [], []
    while len(wall) < reps and (not wall or time.perf_counter() - start < budget_s):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def keep_best(peaks: dict[str, dict], again: dict[str, dict]) -> None:
    """Fold a later measurement into ``peaks``: the best rate per dtype is the machine's peak.

    On a shared machine one measurement may have caught a busy moment.
    """
    for name, entry in again.items():
        if name not in peaks:
            peaks[name] = dict(entry)
            continue
        for key in ("gflops", "gflops_per_cpu_second"):
            if key in entry:
                peaks[name][key] = max(peaks[name].get(key, -math.inf), entry[key])
        peaks[name]["reps"] = peaks[name].get("reps", 0) + entry.get("reps", 0)
