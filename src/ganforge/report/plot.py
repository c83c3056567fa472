"""Figure specs drawn with matplotlib's Agg backend (no display needed).

Imported only when a report is made: matplotlib is the optional ``report``
extra, and :func:`require_matplotlib` turns its absence into a one-line error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganforge.errors import ConfigError, shorten
from ganforge.report.outputs import write_file
from ganforge.report.specs import FigureSpec, Panel

INSTALL_HINT = "pip install 'ganforge[report]' (matplotlib)"
# Noisy per-step values (GAN losses) get a running mean over this many logged points on top.
SMOOTH_MIN_POINTS = 40
MAX_DRAWN_POINTS = 4000  # per line; longer series are drawn as their min/max envelope
MAX_LABEL = 60  # characters of a title, axis label or legend entry (metric names come from the run's files)
# Labels are metric names from the run's files, shown as they are: "$x^$" is a name, not broken mathtext.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def require_matplotlib():
    """``matplotlib.pyplot`` on the Agg backend, or a :class:`ConfigError` naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("ganforge report", f"needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def running_mean(y: np.ndarray, width: int) -> np.ndarray:
    """Centred running mean of ``y`` (N,) -> (N,); the ends average over what there is."""
    kernel = np.ones(width)
    sums = np.convolve(y, kernel, mode="same")
    counts = np.convolve(np.ones_like(y), kernel, mode="same")
    return sums / counts


def envelope(x: np.ndarray, y: np.ndarray, buckets: int = MAX_DRAWN_POINTS // 2) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 * buckets`` points that draw like ``(x, y)``: each bucket's minimum and maximum, in order.

    A 100k-step run logs tens of thousands of points; a figure a few hundred
    pixels wide shows no more, and drawing them all is what makes a report slow.
    """
    n = y.size
    if n <= 2 * buckets:
        return x, y
    size = -(-n // buckets)
    rows = -(-n // size)
    low = np.full(rows * size, np.inf)
    high = np.full(rows * size, -np.inf)
    finite = np.isfinite(y)
    low[:n][finite], high[:n][finite] = y[finite], y[finite]
    start = np.arange(rows) * size
    lo = start + low.reshape(rows, size).argmin(1)
    hi = start + high.reshape(rows, size).argmax(1)
    keep = np.unique(np.minimum(np.concatenate([lo, hi]), n - 1))  # sorted: the points stay in order
    return x[keep], y[keep]


def _label(text: str) -> str:
    return shorten(str(text), MAX_LABEL)


def _draw_panel(ax, panel: Panel) -> None:
    ax.set_title(_label(panel.title), fontsize=10)
    ax.set_xlabel(_label(panel.xlabel), fontsize=8)
    ax.set_ylabel(_label(panel.ylabel), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    colors = [f"C{i}" for i in range(10)]
    for i, s in enumerate(panel.series):
        color = colors[i % len(colors)]
        if s.markers:
            order = np.argsort(s.x, kind="stable")
            ax.plot(s.x[order], s.y[order], "o-", color=color, label=_label(s.label), markersize=4, linewidth=1.2)
            continue
        smooth = s.y.size >= SMOOTH_MIN_POINTS
        # The raw line is the data (drawn first, so tests and readers find it as the series);
        # a running mean on top keeps the trend readable through GAN noise.
        ax.plot(*envelope(s.x, s.y), color=color, label=_label(s.label), linewidth=0.8,
                alpha=0.35 if smooth else 1.0)
        if smooth:
            ax.plot(*envelope(s.x, running_mean(s.y, max(5, s.y.size // 25))), color=color, linewidth=1.6,
                    label="_nolegend_")
    if panel.count:
        from matplotlib.ticker import MaxNLocator

        top = max((float(np.nanmax(s.y)) for s in panel.series if s.y.size), default=0.0)
        top = max(1.0, top * 1.1)
        ax.set_ylim(-0.03 * top, top)  # a flat zero stays visible above the frame
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(panel.series) > 1:
        ax.legend(fontsize=7, loc="best", frameon=False)
    if not panel.series:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="0.5")


def render(spec: FigureSpec):
    """Draw ``spec``; returns the matplotlib figure (the caller saves and closes it)."""
    plt = require_matplotlib()
    ncols = min(spec.ncols, len(spec.panels))
    nrows = -(-len(spec.panels) // ncols)
    with plt.rc_context(PLAIN_TEXT):
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 2.9 * nrows), squeeze=False)
        for ax, panel in zip(axes.flat, spec.panels):
            _draw_panel(ax, panel)
        for ax in list(axes.flat)[len(spec.panels):]:
            ax.set_visible(False)
        fig.tight_layout()
    return fig


def save(spec: FigureSpec, out_dir: Path, dpi: int = 90) -> Path:
    """Render ``spec`` to ``out_dir/NAME.png`` (a temporary file renamed: never written through a link)."""
    plt = require_matplotlib()
    fig = render(spec)
    path = Path(out_dir) / f"{spec.name}.png"
    try:
        with plt.rc_context(PLAIN_TEXT):  # text is laid out again when saved
            write_file(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)
    return path
