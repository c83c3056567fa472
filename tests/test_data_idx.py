"""IDX and .npz readers: round trips, and every kind of malformed file -> DataError naming it."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.data import load_dataset, load_npz, read_idx, write_idx
from ganforge.errors import DataError


def _raises(path, match):
    """DataError whose message names ``path`` and matches ``match``."""
    return pytest.raises(DataError, match=rf"{path.name}.*{match}")


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_roundtrip(tmp_path, suffix, dtype):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable


def test_header_layout_and_deterministic_gzip(tmp_path):
    write_idx(tmp_path / "l.idx", np.array([1, 2, 3], np.uint8))
    assert (tmp_path / "l.idx").read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03"
    write_idx(tmp_path / "a.gz", np.zeros((4, 4), np.uint8))
    write_idx(tmp_path / "b.gz", np.zeros((4, 4), np.uint8))
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.booleans(), st.randoms())
def test_roundtrip_property(tmp_path_factory, shape, compress, rnd):
    arr = np.array([rnd.randrange(256) for _ in range(int(np.prod(shape)))], np.uint8).reshape(shape)
    path = tmp_path_factory.mktemp("idx") / ("x.gz" if compress else "x")
    write_idx(path, arr)
    np.testing.assert_array_equal(read_idx(path), arr)


def _raw(code=0x08, dims=(2, 3), data=None):
    head = struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return head + (bytes(int(np.prod(dims))) if data is None else data)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_data(tmp_path, compress):
    payload = _raw()[:-2]
    path = tmp_path / ("short.gz" if compress else "short.idx")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with _raises(path, "truncated"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_trailing_garbage_in_payload(tmp_path, compress):
    payload = _raw() + b"junk"
    path = tmp_path / ("long.gz" if compress else "long.idx")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with _raises(path, "4 bytes of trailing data"):
        read_idx(path)


def test_garbage_after_gzip_stream(tmp_path):
    path = tmp_path / "tail.gz"
    path.write_bytes(gzip.compress(_raw()) + b"not gzip")
    with _raises(path, "after the end of the gzip stream"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_raw(dims=(100, 100), data=np.random.default_rng(0).bytes(10000)))[:-50])
    with _raises(path, "truncated gzip"):
        read_idx(path)


def test_corrupt_gzip_data(tmp_path):
    blob = bytearray(gzip.compress(_raw(dims=(100, 100), data=np.random.default_rng(0).bytes(10000))))
    blob[200:210] = b"\xff" * 10
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(blob))
    with _raises(path, "gzip|truncated"):
        read_idx(path)


def test_bad_gzip_header(tmp_path):
    path = tmp_path / "hdr.gz"
    path.write_bytes(b"\x1f\x8b\x09\x00garbage-not-deflate")
    with _raises(path, "gzip"):
        read_idx(path)


def test_wrong_magic(tmp_path):
    path = tmp_path / "magic.idx"
    path.write_bytes(b"\x12\x34" + _raw()[2:])
    with _raises(path, "magic number 0x12340802"):
        read_idx(path)


def test_unsupported_type(tmp_path):
    path = tmp_path / "type.idx"
    path.write_bytes(_raw(code=0x0A))
    with _raises(path, "unsupported IDX data type 0x0a"):
        read_idx(path)


@pytest.mark.parametrize("blob,match", [(b"", "too short"), (b"\x00\x00", "too short"),
                                        (b"\x00\x00\x08\x00", "0 dimensions"),
                                        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header")])
def test_bad_header(tmp_path, blob, match):
    path = tmp_path / "h.idx"
    path.write_bytes(blob)
    with _raises(path, match):
        read_idx(path)


def test_absurd_declared_size_is_rejected_without_allocating(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(_raw(dims=(2**31, 2**31, 2**31), data=b"")))
    with _raises(path, "truncated"):
        read_idx(path)


def test_missing_file(tmp_path):
    with _raises(tmp_path / "nope.idx", "no such file"):
        read_idx(tmp_path / "nope.idx")


def test_write_rejects_int64(tmp_path):
    with pytest.raises(ValueError, match="IDX type"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


def _idx_dir(path, n_train=6, n_test=4, size=5):
    path.mkdir()
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, size, size), dtype=np.uint8))
        write_idx(path / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 3).astype(np.uint8))
    return path


def test_idx_directory_splits(tmp_path):
    d = _idx_dir(tmp_path / "digits")
    train, test, both = (load_dataset(str(d), split=s) for s in ("train", "test", "all"))
    assert train.images.shape == (6, 1, 5, 5) and test.images.shape == (4, 1, 5, 5)
    assert both.images.shape == (10, 1, 5, 5) and both.num_classes == 3
    assert train.labels.dtype == np.int64 or str(train.labels.dtype) == "torch.int64"
    assert (both.images[:6] == train.images).all()


def test_idx_directory_count_mismatch(tmp_path):
    d = _idx_dir(tmp_path / "digits")
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: 5 labels for 6 images"):
        load_dataset(str(d))


# --- .npz -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,expect", [((4, 6, 6), (4, 1, 6, 6)), ((4, 6, 6, 3), (4, 3, 6, 6)),
                                          ((4, 3, 6, 6), (4, 3, 6, 6)), ((4, 6, 6, 1), (4, 1, 6, 6))])
def test_npz_layouts(tmp_path, shape, expect):
    arr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=arr, labels=np.array([0, 1, 2, 1]))
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert tuple(ds.images.shape) == expect and ds.num_classes == 3
    if len(shape) == 4 and shape[-1] == 3:
        assert ds.images[1, 2, 3, 4] == arr[1, 3, 4, 2]


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 1.0)])
def test_npz_float_ranges(tmp_path, lo, hi):
    x = np.array([lo, (lo + hi) / 2, hi], np.float32).reshape(1, 1, 3)
    np.savez(tmp_path / "f.npz", x=x)
    ds = load_npz(tmp_path / "f.npz")
    assert ds.images.flatten().tolist() == [0, 128, 255] and ds.labels is None


def test_npz_class_names(tmp_path):
    np.savez(tmp_path / "c.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]),
             class_names=np.array([b"cat", b"dog", b"emu"]))
    ds = load_npz(tmp_path / "c.npz")
    assert ds.class_names == ["cat", "dog", "emu"] and ds.num_classes == 3


def test_npz_keras_style_splits(tmp_path):
    z = np.zeros((3, 4, 4), np.uint8)
    np.savez(tmp_path / "k.npz", x_train=z, y_train=np.arange(3), x_test=z[:2], y_test=np.arange(2))
    assert len(load_dataset(str(tmp_path / "k.npz"), split="test")) == 2
    assert len(load_dataset(str(tmp_path / "k.npz"), split="all")) == 5


@pytest.mark.parametrize("arrays,match", [
    ({"images": np.full((2, 4, 4), 2.0)}, r"\[0, 1\] or \[-1, 1\]"),
    ({"images": np.full((2, 4, 4), 300)}, "0..255"),
    ({"images": np.zeros((2, 4, 4, 5), np.uint8)}, "channel axis"),
    ({"pixels": np.zeros((2, 4, 4), np.uint8)}, "no 'images' or 'x'"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3)}, r"shape \(2,\)"),
    ({"images": np.array([None, None], dtype=object)}, "cannot read"),
])
def test_npz_bad_content(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=rf"bad.npz.*{match}"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_dataset(str(tmp_path / "junk.npz"))
