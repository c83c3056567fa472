"""What each report figure shows, as plain data (the plotting is in :mod:`ganforge.report.plot`).

Keeping the data behind a figure separate from matplotlib makes it testable
(how many points, which steps) and keeps this module importable without the
``report`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ganforge.report.history import History

STEP, SECONDS = "generator step", "training seconds"
# Training keys with a figure of their own; every other numeric key goes to "other training scalars".
KNOWN_TRAIN_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "images_per_s", "skipped_steps",
                    "images_seen", "train_seconds")
# Each name is two panels; a run logging thousands of names (a bug, or a foreign file) would take
# minutes and gigabytes to draw. The first names seen are plotted and the page lists the rest.
MAX_OTHER_KEYS = 24  # "other training scalars"
MAX_EVAL_PANELS = 24  # evaluation metrics (an inpainting metric's methods share one)


@dataclass
class Series:
    """One line: ``x`` and ``y`` are float arrays of the same length (NaN: no value there)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    markers: bool = False  # sparse data (evaluations): draw the points


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    count: bool = False  # a counter: y axis from 0, whole numbers


@dataclass
class FigureSpec:
    """A figure written as ``name + ".png"``: panels laid out ``ncols`` per row."""

    name: str
    title: str
    panels: list[Panel]
    ncols: int = 2


def _train_series(h: History, keys: dict[str, str], over: str) -> list[Series]:
    """Training keys (``key -> label``) against steps or training seconds."""
    out = []
    for key, label in keys.items():
        steps, values = h.column(key)
        if steps.size:
            out.append(Series(label, steps if over == STEP else h.seconds_at(steps), values))
    return out


def _pair(name: str, title: str, ylabel: str, h: History, keys: dict[str, str],
          count: bool = False) -> FigureSpec | None:
    """The same curves over steps (left) and over training seconds (right)."""
    left = _train_series(h, keys, STEP)
    if not left:
        return None
    panels = [Panel(f"{title} by step", STEP, ylabel, left, count),
              Panel(f"{title} by training time", SECONDS, ylabel, _train_series(h, keys, SECONDS), count)]
    return FigureSpec(name, title, panels)


def _eval_series(h: History, key: str, masks, over: str) -> Series | None:
    """One metric (of records with inpainting ``masks``, when given) over steps or training seconds."""
    records = [r for r in h.evals if key in r and (masks is None or r.get("masks", "") == masks)]
    steps, values = h.eval_series(key, records)
    if steps.size == 0:
        return None
    label = key if masks is None else key.split("/")[1] + (f" ({masks})" if masks else "")
    if over == STEP:
        return Series(label, steps, values, markers=True)
    # Training records the time of its own evaluations; `ganforge eval` afterwards does not.
    recorded = {r["step"]: float(t) for r in records
                if isinstance(t := r.get("train_seconds"), (int, float)) and not isinstance(t, bool)}
    guessed = h.seconds_at(steps)
    seconds = np.array([recorded.get(int(s), g) for s, g in zip(steps, guessed)], dtype=float)
    return Series(label, seconds, values, markers=True)


def eval_groups(h: History) -> dict[str, list[tuple[str, str | None]]]:
    """Evaluation panels: ``title -> [(metric key, masks)]``. A generation metric has a panel of its
    own; an inpainting metric ``inpaint/METHOD/NAME`` shares the panel ``inpaint NAME`` with the
    other methods, one line per method and mask kind."""
    groups: dict[str, list[tuple[str, str | None]]] = {}
    masks = list(dict.fromkeys(m for r in h.evals if r.get("eval") == "inpaint"
                               and isinstance(m := r.get("masks", ""), str)))
    for key in h.eval_keys():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "inpaint":
            groups.setdefault(f"inpaint {parts[2]}", []).extend((key, m) for m in masks)
        else:
            groups.setdefault(key, []).append((key, None))
    return groups


def eval_panels(h: History, title: str, members: list[tuple[str, str | None]]) -> tuple[Panel, Panel]:
    """One evaluation panel over steps and its twin over training seconds."""
    by_step = [s for key, m in members if (s := _eval_series(h, key, m, STEP)) is not None]
    by_time = [s for key, m in members if (s := _eval_series(h, key, m, SECONDS)) is not None]
    return (Panel(f"{title} by step", STEP, title, by_step), Panel(f"{title} by training time", SECONDS, title, by_time))


def headline_metric(h: History) -> str | None:
    """The evaluation metric to show at a glance: the FID measured most often, else any metric."""
    keys = [k for k in h.eval_keys() if not k.startswith("inpaint/")]
    if not keys:
        return None
    fids = [k for k in keys if k.startswith("fid")]
    return max(fids or keys, key=lambda k: h.eval_series(k)[0].size)


def overview(h: History) -> FigureSpec | None:
    """Four panels by step: losses, D outputs, throughput, and the headline metric (or skipped steps)."""
    panels = []
    for title, ylabel, keys in (("Losses", "loss", {"d_loss": "D loss", "g_loss": "G loss"}),
                                ("Discriminator outputs", "mean D", {"d_real": "D(x)", "d_fake": "D(G(z))"}),
                                ("Throughput", "images/s", {"images_per_s": "images/s"})):
        series = _train_series(h, keys, STEP)
        if series:
            panels.append(Panel(title, STEP, ylabel, series))
    metric = headline_metric(h)
    if metric is not None:
        panels.append(eval_panels(h, metric, [(metric, None)])[0])
    else:
        series = _train_series(h, {"skipped_steps": "skipped (cumulative)"}, STEP)
        if series:
            panels.append(Panel("Skipped updates", STEP, "steps", series, count=True))
    return FigureSpec("overview", "Overview", panels) if panels else None


def figure_specs(h: History) -> list[FigureSpec]:
    """Every figure of the report, in page order; figures without data are left out."""
    specs = [overview(h),
             _pair("losses", "Losses", "loss", h, {"d_loss": "D loss", "g_loss": "G loss"}),
             _pair("d_outputs", "Discriminator outputs", "mean D",
                   h, {"d_real": "D(x) real", "d_fake": "D(G(z)) fake"}),
             _pair("speed", "Throughput", "images/s", h, {"images_per_s": "images/s"}),
             _pair("skipped", "Skipped updates", "steps (cumulative)",
                   h, {"skipped_steps": "non-finite updates skipped"}, count=True)]
    others = other_train_keys(h)[:MAX_OTHER_KEYS]
    if others:
        panels = []
        for key in others:
            pair = _pair(key, key, key, h, {key: key})
            panels.extend(pair.panels if pair else [])
        specs.append(FigureSpec("other", "Other training scalars", panels))
    groups = dict(list(eval_groups(h).items())[:MAX_EVAL_PANELS])
    if groups:
        specs.append(FigureSpec("eval", "Evaluation", [p for t, m in groups.items() for p in eval_panels(h, t, m)]))
    return [s for s in specs if s is not None]


def other_train_keys(h: History) -> list[str]:
    """Numeric training keys without a figure of their own, in first-seen order."""
    return [k for k in h.train_keys() if k not in KNOWN_TRAIN_KEYS]


def omitted(h: History) -> list[str]:
    """The metric names that :func:`figure_specs` leaves out (past :data:`MAX_OTHER_KEYS` / :data:`MAX_EVAL_PANELS`)."""
    return other_train_keys(h)[MAX_OTHER_KEYS:] + list(eval_groups(h))[MAX_EVAL_PANELS:]
