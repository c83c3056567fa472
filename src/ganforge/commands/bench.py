"""``ganforge bench``: the throughput benchmark of :mod:`ganforge.perf`, as a subcommand."""

from __future__ import annotations


def register(sub) -> None:
    from ganforge.perf import DESCRIPTION, add_arguments, run

    p = sub.add_parser("bench", help="benchmark training, sampling and Inception throughput",
                       description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)
