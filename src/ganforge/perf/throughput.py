"""Inference throughput: sampling a preset's generator, and the FID Inception feature extractor.

Both are measured in fp32 and, where the hardware computes bf16 natively, in
bf16 autocast; an emulated bf16 measurement would take minutes and say nothing
useful.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable

from ganforge.perf.machine import sync
from ganforge.perf.bench_presets import load_preset


def _precisions(native: tuple[str, ...], what: str, say: Callable[[str], None]) -> tuple[str, ...]:
    if "bf16" in native:
        return ("fp32", "bf16")
    say(f"{what} bf16: skipped (no native bf16 on this device)")
    return ("fp32",)


def bench_sampling(preset: str, path: Path, device, overrides: list[str], n: int, native: tuple[str, ...],
                   say: Callable[[str], None]) -> list[dict]:
    """images/s of :func:`ganforge.sampling.generate` (G in eval mode) for ``n`` images, best of 3."""
    import torch

    from ganforge.models import build_models
    from ganforge.sampling import generate
    from ganforge.tasks import task_class

    cfg = load_preset(path, device.type, list(overrides), {})
    if not task_class(cfg).from_noise:  # image-to-image tasks have no sampling to time
        return []
    G, _ = build_models(cfg)
    G = G.to(device).eval().requires_grad_(False)
    out = []
    batch = 1024 if device.type == "cuda" else 256
    for prec in _precisions(native, f"sample {preset}", say):
        ctx = (torch.autocast(device.type, dtype=torch.bfloat16) if prec == "bf16" else contextlib.nullcontext())
        with ctx:
            for _ in generate(G, cfg, batch, batch_size=batch, device=device):
                pass
            sync(device)
            best = math.inf
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in generate(G, cfg, n, batch_size=batch, device=device):
                    pass
                sync(device)
                best = min(best, time.perf_counter() - t0)
        out.append({"what": f"sample {preset} {prec} batch {batch}", "preset": preset, "precision": prec,
                    "batch": batch, "n": n, "images_per_s": n / best})
    return out


def bench_inception(device, n: int, native: tuple[str, ...], say: Callable[[str], None]) -> list[dict]:
    """images/s of the FID Inception extractor on ``n`` 28x28 uint8 images, when its weights are installed."""
    import torch

    try:
        from ganforge.metrics.inception import InceptionFeatures
    except ImportError:
        return []
    out = []
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    for prec in _precisions(native, "inception", say):
        try:
            model = InceptionFeatures(device=device, precision=prec, batch_size=200 if device.type == "cuda" else 64)
        except Exception as exc:  # weights not installed
            say(f"inception: not run ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
            return out
        model.extract(images[: model.batch_size])
        sync(device)
        t0 = time.perf_counter()
        model.extract(images)
        sync(device)
        out.append({"what": f"inception {prec} batch {model.batch_size}", "precision": prec,
                    "batch": model.batch_size, "n": n, "images_per_s": n / (time.perf_counter() - t0)})
        del model
    return out
