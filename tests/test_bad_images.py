"""A corpus of bad and unusual images, each with its documented outcome, and a Pillow property test."""

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganforge.data import InMemoryBatcher, load_dataset
from ganforge.errors import DataError


def _png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _good(rng, size=12):
    return _png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _jpeg_bytes(rng):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


# name -> (file name, bytes factory, expected outcome: "ok" or "skipped")
CORPUS = {
    "zero_byte": ("empty.png", lambda r: b"", "skipped"),
    "truncated_png": ("trunc.png", lambda r: _good(r, 40)[:60], "skipped"),
    "truncated_jpeg": ("trunc.jpg", lambda r: _jpeg_bytes(r)[:100], "skipped"),
    "text_with_png_name": ("notes.png", lambda r: b"hello, not an image\n" * 10, "skipped"),
    "html_with_jpg_name": ("page.jpg", lambda r: b"<html><body>404</body></html>", "skipped"),
    "palette": ("pal.png", lambda r: _png(r.integers(0, 4, (12, 12), dtype=np.uint8), "P"), "ok"),
    "rgba": ("alpha.png", lambda r: _png(r.integers(0, 256, (12, 12, 4), dtype=np.uint8)), "ok"),
    "gray16": ("deep.png", lambda r: _png(r.integers(0, 65535, (12, 12), dtype=np.uint16)), "ok"),
    "mixed_size": ("big.png", lambda r: _good(r, 31), "ok"),
    "tiny_1px": ("dot.png", lambda r: _good(r, 1), "ok"),
}


def test_corpus_outcomes(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(60):  # enough good images that 5 bad ones stay under the 10% limit
        (folder / f"good{i:02d}.png").write_bytes(_good(rng))
    for fname, make, _ in CORPUS.values():
        (folder / fname).write_bytes(make(rng))
    ds = load_dataset(str(folder), image_size=8, channels=3)
    skipped = {p.split("/")[-1] if isinstance(p, str) else p.name for p, _ in ds.skipped}
    for name, (fname, _, outcome) in CORPUS.items():
        assert (fname in skipped) == (outcome == "skipped"), name
    assert len(ds) == 60 + sum(o == "ok" for _, _, o in CORPUS.values())
    assert ds.images.shape[1:] == (3, 8, 8) and ds.images.dtype == torch.uint8


def test_mostly_bad_folder_is_refused_naming_files(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    rng = np.random.default_rng(1)
    (folder / "ok.png").write_bytes(_good(rng))
    for i in range(3):
        (folder / f"broken{i}.png").write_bytes(b"junk")
    with pytest.raises(DataError) as err:
        load_dataset(str(folder), image_size=8)
    assert "broken" in str(err.value) and str(folder) in str(err.value)


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        load_dataset(str(tmp_path / "empty"), image_size=8)


MODES = {"L": (np.uint8, None), "RGB": (np.uint8, 3), "RGBA": (np.uint8, 4), "I;16": (np.uint16, None)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(sorted(MODES)), h=st.integers(1, 40), w=st.integers(1, 40),
       size=st.sampled_from([4, 8, 16]), channels=st.sampled_from([1, 3]), seed=st.integers(0, 2**31 - 1),
       fmt=st.sampled_from(["PNG", "TIFF", "BMP", "JPEG"]))
def test_any_pillow_image_decodes_to_a_valid_batch_or_a_documented_error(tmp_path_factory, mode, h, w, size,
                                                                         channels, seed, fmt):
    dtype, c = MODES[mode]
    if fmt in ("BMP", "JPEG") and mode in ("I;16", "RGBA"):
        return  # those encoders cannot write that mode; nothing to decode
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    arr = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    folder = tmp_path_factory.mktemp("prop")
    Image.fromarray(arr).save(folder / f"x.{fmt.lower()}", format=fmt)
    try:
        ds = load_dataset(str(folder), image_size=size, channels=channels)
    except DataError as exc:  # the documented outcome for undecodable input: a DataError naming the folder
        assert str(folder) in str(exc)
        return
    images, _ = next(InMemoryBatcher(ds, batch_size=1, seed=0))
    assert images.shape == (1, channels, size, size)
    assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1
