"""``ganforge datasets``: which named datasets are available, and where."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list named datasets and where they were found")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.data import list_datasets
    from ganforge.data.photos import SETUP_HINT, corpus_status
    from ganforge.data.stacked import STACKED

    entries = list_datasets()
    for entry in entries:
        where = entry.get("path") or "not found"
        print(f"{entry['name']:<22} {where}")
        if not entry.get("path"):
            print(f"{'':<22} to get it: {entry['how']}")
    found = {e["name"]: e.get("path") for e in entries}
    for name, (base, _) in STACKED.items():
        print(f"{name:<22} {'made from ' + base if found.get(base) else 'needs ' + base}")
    for source in ("photos", "skimage-photos"):
        have, total, packages = corpus_status(source)
        print(f"{source:<22} {have} of {total} photographs installed")
        if packages:
            how = "pip install scikit-image" if packages == ["scikit-image"] else f"{SETUP_HINT} (apt: {' '.join(packages)})"
            print(f"{'':<22} to get them: {how}")
    return 0
