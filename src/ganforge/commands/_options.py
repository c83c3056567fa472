"""Command-line options: a parser whose errors are one line, and bounded numeric types.

``p.add_argument("--n", type=int_in(1, 1000))`` turns ``--n 0`` or ``--n nan``
into argparse's one-line error (exit code 2) naming the option, before any work.
The ranges use :class:`ganforge.config_schema.Range`, like the config keys.
"""

from __future__ import annotations

import argparse
import math

from ganforge.config import Range
from ganforge.errors import quote


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit code 2."""

    def error(self, message: str):  # argparse would also print the usage
        self.exit(2, f"error: {self.prog}: {message}\n")


def int_in(lo: int, hi: int):
    """An argparse ``type`` accepting integers in ``[lo, hi]``."""
    allowed = Range(lo, hi)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {quote(text)}") from None
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"must be in {allowed}, got {quote(value)}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    """An argparse ``type`` accepting finite numbers in the given range."""
    allowed = Range(lo, hi, lo_open, hi_open)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {quote(text)}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text.strip()}")
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"must be in {allowed}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


SEED = int_in(0, 2**63 - 1)  # torch generators take a 64-bit seed
BATCH = int_in(1, 4096)  # images per forward pass in inference commands
THREADS = int_in(0, 4096)


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: PyTorch's CPU threads for this command (0 = auto; see :mod:`ganforge.threads`)."""
    p.add_argument("--threads", type=THREADS, default=None, metavar="N",
                   help="CPU threads for PyTorch (default 0 = auto: the cores other processes leave free, "
                   "or OMP_NUM_THREADS when set; 1 is safest on a busy machine)")


def use_threads_option(args: argparse.Namespace):
    """Apply ``args.threads`` (auto when not given) before a command computes; returns the ThreadChoice.

    ``train`` passes the option on as ``train.threads`` instead (the execution plan applies and records it).
    """
    from ganforge.threads import use_threads

    threads = getattr(args, "threads", None)
    return use_threads(0 if threads is None else threads)
