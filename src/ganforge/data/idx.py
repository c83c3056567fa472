"""IDX files (the MNIST / Fashion-MNIST container format), plain or gzip-compressed.

Layout: a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the values in C order, big-endian. Every deviation from
this (wrong magic, unknown type, short or over-long data, broken gzip stream) raises
:class:`~ganforge.errors.DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from ganforge.errors import DataError

__all__ = ["read_idx", "write_idx", "find_idx_files", "load_idx_split"]

# IDX type byte -> numpy dtype as stored (big-endian).
_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _TYPES.items()}
_TYPE_NAMES = "0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64"
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot compress better than about 1032:1, so a gzip file that claims to hold
# more than this many times its own size is truncated; checked before allocating.
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 22


def _parse_header(path: Path, head: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (stored dtype, shape, header length) from the first bytes of the payload."""
    if len(head) < 4:
        raise DataError(path, f"too short for an IDX header ({len(head)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0:
        magic = int.from_bytes(head[:4], "big")
        raise DataError(path, f"not an IDX file: magic number 0x{magic:08x} does not start with 0x0000")
    if code not in _TYPES:
        raise DataError(path, f"unsupported IDX data type 0x{code:02x} (supported: {_TYPE_NAMES})")
    if ndim == 0:
        raise DataError(path, "IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise DataError(path, f"truncated IDX header: {ndim} dimensions need {header_len} bytes, file has {len(head)}")
    shape = struct.unpack(f">{ndim}I", head[4:header_len])
    return _TYPES[code], tuple(shape), header_len


def _read_exact(stream, buf: memoryview) -> int:
    """Fill ``buf`` from ``stream``; return the number of bytes actually read."""
    done = 0
    while done < len(buf):
        n = stream.readinto(buf[done : done + _CHUNK])
        if not n:
            break
        done += n
    return done


def _read_payload(path: Path, stream, compressed_size: int | None, file_size: int | None):
    head = stream.read(4)
    if len(head) == 4 and head[:2] == b"\x00\x00":
        head += stream.read(4 * head[3])
    dtype, shape, header_len = _parse_header(path, head)
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd headers
    shape_txt = "x".join(map(str, shape))
    if file_size is not None and file_size != header_len + nbytes:
        have = file_size - header_len
        if have < nbytes:
            raise DataError(path, f"truncated: header declares {shape_txt} values ({nbytes} bytes) but only {have} bytes follow")
        raise DataError(path, f"{have - nbytes} bytes of trailing data after the declared {shape_txt} values")
    if compressed_size is not None and nbytes > compressed_size * _MAX_DEFLATE_RATIO:
        raise DataError(path, f"truncated: header declares {shape_txt} values ({nbytes} bytes), "
                              f"more than a {compressed_size}-byte gzip file can hold")
    data = bytearray(nbytes)  # writable, so torch.from_numpy accepts the result without a copy
    got = _read_exact(stream, memoryview(data))
    if got < nbytes:
        raise DataError(path, f"truncated: header declares {shape_txt} values ({nbytes} bytes) but only {got} bytes follow")
    try:
        extra = stream.read(1)
    except gzip.BadGzipFile:
        # GzipFile takes bytes after a member for the start of another member.
        raise DataError(path, "unexpected data after the end of the gzip stream") from None
    if extra:
        rest = 1 + sum(len(c) for c in iter(lambda: stream.read(_CHUNK), b""))
        raise DataError(path, f"{rest} bytes of trailing data after the declared {shape_txt} values")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, detected from the content).

    Returns:
        array with the shape from the header, e.g. ``(N, 28, 28)`` uint8 for image
        files and ``(N,)`` uint8 for label files; multi-byte types come back in native
        byte order. Writable.

    Raises:
        DataError: missing file, wrong magic number, unsupported type byte, truncated
            data, trailing garbage, or a corrupt gzip stream.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not is_gzip:
                return _read_payload(path, raw, None, size)
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_payload(path, stream, size, None)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except EOFError:
        raise DataError(path, "truncated gzip stream (compressed data ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(path, f"corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` (1 to 255 dimensions) as an IDX file; gzip it if ``path`` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64. The gzip header
    carries no timestamp, so equal arrays give byte-identical files.
    """
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"write_idx: dtype {arr.dtype} has no IDX type code ({_TYPE_NAMES})")
    if not 1 <= arr.ndim <= 255 or any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"write_idx: shape {arr.shape} cannot be stored in an IDX header")
    header = struct.pack(">HBB", 0, _CODES[native], arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=native.newbyteorder(">")).tobytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out:
            out.write(header)
            out.write(payload)
    else:
        with open(path, "wb") as out:
            out.write(header)
            out.write(payload)


# Accepts the canonical names (train-images-idx3-ubyte.gz) and the common variant with a
# dot (train-images.idx3-ubyte) that some re-distributions use.
_IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
_SPLIT_PREFIX = {"train": ("train",), "test": ("t10k", "test")}


def find_idx_files(directory: str | os.PathLike) -> dict[str, dict[str, Path]]:
    """Map split ("train"/"test") -> {"images": path, "labels": path} for IDX files in ``directory``.

    Only complete pairs are returned; a plain file wins over its ``.gz`` twin.
    """
    found: dict[tuple[str, str], Path] = {}
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    for entry in sorted(directory.iterdir(), key=lambda p: p.name.endswith(".gz")):
        m = _IDX_NAME.match(entry.name)
        if not m or not entry.is_file():
            continue
        split = "train" if m.group(1) == "train" else "test"
        found.setdefault((split, m.group(2)), entry)
    return {
        split: {"images": found[(split, "images")], "labels": found[(split, "labels")]}
        for split in ("train", "test")
        if (split, "images") in found and (split, "labels") in found
    }


def load_idx_split(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of an MNIST-style IDX directory.

    Returns:
        images ``(N, 1, H, W)`` uint8 and labels ``(N,)`` int64.
    """
    pairs = find_idx_files(directory)
    if split not in pairs:
        have = ", ".join(sorted(pairs)) or "none"
        prefixes = "/".join(_SPLIT_PREFIX[split]) if split in _SPLIT_PREFIX else split
        raise DataError(directory, f"no {prefixes}-images/-labels IDX pair for split '{split}' (splits present: {have})")
    img_path, lab_path = pairs[split]["images"], pairs[split]["labels"]
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(img_path, f"expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(lab_path, f"expected integer labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(lab_path, f"{len(labels)} labels for {len(images)} images in {img_path.name}")
    if len(labels) and labels.min() < 0:
        raise DataError(lab_path, f"negative label {int(labels.min())}")
    return images[:, None], labels.astype(np.int64)
