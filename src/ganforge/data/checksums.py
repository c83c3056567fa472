"""File digests shared by dataset discovery, downloads and archive extraction.

A dataset file may be published in several copies (e.g. upstream gzip and Debian's
repack), so each file lists several accepted ``(algorithm, hex digest)`` pairs and a
file matches when any one of them does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

Checksums = tuple[tuple[str, str], ...]  # (hashlib algorithm, lowercase hex digest)


def file_digests(path: str | os.PathLike, algorithms) -> dict[str, str]:
    """Hex digests of the file at ``path`` for each of ``algorithms``, read in one pass."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def file_matches(path: str | os.PathLike, checksums: Checksums) -> bool:
    """Whether the file's digest equals any of ``checksums`` ((algorithm, hex) pairs)."""
    got = file_digests(Path(path), {a for a, _ in checksums})
    return any(got[a] == h.lower() for a, h in checksums)
