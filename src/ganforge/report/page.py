"""The report's HTML: one page, inline CSS, no scripts, figures referenced as PNG files beside it."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from ganforge.report.history import EVAL_META_KEYS, History, metric_value

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;
color:#222;padding:0 12px}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:2em}
.sub{color:#666;margin-top:4px}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:.85em}
.note{color:#a60}
"""
MAX_TABLE_KEYS = 40  # columns of an evaluation table
MAX_LISTED = 50  # names listed in a note


@dataclass
class PageInfo:
    """Everything the page shows besides the history: files are relative to the page."""

    run_dir: Path
    config_text: str | None = None
    total_steps: int | None = None
    execution: dict | None = None
    best: dict | None = None
    checkpoints: list[int] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (title, file)
    strip: str | None = None
    strip_steps: list[int] = field(default_factory=list)
    animation: str | None = None
    n_grids: int = 0
    metrics_mtime: float | None = None
    omitted: list[str] = field(default_factory=list)  # metric names past the caps, not plotted
    caps: tuple[int, int] = (0, 0)  # (other training scalars, evaluation metrics) plotted at most
    skipped: list[str] = field(default_factory=list)  # "file: reason" of run files that could not be read


def fmt(v) -> str:
    """A value for a table cell: floats to 4 significant digits, ``[mean, std]`` as mean ± std."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]:.4g} ± {v[1]:.2g}"
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    return str(v)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def _table(header: list[str] | None, rows: list[list]) -> str:
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(
        f'<td class="num">{escape(fmt(c))}</td>' if isinstance(c, (int, float, list)) and not isinstance(c, bool)
        else f"<td>{escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _summary(h: History, info: PageInfo) -> str:
    rows = []
    last = h.train[-1] if h.train else {}
    if last:
        of = f" of {info.total_steps}" if info.total_steps else ""
        rows.append(["generator steps", f"{last['step']}{of}"])
        for key, label in (("images_seen", "images seen"), ("skipped_steps", "skipped updates (non-finite)")):
            if key in last:
                rows.append([label, last[key]])
        if isinstance(last.get("train_seconds"), (int, float)):
            rows.append(["training time", duration(last["train_seconds"])])
        recent = [r["images_per_s"] for r in h.train[-5:] if isinstance(r.get("images_per_s"), (int, float))]
        if recent:
            rows.append(["images/s (last logs)", f"{sorted(recent)[len(recent) // 2]:.0f}"])
        for key, label in (("d_loss", "D loss"), ("g_loss", "G loss"), ("d_real", "mean D(x)"),
                           ("d_fake", "mean D(G(z))")):
            if key in last:
                rows.append([f"{label} (last)", last[key]])
    rollbacks = [e for e in h.events if e.get("event") == "rollback"]
    if rollbacks:
        rows.append(["rollbacks", len(rollbacks)])
    if info.best:
        rows.append(["best checkpoint", f"step {info.best.get('step')}: {info.best.get('metric', 'fid')} = "
                                        f"{fmt(info.best.get('value', info.best.get('fid')))} (checkpoints/best)"])
    if info.checkpoints:
        rows.append(["latest checkpoint", f"checkpoints/step_{info.checkpoints[-1]:08d}"])
    if info.metrics_mtime is not None:
        when = _dt.datetime.fromtimestamp(info.metrics_mtime).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(["last record written", when])
    if not rows:
        return "<p>No training records yet.</p>"
    out = _table(None, rows)
    if h.torn:
        out += f'<p class="note">{h.torn} unreadable line(s) in metrics.jsonl were skipped.</p>'
    return out


def _notes(info: PageInfo) -> str:
    """What the page leaves out: unreadable run files, metric names past the plotting caps."""
    out = []
    if info.skipped:
        items = "".join(f"<li>{escape(s)}</li>" for s in info.skipped)
        out.append(f'<p class="note">Run files that could not be read and were left out:</p><ul>{items}</ul>')
    if info.omitted:
        shown = ", ".join(info.omitted[:MAX_LISTED])
        more = f" and {len(info.omitted) - MAX_LISTED} more" if len(info.omitted) > MAX_LISTED else ""
        out.append(f'<p class="note">At most {info.caps[0]} other training scalars and {info.caps[1]} evaluation '
                   f'metrics are plotted; {len(info.omitted)} metric name(s) are not: {escape(shown)}{more}.</p>')
    return "".join(out)


def _eval_tables(h: History) -> str:
    gen = [r for r in h.evals if r.get("eval") != "inpaint"]
    parts = []
    if gen:
        keys = list(dict.fromkeys(k for r in gen for k, v in r.items()
                                  if k not in EVAL_META_KEYS and metric_value(v) is not None))
        if len(keys) > MAX_TABLE_KEYS:
            parts.append(f'<p class="note">The first {MAX_TABLE_KEYS} of {len(keys)} metrics are shown.</p>')
            keys = keys[:MAX_TABLE_KEYS]
        rows = [[r["step"], "ganforge eval" if "generator" in r else "during training",
                 *[r.get(k) for k in keys]] for r in gen]
        parts.append(_table(["step", "by", *keys], rows))
    for r in (r for r in h.evals if r.get("eval") == "inpaint"):
        methods: dict[str, dict] = {}
        for k, v in r.items():
            bits = k.split("/")
            if len(bits) == 3 and bits[0] == "inpaint":
                methods.setdefault(bits[1], {})[bits[2]] = v
        names = list(dict.fromkeys(m for d in methods.values() for m in d))[:MAX_TABLE_KEYS]
        desc = ", ".join(f"{k} {r[k]}" for k in ("masks", "hole_ratio", "n", "split") if k in r)
        parts.append(f"<p>Inpainting at step {r['step']} ({escape(desc)}):</p>")
        parts.append(_table(["method", *names], [[m, *[d.get(n) for n in names]] for m, d in methods.items()]))
    return "".join(parts)


def _execution(execution: dict) -> str:
    """The resolved execution plan: ``{switch: value}`` or ``{switch: {"value": v, "reason": r}}``."""
    rows = []
    for key, v in execution.items():
        if isinstance(v, dict) and ("value" in v or "reason" in v):
            rows.append([key, json.dumps(v.get("value")), v.get("reason", "")])
        else:
            rows.append([key, v if isinstance(v, str) else json.dumps(v), ""])
    return _table(["setting", "value", "why"], rows)


def render_page(h: History, info: PageInfo) -> str:
    """The whole HTML document."""
    name = info.run_dir.resolve().name
    made = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(name)}: ganforge report</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>{escape(name)}</h1><p class='sub'>{escape(str(info.run_dir))} · report made {made}</p>",
           "<h2>Summary</h2>", _summary(h, info), _notes(info)]
    for title, file in info.figures:
        out.append(f"<h2>{escape(title)}</h2><img src='{escape(file)}' alt='{escape(title)}'>")
    if h.evals:
        out += ["<h2>Evaluation results</h2>", _eval_tables(h)]
    if info.strip or info.animation:
        out.append(f"<h2>Samples over training</h2><p>{info.n_grids} fixed-noise grids in samples/; ")
        out.append(f"steps shown: {', '.join(map(str, info.strip_steps))}.</p>" if info.strip_steps else "</p>")
        if info.strip:
            out.append(f"<img src='{escape(info.strip)}' alt='sample grids over training'>")
        if info.animation:
            out.append(f"<p>Animation:</p><img src='{escape(info.animation)}' alt='sample grids, animated'>")
    rollbacks = [e for e in h.events if e.get("event") == "rollback"]
    if rollbacks:
        out += ["<h2>Rollbacks</h2>", _table(["to step", "from step", "learning rate G after"],
                                             [[e["step"], e.get("from_step"), e.get("lr_g")] for e in rollbacks])]
    if info.execution:
        out += ["<h2>Execution settings</h2>", _execution(info.execution)]
    if info.config_text is not None:
        out += ["<h2>Resolved config</h2>", f"<pre>{escape(info.config_text)}</pre>"]
    out.append("</body></html>\n")
    return "\n".join(out)
