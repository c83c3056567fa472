"""``build_report(run_dir)``: the figures, sample strip and HTML page of one run."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganforge import safe_yaml
from ganforge.errors import ConfigError, GanforgeError
from ganforge.report import inputs
from ganforge.report.history import History, read_history
from ganforge.report.outputs import check_out_dir, write_text
from ganforge.report.page import PageInfo, render_page
from ganforge.report.grids import sample_grids, write_animation, write_strip
from ganforge.report.specs import MAX_EVAL_PANELS, MAX_OTHER_KEYS, FigureSpec, figure_specs, omitted

_CKPT = re.compile(r"step_(\d+)$")


@dataclass
class Report:
    """What :func:`build_report` wrote: ``page`` (index.html) and the files beside it.

    ``warnings``: one line per run file the report could not read and skipped (``path: reason``).
    """

    page: Path
    history: History
    specs: list[FigureSpec]  # the data behind each figure, in page order
    figures: dict[str, Path]  # spec name -> PNG
    strip_steps: list[int]
    animation_steps: list[int]
    warnings: list[str] = field(default_factory=list)


def _read_json(path: Path, root: Path, notes: dict[str, str]) -> dict | None:
    if not os.path.lexists(path):
        return None
    try:
        data = inputs.read_json(path, root)
    except inputs.Unreadable as exc:
        notes[str(path)] = str(exc)
        return None
    if not isinstance(data, dict):
        notes[str(path)] = "not a JSON object"
        return None
    return data


def _complete_checkpoints(run_dir: Path) -> list[int]:
    """Steps of the finished checkpoints (a checkpoint's manifest is written last)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    try:
        return sorted(int(m.group(1)) for p in root.iterdir()
                      if (m := _CKPT.fullmatch(p.name)) and (p / "manifest.json").is_file())
    except OSError:
        return []


def _config(run_dir: Path, notes: dict[str, str]) -> tuple[str | None, int | None]:
    """The resolved config's text and ``train.steps`` (read as plain YAML: a report never refuses a run)."""
    path = run_dir / "config.yaml"
    if not os.path.lexists(path):
        return None, None
    try:
        text = inputs.read_text(path, run_dir)
    except inputs.Unreadable as exc:
        notes[str(path)] = str(exc)
        return None, None
    try:
        data = safe_yaml.load(text, str(path))
        steps = (data or {}).get("train", {}).get("steps")
    except (yaml.YAMLError, AttributeError, GanforgeError):
        steps = None
    return text, steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def _is_run(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(os.path.lexists(run_dir / name) for name in ("config.yaml", "metrics.jsonl"))


def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 animation: bool = True) -> Report:
    """Write ``out_dir/index.html`` (default ``RUN/report/``) with its figures beside it.

    Works on a run still training (a torn last line or a grid being written is
    skipped) and on resumed or rolled-back runs (see :mod:`ganforge.report.history`).
    A file of the run that cannot be read within the bounds of
    :mod:`ganforge.report.inputs` is skipped and named in ``Report.warnings``.
    Raises :class:`ConfigError` when ``run_dir`` is not a run, the output folder
    cannot take the report or matplotlib is missing (all before anything is
    written), and :class:`DataError` naming the file when a write fails.
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not _is_run(run_dir):
        raise ConfigError(run_dir, "not a run directory (no config.yaml or metrics.jsonl)")
    from ganforge.report import plot

    plot.require_matplotlib()  # fail before writing anything
    out = check_out_dir(Path(out_dir) if out_dir is not None else run_dir / "report", "--out",
                        default=out_dir is None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--out", f"cannot create {out} ({exc.strerror or type(exc).__name__})") from None

    notes: dict[str, str] = {}
    history = read_history(metrics, run_dir)
    if history.unreadable:
        notes[str(metrics)] = history.unreadable
    elif history.truncated:
        notes[str(metrics)] = f"read the first {inputs.MAX_METRICS_BYTES >> 20} MiB only"
    specs = figure_specs(history)
    figures = {spec.name: plot.save(spec, out) for spec in specs}
    grids = sample_grids(run_dir)
    strip_steps = write_strip(grids, out / "samples.png", root=run_dir, notes=notes) if grids else []
    anim_steps = (write_animation(grids, out / "samples.gif", root=run_dir, notes=notes)
                  if grids and animation and len(grids) > 1 else [])

    config_text, total = _config(run_dir, notes)
    info = PageInfo(run_dir=run_dir, config_text=config_text, total_steps=total,
                    execution=_read_json(run_dir / "execution.json", run_dir, notes),
                    best=_read_json(run_dir / "checkpoints" / "best" / "best.json", run_dir, notes),
                    checkpoints=_complete_checkpoints(run_dir),
                    figures=[(s.title, figures[s.name].name) for s in specs],
                    strip="samples.png" if strip_steps else None, strip_steps=strip_steps,
                    animation="samples.gif" if anim_steps else None, n_grids=len(grids),
                    metrics_mtime=_mtime(metrics), omitted=omitted(history),
                    caps=(MAX_OTHER_KEYS, MAX_EVAL_PANELS),
                    skipped=[f"{_relative(p, run_dir)}: {why}" for p, why in notes.items()])
    page = write_text(out / "index.html", render_page(history, info))  # a refreshing browser never sees half
    return Report(page, history, specs, figures, strip_steps, anim_steps,
                  [f"{p}: {why}" for p, why in notes.items()])


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime if path.is_file() else None
    except OSError:
        return None


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
