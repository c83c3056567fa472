"""``build_report(run_dir)``: the figures, sample strip and HTML page of one run."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ganforge.errors import ConfigError
from ganforge.report.history import History, read_history
from ganforge.report.page import PageInfo, render_page
from ganforge.report.grids import sample_grids, write_animation, write_strip
from ganforge.report.specs import FigureSpec, figure_specs

_CKPT = re.compile(r"step_(\d+)$")


@dataclass
class Report:
    """What :func:`build_report` wrote: ``page`` (index.html) and the files beside it."""

    page: Path
    history: History
    specs: list[FigureSpec]  # the data behind each figure, in page order
    figures: dict[str, Path]  # spec name -> PNG
    strip_steps: list[int]
    animation_steps: list[int]


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _complete_checkpoints(run_dir: Path) -> list[int]:
    """Steps of the finished checkpoints (a checkpoint's manifest is written last)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir()
                  if (m := _CKPT.fullmatch(p.name)) and (p / "manifest.json").is_file())


def _config(run_dir: Path) -> tuple[str | None, int | None]:
    """The resolved config's text and ``train.steps`` (read as plain YAML: a report never refuses a run)."""
    try:
        text = (run_dir / "config.yaml").read_text(encoding="utf-8")
    except OSError:
        return None, None
    try:
        steps = (yaml.safe_load(text) or {}).get("train", {}).get("steps")
    except (yaml.YAMLError, AttributeError):
        steps = None
    return text, steps if isinstance(steps, int) else None


def _write_atomic(path: Path, text: str) -> None:
    """A browser refreshing the page never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 animation: bool = True) -> Report:
    """Write ``out_dir/index.html`` (default ``RUN/report/``) with its figures beside it.

    Works on a run still training (a torn last line or a grid being written is
    skipped) and on resumed or rolled-back runs (see :mod:`ganforge.report.history`).
    Raises :class:`ConfigError` when ``run_dir`` is not a run or matplotlib is missing.
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not run_dir.is_dir() or not ((run_dir / "config.yaml").is_file() or metrics.is_file()):
        raise ConfigError(run_dir, "not a run directory (no config.yaml or metrics.jsonl)")
    from ganforge.report import plot

    plot.require_matplotlib()  # fail before writing anything
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)

    history = read_history(metrics)
    specs = figure_specs(history)
    figures = {spec.name: plot.save(spec, out) for spec in specs}
    grids = sample_grids(run_dir)
    strip_steps = write_strip(grids, out / "samples.png") if grids else []
    anim_steps = write_animation(grids, out / "samples.gif") if grids and animation and len(grids) > 1 else []

    config_text, total = _config(run_dir)
    info = PageInfo(run_dir=run_dir, config_text=config_text, total_steps=total,
                    execution=_read_json(run_dir / "execution.json"),
                    best=_read_json(run_dir / "checkpoints" / "best" / "best.json"),
                    checkpoints=_complete_checkpoints(run_dir),
                    figures=[(s.title, figures[s.name].name) for s in specs],
                    strip="samples.png" if strip_steps else None, strip_steps=strip_steps,
                    animation="samples.gif" if anim_steps else None, n_grids=len(grids),
                    metrics_mtime=metrics.stat().st_mtime if metrics.is_file() else None)
    page = out / "index.html"
    _write_atomic(page, render_page(history, info))
    return Report(page, history, specs, figures, strip_steps, anim_steps)
