"""Reading a run's files for a report, within bounds, whatever state the run is in.

A report is made of a run that may be damaged, still being written, or not
trusted: a file may be a FIFO (``open`` would wait forever), a device or a
symbolic link to one (``/dev/zero`` reads until memory runs out), a link out of
the run, or simply huge. :func:`read_bytes` opens only regular files inside the
run, without blocking and at most ``limit`` bytes; :func:`open_image` checks an
image's header (format and size) before any pixel is decoded. Each problem is a
:class:`Unreadable` with a short reason, which the report turns into one warning
line naming the file and then goes on without it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import warnings
from pathlib import Path

from PIL import Image

MAX_TEXT_BYTES = 1 << 20  # config.yaml, execution.json, best.json: a few KB each
MAX_IMAGE_BYTES = 64 << 20  # a sample grid PNG: a few hundred KB
MAX_IMAGE_PIXELS = 16 << 20  # a sample grid: 8x8 images of 256x256 is 4 Mpx
MAX_LINE_BYTES = 64 << 10  # one metrics.jsonl record: a few hundred bytes
MAX_METRICS_BYTES = 256 << 20  # of metrics.jsonl read; about a million records
MAX_INT_DIGITS = 18  # larger integers (steps, counters) are not from a training run


class Unreadable(Exception):
    """A run file the report skips; ``str()`` is the reason (the caller names the file)."""


def _inside(path: Path, root: Path) -> Path:
    """``path`` with links resolved, refused unless it stays inside ``root``."""
    real = Path(os.path.realpath(path))
    root_real = Path(os.path.realpath(root))
    if real != root_real and root_real not in real.parents:
        raise Unreadable(f"a link to {real}, outside the run")
    return real


def open_regular(path: Path, root: Path, limit: int):
    """A binary file object of ``path``, a regular file inside ``root`` of at most ``limit`` bytes.

    Opened with ``O_NONBLOCK`` so that a FIFO put in its place is refused by
    ``fstat`` rather than waited on.
    """
    real = _inside(path, root)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise Unreadable("not found") from None
    except OSError as exc:
        raise Unreadable(f"cannot open ({exc.strerror or type(exc).__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable("not a regular file")
        if st.st_size > limit:
            raise Unreadable(f"{st.st_size} bytes, above the report's limit of {limit}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path, root: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The content of a regular file inside ``root``, at most ``limit`` bytes (see :func:`open_regular`)."""
    try:
        with open_regular(path, root, limit) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise Unreadable(f"cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limit:  # grew since fstat
        raise Unreadable(f"larger than the report's limit of {limit} bytes")
    return data


def read_text(path: Path, root: Path, limit: int = MAX_TEXT_BYTES) -> str:
    try:
        return read_bytes(path, root, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8 text") from None


# ------------------------------------------------------------------ JSON


def _int(text: str):
    """JSON integers of at most :data:`MAX_INT_DIGITS` digits; longer ones are dropped (None)."""
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else None


def _float(text: str):
    value = float(text)
    return value if math.isfinite(value) else None


def _constant(name: str):  # NaN, Infinity, -Infinity: no value
    return None


def loads(text: str | bytes):
    """``json.loads`` where non-finite numbers and implausibly long integers read as None.

    Raises:
        ValueError: not JSON, or nested too deeply.
    """
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path: Path, root: Path, limit: int = MAX_TEXT_BYTES):
    try:
        return loads(read_text(path, root, limit))
    except ValueError:
        raise Unreadable("not valid JSON") from None


def json_lines(f, max_line: int = MAX_LINE_BYTES, max_bytes: int = MAX_METRICS_BYTES):
    """Yield ``(record or None, truncated)`` per non-empty line of the binary file ``f``.

    A line that is too long, not UTF-8 or not JSON gives None (the line is
    skipped without being held in memory whole). ``truncated`` is True on the
    last item when reading stopped at ``max_bytes``.
    """
    read = 0
    while True:
        if read >= max_bytes:
            yield None, True
            return
        line = f.readline(max_line + 1)
        if not line:
            return
        read += len(line)
        if len(line) > max_line and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n") and read < max_bytes:  # drain the rest of the line
                line = f.readline(max_line + 1)
                read += len(line)
            yield None, False
            continue
        line = line.strip()
        if not line:
            continue
        try:
            yield loads(line.decode("utf-8")), False
        except (ValueError, UnicodeDecodeError):
            yield None, False


# ------------------------------------------------------------------ images


def open_image(path: Path, root: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The decoded image at ``path``: a regular file inside ``root`` whose header says at most ``max_pixels``."""
    data = read_bytes(path, root, MAX_IMAGE_BYTES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked here
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            found = re.findall(r"\d+", str(exc))
            size = f"of {int(found[0])} pixels" if found else "too large"
            raise Unreadable(f"image {size}, above the report's limit of {max_pixels}") from None
        except Exception as exc:  # UnidentifiedImageError, or a header parser's own error
            raise Unreadable(f"not a readable image ({type(exc).__name__})") from None
        w, h = im.size
        if w * h > max_pixels:
            raise Unreadable(f"image of {w}x{h} pixels, above the report's limit of {max_pixels}")
        try:
            im.load()
        except Exception as exc:  # truncated (being written) or corrupt
            raise Unreadable(f"cannot decode the image ({type(exc).__name__})") from None
    return im
