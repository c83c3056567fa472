"""Named datasets: where their files are looked for, and how they are downloaded and verified.

Search order for dataset ``<name>`` (the first directory holding all files of the split wins):

1. the ``root`` argument: ``root/<name>``, then ``root`` itself;
2. ``$GANFORGE_DATA/<name>``;
3. ``/usr/share/datasets/<name>`` (where Debian's ``dataset-*`` packages install);
4. ``$XDG_CACHE_HOME/ganforge/datasets/<name>`` (default ``~/.cache/ganforge/datasets/<name>``).

Downloads go to the first of ``root/<name>``, ``$GANFORGE_DATA/<name>`` and the cache that
applies. A download is written to a temporary file next to its destination, checked
against the known checksums and only then renamed into place, so an interrupted or
corrupt download never looks like a valid dataset.

Checksums: every file lists the digests it may have (algorithm + hex digest, any one
matching is accepted), because the same data is distributed in differently compressed
copies. MD5 values are the ones the dataset authors and torchvision publish for the
upstream files; SHA-256 values identify Debian's repacked Fashion-MNIST files. Files
found locally that match no digest are still used (their structure is validated when
read) and a warning is logged; downloads that match no digest are rejected.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ganforge.data.checksums import file_matches
from ganforge.data.cifar import extract_archive
from ganforge.errors import DataError

__all__ = ["DATASETS", "canonical_name", "locate", "list_datasets", "download_file", "search_dirs", "file_matches"]

log = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets")


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset: its name in the dataset directory, download URL and accepted digests."""

    name: str
    url: str
    checksums: tuple[tuple[str, str], ...]  # (hashlib algorithm, lowercase hex digest); any may match


@dataclass(frozen=True)
class DatasetSource:
    name: str
    format: str  # "idx" or "cifar"
    splits: dict  # split -> tuple of RemoteFile that must be present
    class_names: tuple[str, ...]
    archive: RemoteFile | None = None  # downloaded and unpacked instead of fetching files one by one
    archive_prefix: str = ""  # folder inside the archive that holds the files
    debian_package: str | None = None
    homepage: str = ""

    def files(self, split: str) -> tuple[RemoteFile, ...]:
        if split == "all":
            return tuple(f for s in ("train", "test") for f in self.splits[s])
        return self.splits[split]


_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _idx_files(base: str, digests: dict[str, tuple[tuple[str, str], ...]]) -> dict:
    def f(name):
        return RemoteFile(name, base + name, digests[name])

    return {
        "train": (f("train-images-idx3-ubyte.gz"), f("train-labels-idx1-ubyte.gz")),
        "test": (f("t10k-images-idx3-ubyte.gz"), f("t10k-labels-idx1-ubyte.gz")),
    }


