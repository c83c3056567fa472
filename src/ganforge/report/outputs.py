"""Writing the report's files: checked before any work, each written to a temporary name and renamed.

A report folder may hold anything a previous report (or someone else) left
there. Writing in place would follow a symbolic link planted at
``report/overview.png`` out of the run, and a browser could see half a page.
So every file is written to a new temporary file in the same folder (created
with ``O_EXCL``, never through a link) and renamed over the old name, which
replaces a link rather than writing through it; a failed write removes the
temporary file. :func:`check_out_dir` refuses, before any plotting, a folder
that cannot be written and a folder that holds other files than a report's.
"""

from __future__ import annotations

import os
from pathlib import Path

from ganforge.atomic import write_file, write_text
from ganforge.commands._paths import check_output_dir
from ganforge.errors import ConfigError

MARKER = "ganforge report</title>"  # in the <head> of every page a report writes
# What a report folder holds: its page, figures (ganforge.report.specs names) and sample strip / animation.
REPORT_FILES = frozenset({"index.html", "samples.png", "samples.gif", "overview.png", "losses.png",
                          "d_outputs.png", "speed.png", "skipped.png", "other.png", "eval.png"})


def _is_report_page(page: Path) -> bool:
    if page.is_symlink() or not page.is_file():
        return False
    try:
        with open(page, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return MARKER.encode() in head


def check_out_dir(out: Path, option: str, default: bool) -> Path:
    """Check that ``out`` can take a report: new, empty, or the folder of an earlier report.

    An earlier report's folder holds only :data:`REPORT_FILES` and its ``index.html``
    carries :data:`MARKER` (or is a link, which is replaced, or is missing from
    ``RUN/report`` after a failed report). ``default`` is True for ``RUN/report``
    (chosen by us, not by the user): it must not be a symbolic link. Raises
    :class:`ConfigError` naming ``option``.
    """
    if default and out.is_symlink():
        raise ConfigError(option, f"{out} is a symbolic link; give --out to write the report elsewhere")
    check_output_dir(out, option)
    if out.is_dir():
        try:
            with os.scandir(out) as entries:
                names = [e.name for e in entries if not e.name.startswith(".")]
        except OSError as exc:
            raise ConfigError(option, f"cannot list {out} ({exc.strerror or type(exc).__name__})") from None
        page = out / "index.html"
        ours = set(names) <= REPORT_FILES and (_is_report_page(page) or page.is_symlink()
                                               or (default and not page.exists()))
        if names and not ours:
            raise ConfigError(option, f"{out} holds other files than an earlier report's; give a new or empty folder")
    return out


__all__ = ["MARKER", "REPORT_FILES", "check_out_dir", "write_file", "write_text"]
