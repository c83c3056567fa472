"""Markdown tables from ``ganforge eval-inpaint --json`` results (one file per held-out set).

For each mask family and comod bucket, one row per method with hole L1, hole PSNR,
hole SSIM, FID, U-IDS, P-IDS and the perceptual distance IPD (where the results have
it), and a last column saying whether ganforge wins the row's goal metrics against
every classical method:

    python benchmarks/inpaint_table.py photos-test.json skimage-photos.json
    python benchmarks/inpaint_table.py --compact photos-test.json   # ganforge / best classical per metric (bold: ganforge wins)
"""

from __future__ import annotations

import json
import sys

LOWER = ("l1_hole", "fid", "ipd")  # lower is better; the rest higher


def _value(metrics: dict, prefix: str):
    for k, v in metrics.items():
        if k == prefix or k.startswith(prefix) and k[len(prefix):len(prefix) + 1].isdigit():
            return v
    return None


def _label(e: dict) -> str:
    if e["masks"] == "comod":
        lo, hi = e["hole_range"]
        return f"comod ({lo:g}, {hi:g}{')' if hi >= 1 else ']'}"
    return e["masks"]


def table(doc: dict) -> str:
    evals = doc["evaluations"] if "evaluations" in doc else [doc]
    head = "| masks (mean hole) | method | L1 hole | PSNR hole | SSIM hole | FID | U-IDS | P-IDS | IPD |"
    lines = [f"{evals[0]['dataset']} ({evals[0]['split']}), n={evals[0]['n']}, step {evals[0]['step']}", "",
             head, "|" + "---|" * 9]
    for e in evals:
        for method, m in e["results"].items():
            cells = [_value(m, "l1_hole"), _value(m, "psnr_hole"), _value(m, "ssim_hole"),
                     _value(m, "fid"), _value(m, "uids"), _value(m, "pids"), _value(m, "ipd")]
            shown = ["-" if v is None else (f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}") for v in cells]
            name = f"**{method}**" if method == "ganforge" else method
            lines.append(f"| {_label(e)} ({e['mean_hole_fraction']:.2f}) | {name} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def wins(doc: dict) -> list[str]:
    """Per row: each goal metric and whether ganforge beats the best classical method on it."""
    evals = doc["evaluations"] if "evaluations" in doc else [doc]
    out = []
    for e in evals:
        ours = e["results"]["ganforge"]
        others = {k: v for k, v in e["results"].items() if k != "ganforge"}
        verdicts = []
        for metric in ("l1_hole", "fid", "uids", "pids", "ipd"):
            v = _value(ours, metric)
            rivals = [_value(m, metric) for m in others.values()]
            if v is None or None in rivals or not rivals:
                continue
            best = min(rivals) if metric in LOWER else max(rivals)
            ok = v < best if metric in LOWER else v > best
            verdicts.append(f"{metric} {'win' if ok else 'LOSS'} ({v:.4g} vs {best:.4g})")
        out.append(f"{_label(e)}: " + ", ".join(verdicts))
    return out


def compact(doc: dict) -> str:
    """One row per mask family / bucket: ganforge and the best classical method on each metric."""
    evals = doc["evaluations"] if "evaluations" in doc else [doc]
    names = {"l1_hole": "L1 hole", "fid": "FID", "uids": "U-IDS", "pids": "P-IDS", "ipd": "IPD"}
    head = "| masks (mean hole) | " + " | ".join(f"{v}: ganforge / best classical" for v in names.values()) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    short = {"navier-stokes": "NS", "biharmonic": "bih", "telea": "Telea"}
    for e in evals:
        ours = e["results"]["ganforge"]
        cells = []
        for metric in names:
            v = _value(ours, metric)
            rivals = {k: _value(m, metric) for k, m in e["results"].items() if k != "ganforge"}
            if v is None or None in rivals.values():
                cells.append("-")
                continue
            pick = min if metric in LOWER else max
            best = pick(rivals, key=rivals.get)
            ok = v < rivals[best] if metric in LOWER else v > rivals[best]
            fmt = (lambda x: f"{x:.4f}") if metric in ("l1_hole", "ipd") else (lambda x: f"{x:.1f}") \
                if metric == "fid" else (lambda x: f"{x:.3f}")
            mine = f"**{fmt(v)}**" if ok else fmt(v)
            cells.append(f"{mine} / {fmt(rivals[best])} {short.get(best, best)}")
        lines.append(f"| {_label(e)} ({e['mean_hole_fraction']:.2f}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(paths: list[str]) -> int:
    brief = "--compact" in paths
    for path in [p for p in paths if p != "--compact"]:
        doc = json.loads(open(path).read())
        if brief:
            print(compact(doc))
        else:
            print(table(doc))
            print()
            print("\n".join(wins(doc)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
