"""``ganforge presets``: the built-in presets, what each is for and what it reaches (from its own comment)."""

from __future__ import annotations

import argparse
import textwrap


def register(sub) -> None:
    p = sub.add_parser("presets", help="list the built-in presets (use a name with train --config)",
                       description="The presets shipped with ganforge: train one with "
                       "`ganforge train --config NAME`. Each line comes from the preset's own leading comment.")
    p.add_argument("--paths", action="store_true", help="also print each preset's file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.preset_files import all_presets

    for info in all_presets():
        print(info.name)
        for label, text in (("for", info.purpose), ("reaches", info.reaches)):
            print(textwrap.fill(text, width=100, initial_indent=f"  {label + ':':<9}", subsequent_indent=" " * 11))
        if args.paths:
            print(f"  {'file:':<9}{info.path}")
    return 0
