"""Error types for bad input.

Each kind of bad input has its own exception type. Every one carries the
offending path or option (``where``) and the reason, so that the CLI can
print a single line ``error: <where>: <reason>`` and exit with code 2.

Messages are kept to one short line whatever the input: line breaks in a path
or value are escaped, and ``where`` and ``reason`` are each capped in length
(:data:`MAX_WHERE`, :data:`MAX_REASON`), so that a huge value (a multi-megabyte
YAML string, a deeply nested list) cannot turn an error into megabytes of text.
Code that quotes a user's value in a reason should use :func:`quote`, which
caps the value alone and keeps the rest of the sentence readable.
"""

from __future__ import annotations

import os
from typing import Any

MAX_WHERE = 240  # characters of the path / option / key in a message
MAX_REASON = 600  # characters of the reason
MAX_QUOTED = 80  # characters of one quoted value (see quote)


def shorten(text: str, limit: int) -> str:
    """``text`` on one line and at most about ``limit`` characters: the middle is elided, with its length."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit:
        return text
    keep = max(limit - 32, 8)
    head, tail = keep * 2 // 3, keep - keep * 2 // 3
    return f"{text[:head]}...<{len(text) - head - tail} more characters>...{text[len(text) - tail:]}"


def quote(value: Any, limit: int = MAX_QUOTED) -> str:
    """``repr(value)`` for an error message, capped at about ``limit`` characters.

    The repr of a large container can be huge and slow to build (a nested list
    with shared sub-lists expands exponentially), so such containers are
    summarised by type and length instead of printed.
    """
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        if len(value) > 16 or _deep_size(value, 200) >= 200:
            return f"<{type(value).__name__} of {len(value)} items>"
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{shorten(repr(value[:limit]), limit + 8)}... ({len(value)} characters)"
    return shorten(repr(value), limit)


def _deep_size(value: Any, budget: int) -> int:
    """Number of items in a nested container, counting shared sub-containers each time, stopping at ``budget``."""
    seen, stack = 0, [value]
    while stack and seen < budget:
        v = stack.pop()
        seen += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set)):
            stack.extend(v)
    return seen


class GanforgeError(Exception):
    """Base class: bad input that the user can fix.

    Args:
        where: the file, directory, option or config key at fault.
        reason: what is wrong with it, in one sentence.
    """

    def __init__(self, where: str | os.PathLike | None, reason: str):
        self.where = None if where is None else shorten(str(where), MAX_WHERE)
        self.reason = shorten(str(reason), MAX_REASON)
        super().__init__(f"{self.where}: {self.reason}" if self.where else self.reason)


class DataError(GanforgeError):
    """A data file or dataset that cannot be read or is malformed."""


class ConfigError(GanforgeError):
    """A configuration key or command-line option with a bad value."""


class CheckpointError(GanforgeError):
    """A checkpoint or weights file that is missing, corrupt or does not match."""


class WeightsError(CheckpointError):
    """External weights (e.g. the Inception network) missing or with the wrong hash."""


class TrainingError(GanforgeError):
    """Training cannot continue (e.g. it kept diverging after rollbacks). The CLI exits with 1."""