# Fashion-MNIST: MD5 of the upstream files (published in the Fashion-MNIST README and used by
# torchvision); SHA-256 of the same data as repacked by Debian's dataset-fashion-mnist package
# (gzip header without the original file name, hence different bytes).
_FASHION_DIGESTS = {
    "train-images-idx3-ubyte.gz": (
        ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("sha256", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    ),
    "train-labels-idx1-ubyte.gz": (
        ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
        ("sha256", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    ),
    "t10k-images-idx3-ubyte.gz": (
        ("md5", "bef4ecab320f06d8554ea6380940ec79"),
        ("sha256", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    ),
    "t10k-labels-idx1-ubyte.gz": (
        ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
        ("sha256", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
    ),
}
# MNIST: MD5 of the original files, as published by torchvision for its mirror.
_MNIST_DIGESTS = {
    "train-images-idx3-ubyte.gz": (("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),),
    "train-labels-idx1-ubyte.gz": (("md5", "d53e105ee54ea40749a09fcbcd1e9432"),),
    "t10k-images-idx3-ubyte.gz": (("md5", "9fb629c4189551a2d022fa330f9573f3"),),
    "t10k-labels-idx1-ubyte.gz": (("md5", "ec29112dd5afa0611ce80d1b7f02629c"),),
}


def _cifar_file(name: str, md5: str) -> RemoteFile:
    return RemoteFile(name, _CIFAR_URL, (("md5", md5),))


DATASETS: dict[str, DatasetSource] = {
    "fashion-mnist": DatasetSource(
        name="fashion-mnist",
        format="idx",
        splits=_idx_files(_FASHION_URL, _FASHION_DIGESTS),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        debian_package="dataset-fashion-mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "mnist": DatasetSource(
        name="mnist",
        format="idx",
        splits=_idx_files(_MNIST_URL, _MNIST_DIGESTS),
        class_names=tuple(str(d) for d in range(10)),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    # CIFAR-10: MD5 of the archive and of each batch, as published by torchvision.
    "cifar10": DatasetSource(
        name="cifar10",
        format="cifar",
        splits={
            "train": tuple(_cifar_file(n, h) for n, h in (
                ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
            )),
            "test": (_cifar_file("test_batch", "40351d587109b95175f43aff81a1287e"),
                     _cifar_file("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")),
        },
        class_names=("airplane", "automobile", "bird", "cat", "deer",
                     "dog", "frog", "horse", "ship", "truck"),
        archive=RemoteFile("cifar-10-python.tar.gz", _CIFAR_URL, (("md5", "c58f30108f718f92721af3b95e74349a"),)),
        archive_prefix="cifar-10-batches-py/",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar_10": "cifar10"}


def canonical_name(spec: str) -> str | None:
    """The table key for a dataset name (case-insensitive, a few spellings), or None."""
    key = str(spec).strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASETS else None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ganforge" / "datasets"


def search_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Candidate directories for dataset ``name``, in search order."""
    dirs = []
    if root is not None:
        root = Path(os.path.expanduser(root))
        dirs += [root / name, root]
    if os.environ.get("GANFORGE_DATA"):
        dirs.append(Path(os.path.expanduser(os.environ["GANFORGE_DATA"])) / name)
    dirs += [DEBIAN_DIR / name, _cache_dir() / name]
    return dirs


def _download_dir(name: str, root) -> Path:
    if root is not None:
        return Path(os.path.expanduser(root)) / name
    if os.environ.get("GANFORGE_DATA"):
        return Path(os.path.expanduser(os.environ["GANFORGE_DATA"])) / name
    return _cache_dir() / name


def _present(directory: Path, source: DatasetSource, split: str) -> Path | None:
    """The directory that holds every file of ``split`` (``directory`` or its archive subfolder)."""
    candidates = [directory]
    if source.archive_prefix:
        candidates.append(directory / source.archive_prefix.rstrip("/"))
    for d in candidates:
        # An uncompressed copy (train-images-idx3-ubyte) is as good as the .gz.
        if all((d / f.name).is_file() or (d / f.name.removesuffix(".gz")).is_file() for f in source.files(split)):
            return d
    return None


def how_to_get(name: str, directory: Path | None = None) -> str:
    """One sentence telling the user how to obtain dataset ``name``."""
    source = DATASETS[name]
    directory = directory or _download_dir(name, None)
    urls = [source.archive.url] if source.archive else [f.url for f in source.files("all")]
    ways = [f"apt-get install {source.debian_package}"] if source.debian_package else []
    verb = "download and unpack" if source.archive else "download"
    ways.append(f"{verb} {', '.join(urls)} into {directory}")
    ways.append(f"or set GANFORGE_DATA to a directory containing {name}/ with those files")
    return ", or ".join(ways[:-1]) + ", " + ways[-1]


def _verify_found(directory: Path, source: DatasetSource, split: str) -> None:
    for f in source.files(split):
        path = directory / f.name
        if not path.is_file():
            continue  # the uncompressed copy has no published digest; its structure is checked on read
        if not file_matches(path, f.checksums):
            log.warning("%s: does not match any known checksum of %s; using it anyway", path, source.name)


def locate(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Directory holding the files of ``split`` of dataset ``name``; download them if allowed.

    Raises:
        DataError: not found (and download not allowed or failed), or a download with a
            wrong checksum. The message says how to get the data.
    """
    source = DATASETS[name]
    dirs = search_dirs(name, root)
    for d in dirs:
        found = _present(d, source, split)
        if found is not None:
            _verify_found(found, source, split)
            return found
    target = _download_dir(name, root)
    if not download:
        searched = ", ".join(str(d) for d in dirs)
        raise DataError(name, f"not found (looked in {searched}) and downloading is disabled; to get it: {how_to_get(name, target)}")
    _download_dataset(source, split, target)
    return target


def _download_dataset(source: DatasetSource, split: str, target: Path) -> None:
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(target, f"cannot create download directory ({exc.strerror or exc})") from None
    try:
        _fetch(source, split, target)
    except BaseException:
        if created and not any(target.iterdir()):
            target.rmdir()  # leave no empty directory behind after a failed first download
        raise


def _fetch(source: DatasetSource, split: str, target: Path) -> None:
    if source.archive is not None:
        archive = target / source.archive.name
        if not (archive.is_file() and file_matches(archive, source.archive.checksums)):
            download_file(source.archive.url, archive, source.archive.checksums, dataset=source.name)
        extract_archive(archive, target, source.archive_prefix, {f.name: f.checksums for f in source.files("all")})
        archive.unlink()
        return
    for f in source.files(split):
        if not (target / f.name).is_file():
            download_file(f.url, target / f.name, f.checksums, dataset=source.name)


def download_file(url: str, dest: str | os.PathLike, checksums, *, dataset: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` (http, https or file) to ``dest`` atomically, verifying ``checksums``.

    Data goes to a temporary file in ``dest``'s directory that is renamed to ``dest``
    only if its digest matches one of ``checksums``; on any failure nothing is left behind.

    Raises:
        DataError: network or file error (with instructions when ``dataset`` is a known
            name) or checksum mismatch.
    """
    dest = Path(dest)
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "file"):
        raise DataError(url, "only http, https and file URLs can be downloaded")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    algorithms = {a for a, _ in checksums}
    hashers = {a: hashlib.new(a) for a in algorithms}
    try:
        log.info("downloading %s -> %s", url, dest)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                expected_len = resp.headers.get("Content-Length") if scheme != "file" else None
                size = 0
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    size += len(block)
                    for h in hashers.values():
                        h.update(block)
            if expected_len is not None and expected_len.isdigit() and int(expected_len) != size:
                raise OSError(f"connection closed after {size} of {expected_len} bytes")
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            hint = f"; to get it: {how_to_get(dataset, dest.parent)}" if dataset in DATASETS else ""
            raise DataError(url, f"download failed ({reason}){hint}") from None
        got = {a: h.hexdigest() for a, h in hashers.items()}
        if not any(got[a] == h.lower() for a, h in checksums):
            want = " or ".join(f"{a} {h}" for a, h in checksums)
            have = ", ".join(f"{a} {h}" for a, h in sorted(got.items()))
            raise DataError(url, f"checksum mismatch: got {have}, expected {want}; the file was not kept")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def list_datasets(root: str | os.PathLike | None = None) -> list[dict]:
    """One dict per named dataset: ``name``, ``path`` (directory holding all its files, or None),
    ``how`` (how to get it), ``format`` ("idx" or "cifar"), ``classes`` and ``homepage``."""
    out = []
    for name, source in DATASETS.items():
        found = None
        for d in search_dirs(name, root):
            hit = _present(d, source, "all")
            if hit is not None:
                found = str(hit)
                break
        out.append({
            "name": name,
            "path": found,
            "how": how_to_get(name, _download_dir(name, root)),
            "format": source.format,
            "classes": len(source.class_names),
            "homepage": source.homepage,
        })
    return out
