"""Named datasets (search order, verified downloads) and the CIFAR-10 batch reader."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from ganforge.data import download_file, list_datasets, load_dataset, read_cifar_batch, sources, write_idx
from ganforge.errors import DataError


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Point every search location at an empty temporary directory."""
    dirs = {k: tmp_path / k for k in ("root", "env", "debian", "cache")}
    monkeypatch.setattr(sources, "DEBIAN_DIR", dirs["debian"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(dirs["cache"]))
    monkeypatch.delenv("GANFORGE_DATA", raising=False)
    dirs["cache_ds"] = dirs["cache"] / "ganforge" / "datasets"
    return dirs


def _mnist_like(directory, n):
    directory.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 4, 4), n, np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def test_search_order(places, monkeypatch, caplog):
    _mnist_like(places["cache_ds"] / "mnist", 1)
    assert len(load_dataset("mnist", download=False)) == 1
    _mnist_like(places["debian"] / "mnist", 2)
    assert len(load_dataset("mnist", download=False)) == 2
    _mnist_like(places["env"] / "mnist", 3)
    monkeypatch.setenv("GANFORGE_DATA", str(places["env"]))
    assert len(load_dataset("MNIST", download=False)) == 3
    _mnist_like(places["root"], 4)  # root itself, or root/<name>
    assert len(load_dataset("mnist", root=str(places["root"]), download=False)) == 4
    _mnist_like(places["root"] / "mnist", 5)
    ds = load_dataset("mnist", root=str(places["root"]), split="test", download=False)
    assert len(ds) == 5 and ds.name == "mnist/test" and ds.num_classes == 10 and ds.class_names[3] == "3"
    assert "does not match any known checksum" in caplog.text
    assert [d["path"] for d in list_datasets() if d["name"] == "mnist"] == [str(places["env"] / "mnist")]


def test_a_folder_named_like_a_data_set_is_named_in_a_warning(places, tmp_path, monkeypatch, caplog):
    _mnist_like(places["cache_ds"] / "mnist", 1)
    _mnist_like(tmp_path / "work" / "mnist", 6)  # a local folder of the same name
    monkeypatch.chdir(tmp_path / "work")
    assert len(load_dataset("mnist", download=False)) == 1  # the name wins ...
    assert "names the built-in data set" in caplog.text and "./mnist" in caplog.text  # ... and says so
    caplog.clear()
    assert len(load_dataset("./mnist")) == 6 and "built-in" not in caplog.text


def test_not_found_without_download_says_how(places):
    with pytest.raises(DataError, match=r"mnist: not found .*downloading is disabled.*ossci-datasets.*GANFORGE_DATA"):
        load_dataset("mnist", download=False)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", download=False)


def _patched_mnist(monkeypatch, src_dir, digest=None):
    """Make the mnist table entry download from file:// URLs in src_dir."""
    files = {}
    for split, entries in sources.DATASETS["mnist"].splits.items():
        files[split] = tuple(
            sources.RemoteFile(f.name, (src_dir / f.name).as_uri(),
                               (("sha256", digest or hashlib.sha256((src_dir / f.name).read_bytes()).hexdigest()),))
            for f in entries)
    table = dict(sources.DATASETS, mnist=dataclasses.replace(sources.DATASETS["mnist"], splits=files))
    monkeypatch.setattr(sources, "DATASETS", table)


def test_download_from_file_url(places, tmp_path, monkeypatch):
    _mnist_like(tmp_path / "server", 7)
    _patched_mnist(monkeypatch, tmp_path / "server")
    ds = load_dataset("mnist", split="all")
    assert len(ds) == 14
    target = places["cache_ds"] / "mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in (tmp_path / "server").iterdir())


