"""Error types for bad input.

Each kind of bad input has its own exception type. Every one carries the
offending path or option (``where``) and the reason, so that the CLI can
print a single line ``error: <where>: <reason>`` and exit with code 2.
"""

from __future__ import annotations

import os


class GanforgeError(Exception):
    """Base class: bad input that the user can fix.

    Args:
        where: the file, directory, option or config key at fault.
        reason: what is wrong with it, in one sentence.
    """

    def __init__(self, where: str | os.PathLike | None, reason: str):
        self.where = None if where is None else str(where)
        self.reason = reason
        super().__init__(f"{self.where}: {reason}" if self.where else reason)


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
