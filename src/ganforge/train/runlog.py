"""Run logging: metrics as JSON lines, and a progress display (bar on a terminal, lines otherwise)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm


class MetricsLog:
    """Append one JSON object per line to ``RUN/metrics.jsonl`` (flushed per line, so a kill loses nothing logged).

    ``sinks``: callables that also receive every record written (e.g. the
    TensorBoard writer), so every place that logs a record feeds them too.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sinks: list = []

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
        for sink in self.sinks:
            sink(clean)

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (after resuming from an earlier checkpoint)."""
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except ValueError:
                continue  # a line torn by a kill
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


class Stopwatch:
    """Wall-clock seconds of training, carried across resumes; paused while evaluating.

    ``total`` is what ``metrics.jsonl`` reports as ``train_seconds``: the time
    a run has spent training (sample grids and checkpoints included, periodic
    evaluation excluded), so time-to-quality numbers do not depend on how
    often the run was evaluated or how many times it was resumed.
    """

    def __init__(self, total: float = 0.0, clock=time.perf_counter):
        self._base = float(total)
        self._since: float | None = None
        self._clock = clock

    def start(self) -> None:
        if self._since is None:
            self._since = self._clock()

    def pause(self) -> None:
        if self._since is not None:
            self._base += self._clock() - self._since
            self._since = None

    @property
    def total(self) -> float:
        running = self._clock() - self._since if self._since is not None else 0.0
        return self._base + running


class Progress:
    """tqdm bar with ETA when stderr is a terminal; a plain line every ``every`` steps otherwise."""

    def __init__(self, total: int, start: int, every: int, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.every = total, every
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=start, file=self.stream, dynamic_ncols=True) if self.tty else None
        self.t0, self.start = time.perf_counter(), start

    def update(self, step: int, logs: dict) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix({k: f"{logs[k]:.3f}" for k in ("d_loss", "g_loss") if k in logs})
        elif step % self.every == 0 or step == self.total:
            elapsed = time.perf_counter() - self.t0
            rate = (step - self.start) / max(elapsed, 1e-9)
            eta = (self.total - step) / max(rate, 1e-9)
            parts = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, float))
            print(f"step {step}/{self.total} {parts} eta {eta:.0f}s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class NoProgress:
    """The progress display of processes that print nothing (ranks > 0 under torchrun)."""

    def update(self, step: int, logs: dict) -> None:
        pass

    def close(self) -> None:
        pass
