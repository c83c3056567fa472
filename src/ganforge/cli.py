"""The ``ganforge`` command: one entry point with subcommands.

Bad input (a :class:`GanforgeError`, or a bad option) prints one line on
stderr and exits with code 2; an interrupt exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ganforge.commands._options import OneLineErrorParser
from ganforge.errors import GanforgeError, TrainingError

# Each module defines ``register(subparsers)``, which sets ``func`` on its parser.
COMMANDS = ("train", "sample", "export", "datasets", "eval", "inpaint", "eval_inpaint", "bench", "serve", "report",
            "presets")


def build_parser() -> argparse.ArgumentParser:
    from ganforge import __version__

    parser = OneLineErrorParser(prog="ganforge", description="Train, sample and evaluate GANs; inpaint images.")
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ganforge.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ganforge.commands.{name}":
                continue  # a command whose module is not part of this build
            raise
        module.register(sub)
    return parser


def _late_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]):
    """``KEY=VALUE`` overrides given after an option (``train -c X a=1 --run-dir D b=2``) join the others.

    argparse takes a positional list only in one piece, so ``b=2`` would be refused
    as an unrecognised argument; anything else left over still is.
    """
    if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
        return args
    parser.error(f"unrecognized arguments: {' '.join(extra)}")


def main(argv: list[str] | None = None) -> int:
    """Run ``ganforge argv`` and return its exit code (also for bad options, --help and --version)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            args = _late_overrides(parser, args, extra)
    except SystemExit as exc:  # argparse has printed its one line (or the help)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except TrainingError as exc:  # not bad input: the run itself failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except GanforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
