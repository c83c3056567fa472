"""Run directories: a new run never overwrites an old one; what a run writes before its first step."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from ganforge.atomic import write_text
from ganforge.config import RunConfig, dump_yaml

log = logging.getLogger(__name__)


def new_run_dir(cfg: RunConfig) -> Path:
    """``out_dir/name``, or ``name-1``, ``name-2``... when taken: a new run never overwrites an old one."""
    base = Path(cfg.out_dir) / cfg.name
    path, i = base, 0
    while path.exists():
        i += 1
        path = base.with_name(f"{cfg.name}-{i}")
    return path


def start_run_dir(run_dir: Path, cfg: RunConfig, plan, metrics, step: int):
    """Rank 0, at the start of training: TensorBoard when asked for, then ``config.yaml`` and ``execution.json``.

    Returns the :class:`~ganforge.train.tensorboard.TensorBoardLog` (it sees every record of
    ``metrics`` through the log's sinks) or None, also when the event log cannot be
    written (one warning: it never stops a run). The writer comes first so that a
    resume that fails there (the package is missing) has not yet rewritten the run's config.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    tensorboard = None
    if cfg.train.tensorboard:
        from ganforge.train.tensorboard import TensorBoardLog

        tensorboard = TensorBoardLog.open(run_dir / "tensorboard", start_step=step)
    write_text(run_dir / "config.yaml", dump_yaml(cfg))  # by rename: a failed write leaves the old one
    plan.write(run_dir / "execution.json")
    log.info("%s (reasons: %s)", plan.summary(), run_dir / "execution.json")
    log.debug("%s", plan.describe())
    if tensorboard is not None:
        metrics.sinks.append(tensorboard.write)
    return tensorboard


def stop_tensorboard(tensorboard, metrics) -> None:
    """Detach ``tensorboard`` (or None) from ``metrics`` and close it; returns None (the caller's new value)."""
    if tensorboard is not None:
        metrics.sinks.remove(tensorboard.write)
        tensorboard.close()


def catch_stop_signals(handler):
    """Route SIGINT and SIGTERM to ``handler(signum, frame)`` (main thread only); returns the function that
    restores the previous handlers."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return restore
