"""``ganforge datasets``: which named datasets are available, and where."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list named datasets and where they were found")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.data import list_datasets

    for entry in list_datasets():
        where = entry.get("path") or "not found"
        print(f"{entry['name']:<14} {where}")
        if not entry.get("path"):
            print(f"{'':<14} to get it: {entry['how']}")
    return 0
