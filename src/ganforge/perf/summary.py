"""What the harness prints (a table per preset, ``#`` lines for the rest) and the JSON it writes."""

from __future__ import annotations

import json
from pathlib import Path


def say(message: str) -> None:
    """A progress or context line, flushed at once so a long run shows where it is."""
    print(f"# {message}", flush=True)


def peaks_line(peaks: dict[str, dict], native: tuple[str, ...], kind: str) -> str:
    """The measured matmul peaks, emulated dtypes marked, dtypes left out named."""
    parts = []
    for name, entry in peaks.items():
        rate = entry["gflops"]
        text = f"{name} {rate:.0f}" if rate >= 10 else f"{name} {rate:.2g}"
        if not entry.get("native", True):
            text += f" (emulated, {entry['n']}x{entry['n']})"
        parts.append(text)
    line = "matmul peak GFLOP/s (re-measured after each preset, best kept): " + ", ".join(parts)
    if "bf16" not in native:
        line += f"\n# no native bf16 on this {'GPU' if kind == 'cuda' else 'CPU'}: bf16 modes are not run by default"
    return line


def print_rows(rows: list[dict]) -> None:
    """The training table of one preset; ``x ref`` is the per-round paired ratio to the reference mode."""
    head = (f"{'preset':<11} {'mode':<20} {'prec':<5} {'img/s':>8} {'ms/it':>8} {'x ref':>6} "
            f"{'GFLOP/it':>9} {'GFLOP/s':>8} {'%peak':>6} {'mem MiB':>8}")
    print(head)
    for r in rows:
        x = f"{r['speedup_vs_reference_paired']:.2f}" if r["speedup_vs_reference_paired"] else "-"
        prec = r["settings"]["precision"] + ("*" if r.get("emulated") else "")
        print(f"{r['preset']:<11} {r['mode']:<20} {prec:<5} {r['images_per_s']:>8.0f} "
              f"{r['ms_per_iter']:>8.2f} {x:>6} {r['flops_per_iter'] / 1e9:>9.2f} {r['gflops_achieved']:>8.1f} "
              f"{100 * r['fraction_of_peak']:>5.1f}% {r['memory_mib']['delta']:>8.0f}"
              + ("" if r["finite"] else "  NON-FINITE"), flush=True)
    if any(r.get("emulated") for r in rows):
        print("# * emulated: this hardware has no native arithmetic in that dtype", flush=True)


def print_throughput(entries: list[dict]) -> None:
    """Sampling and Inception-extraction rates, one line each."""
    for s in entries:
        print(f"# {s['what']:<40} {s['images_per_s']:>10.0f} images/s", flush=True)


def write_json(path: str | None, results: dict) -> None:
    """Write (or rewrite) the results file; called after every preset, so a cut-short run keeps its numbers."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=1), encoding="utf-8")