def test_download_into_root(places, tmp_path, monkeypatch):
    _mnist_like(tmp_path / "server", 2)
    _patched_mnist(monkeypatch, tmp_path / "server")
    load_dataset("mnist", root=str(places["root"]))
    assert (places["root"] / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_download_wrong_checksum_leaves_nothing(places, tmp_path, monkeypatch):
    _mnist_like(tmp_path / "server", 2)
    _patched_mnist(monkeypatch, tmp_path / "server", digest="0" * 64)
    with pytest.raises(DataError, match="checksum mismatch.*not kept"):
        load_dataset("mnist")
    assert not (places["cache_ds"] / "mnist").exists()


def test_download_failure_explains(places, tmp_path, monkeypatch):
    (tmp_path / "server").mkdir()
    _patched_mnist(monkeypatch, tmp_path / "server", digest="0" * 64)
    with pytest.raises(DataError, match=r"download failed.*to get it: download .*into .*GANFORGE_DATA"):
        load_dataset("mnist")
    assert not (places["cache_ds"] / "mnist").exists()


def test_download_file_direct(tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    out = download_file(src.as_uri(), tmp_path / "dl" / "blob.bin", (("sha256", "1" * 64), ("md5", md5)))
    assert out.read_bytes() == b"hello"
    with pytest.raises(DataError, match="only http, https and file"):
        download_file("ftp://example.invalid/x", tmp_path / "x", (("md5", md5),))


# --- CIFAR-10 ---------------------------------------------------------------------------------


def _batch(n, seed=0, label_offset=0):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch", b"labels": [(i + label_offset) % 10 for i in range(n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def _py2_pickle(d):
    """Hand-assembled protocol-2 pickle as Python 2's cPickle writes it (str opcodes, numpy.core globals)."""
    def s(v):
        v = v if isinstance(v, bytes) else v.encode()
        return (b"U" + bytes([len(v)]) if len(v) < 256 else b"T" + struct.pack("<i", len(v))) + v

    def i(v):
        return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)

    def obj(v):
        if isinstance(v, bytes):
            return s(v)
        if isinstance(v, list):
            return b"](" + b"".join(obj(x) for x in v) + b"e"
        if isinstance(v, int):
            return i(v)
        dt = b"cnumpy\ndtype\n" + s(v.dtype.str[1:]) + i(0) + i(1) + b"\x87R(" + i(3) + s(v.dtype.str[0]) \
            + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R("
                + i(1) + b"(" + b"".join(i(n) for n in v.shape) + b"t" + dt + b"\x89" + s(v.tobytes()) + b"tb")

    return b"\x80\x02}(" + b"".join(s(k) + obj(v) for k, v in d.items()) + b"u."


def _cifar_dir(path, n=4, writer=lambda d: pickle.dumps(d, protocol=2)):
    path.mkdir(parents=True)
    for k in range(1, 6):
        (path / f"data_batch_{k}").write_bytes(writer(_batch(n, seed=k)))
    (path / "test_batch").write_bytes(writer(_batch(n, seed=9, label_offset=3)))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                             b"dog", b"frog", b"horse", b"ship", b"truck"], b"num_cases_per_batch": n}
    (path / "batches.meta").write_bytes(writer(meta))
    return path


@pytest.mark.parametrize("writer", [_py2_pickle, lambda d: pickle.dumps(d, protocol=2),
                                    lambda d: pickle.dumps(d, protocol=5)], ids=["py2", "proto2", "proto5"])
def test_cifar_batches_load(tmp_path, writer):
    _cifar_dir(tmp_path / "cifar-10-batches-py", writer=writer)
    train = load_dataset(str(tmp_path))
    test = load_dataset(str(tmp_path / "cifar-10-batches-py"), split="test")
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.class_names[0] == "airplane" and train.num_classes == 10
    raw = _batch(4, seed=1)[b"data"]
    assert (train.images[:4].reshape(4, -1).numpy() == raw).all()  # rows are R, G, B planes
    assert test.labels.tolist() == [3, 4, 5, 6]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", ["top", "nested"])
def test_malicious_pickle_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _Evil(marker)
    obj = evil if payload == "top" else {b"data": np.zeros((1, 3072), np.uint8), b"labels": [evil]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(obj))
    with pytest.raises(DataError, match=r"data_batch_1: not a valid CIFAR batch.*refusing to load global"):
        read_cifar_batch(tmp_path / "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize("change,match", [
    ({b"data": np.zeros((4, 100), np.uint8)}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((4, 3072), np.float32)}, "uint8"),
    ({b"labels": [0, 1, 2, 10]}, r"0\.\.9"),
    ({b"labels": [0, 1]}, "2 labels for 4 images"),
])
def test_cifar_validation(tmp_path, change, match):
    d = _batch(4)
    d.update(change)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match=f"data_batch_1.*{match}"):
        read_cifar_batch(tmp_path / "data_batch_1")


def test_cifar_garbage_file(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"\x80\x02 not really a pickle")
    with pytest.raises(DataError, match="test_batch: not a valid CIFAR batch"):
        load_dataset(str(tmp_path), split="test")


def test_cifar_archive_download_extracts_safely(places, tmp_path, monkeypatch):
    built = _cifar_dir(tmp_path / "build" / "cifar-10-batches-py")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(built.iterdir()):
            tar.add(p, arcname=f"cifar-10-batches-py/{p.name}")
        evil = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)

    def sha(p):
        return (("sha256", hashlib.sha256(p.read_bytes()).hexdigest()),)

    old = sources.DATASETS["cifar10"]
    splits = {s: tuple(dataclasses.replace(f, checksums=sha(built / f.name)) for f in fs) for s, fs in old.splits.items()}
    new = dataclasses.replace(old, splits=splits,
                              archive=sources.RemoteFile(archive.name, archive.as_uri(), sha(archive)))
    monkeypatch.setattr(sources, "DATASETS", dict(sources.DATASETS, cifar10=new))
    ds = load_dataset("cifar10", split="test")
    assert ds.images.shape == (4, 3, 32, 32) and ds.name == "cifar10/test"
    target = places["cache_ds"] / "cifar10"
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in built.iterdir())
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))
