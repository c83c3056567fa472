"""CIFAR-10 "python version" batches, read without executing pickled code.

The batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``) are
Python 2 pickles of dicts holding byte strings, lists and numpy arrays. A plain
``pickle.load`` would run whatever callable a tampered file names, so
:class:`SafeUnpickler` resolves only the few numpy globals needed to rebuild arrays and
rejects everything else with :class:`~ganforge.errors.DataError`.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ganforge.data.checksums import file_matches
from ganforge.errors import DataError

__all__ = ["SafeUnpickler", "read_cifar_batch", "load_cifar_split", "find_cifar_dir", "extract_archive"]

_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST = ("test_batch",)
_META = "batches.meta"
_ROW = 3 * 32 * 32

# Taken from numpy's own pickling so they are the real functions on both numpy 1.x
# (numpy.core) and 2.x (numpy._core), without importing deprecated module paths.
_reconstruct = np.zeros(1).__reduce__()[0]
_frombuffer = np.zeros(1).__reduce_ex__(5)[0]


def _latin1_encode(obj, encoding="latin1"):
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1") or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and builtin containers, and nothing else."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _safe_load(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        # encoding="bytes": Python 2 str values (pixel buffers, names) stay bytes.
        obj = SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a malformed pickle can raise nearly any exception type
        raise DataError(path, f"not a valid CIFAR batch pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a pickled dict, got {type(obj).__name__}")
    # Python 2 pickles give bytes keys, Python 3 ones str keys.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file.

    Returns:
        images ``(N, 3, 32, 32)`` uint8 (N is 10000 in the official files) and labels
        ``(N,)`` int64 in 0..9.
    """
    path = Path(path)
    d = _safe_load(path)
    if "data" not in d or "labels" not in d:
        raise DataError(path, f"missing 'data' or 'labels' entry (has: {', '.join(map(str, d))})")
    data, labels = d["data"], d["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(path, f"'data' must be a uint8 array of shape (N, {_ROW}), got {desc}")
    try:
        labels = np.asarray(labels)
    except Exception:
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(path, "'labels' must be a list of integers")
    if len(labels) != len(data):
        raise DataError(path, f"{len(labels)} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(path, f"labels must be in 0..9, found {int(labels.min())}..{int(labels.max())}")
    # Each row is the red plane, then green, then blue, each 32x32 row-major: already CHW.
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels.astype(np.int64)


def read_cifar_meta(path: str | os.PathLike) -> list[str]:
    """Class names from ``batches.meta``."""
    path = Path(path)
    names = _safe_load(path).get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(path, "'label_names' must be a list of strings")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def find_cifar_dir(directory: str | os.PathLike) -> Path | None:
    """``directory`` or its ``cifar-10-batches-py`` subfolder if it holds CIFAR batches, else None."""
    directory = Path(directory)
    for d in (directory, directory / "cifar-10-batches-py"):
        if any((d / n).is_file() for n in _TRAIN + _TEST):
            return d
    return None


def load_cifar_split(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Load the train (5 batches) or test split of a CIFAR-10 batch directory.

    Returns:
        images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` int64, class names from
        ``batches.meta`` (None when that file is absent).
    """
    directory = Path(directory)
    names = _TRAIN if split == "train" else _TEST
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise DataError(directory, f"missing CIFAR-10 batch file(s) for split '{split}': {', '.join(missing)}")
    parts = [read_cifar_batch(directory / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    meta = directory / _META
    class_names = read_cifar_meta(meta) if meta.is_file() else None
    if class_names is not None and len(class_names) != 10:
        raise DataError(meta, f"expected 10 class names, got {len(class_names)}")
    return images, labels, class_names


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike, prefix: str, wanted: dict) -> None:
    """Extract the files named in ``wanted`` (name -> accepted checksums) from ``prefix`` in a tar archive.

    Only regular-file members whose path is exactly ``prefix + name`` are read, and each is
    written under a name chosen here, so links and ``..`` paths in the archive cannot
    write outside ``target``. Each file is verified before being renamed into place.
    """
    archive, target = Path(archive), Path(target)
    remaining = dict(wanted)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not member.name.startswith(prefix):
                    continue
                name = member.name[len(prefix):]
                if name not in remaining or not member.isfile():
                    continue
                src = tar.extractfile(member)
                fd, tmp_name = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".part")
                tmp = Path(tmp_name)
                try:
                    with os.fdopen(fd, "wb") as out:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            out.write(block)
                    if not file_matches(tmp, remaining[name]):
                        raise DataError(archive, f"member {member.name} does not match its published checksum")
                    os.replace(tmp, target / name)
                finally:
                    tmp.unlink(missing_ok=True)
                del remaining[name]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(archive, f"cannot extract ({exc})") from None
    if remaining:
        raise DataError(archive, f"archive lacks {', '.join(prefix + n for n in sorted(remaining))}")
