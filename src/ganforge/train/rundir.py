"""Run directories: a new run never overwrites an old one."""

from __future__ import annotations

from pathlib import Path

from ganforge.config import RunConfig


def new_run_dir(cfg: RunConfig) -> Path:
    """``out_dir/name``, or ``name-1``, ``name-2``... when taken: a new run never overwrites an old one."""
    base = Path(cfg.out_dir) / cfg.name
    path, i = base, 0
    while path.exists():
        i += 1
        path = base.with_name(f"{cfg.name}-{i}")
    return path
