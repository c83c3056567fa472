"""Image folders: every Pillow mode we promise to handle, EXIF rotation, bad files, labels, sizes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from ganforge.data import load_dataset, load_image_folder
from ganforge.errors import DataError


def _png_bytes(tmp_path):
    p = tmp_path / "_tmp.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    p.unlink()
    return data


def _one(folder, **kw):
    ds = load_image_folder(folder, **kw)
    assert len(ds) == 1
    return ds.images[0].numpy()


def test_gray_modes_stay_one_channel(tmp_path):
    Image.fromarray(np.full((4, 6), 77, np.uint8)).save(tmp_path / "l.png")
    Image.new("1", (6, 4), 1).save(tmp_path / "one.bmp")
    la = Image.new("LA", (6, 4), (10, 255))
    la.putpixel((0, 0), (10, 0))  # fully transparent -> white
    la.save(tmp_path / "la.png")
    ds = load_image_folder(tmp_path)
    assert ds.images.shape == (3, 1, 4, 6) and ds.labels is None and ds.num_classes == 0
    by_name = dict(zip(["l", "la", "one"], ds.images[:, 0].numpy()))
    assert (by_name["l"] == 77).all() and (by_name["one"] == 255).all()
    assert by_name["la"][0, 0] == 255 and by_name["la"][1, 1] == 10


def test_rgba_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (0, 0, 0, 0)  # transparent black becomes white
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black becomes mid gray
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = _one(tmp_path)
    assert img.shape == (3, 2, 2)
    assert img[:, 0, 0].tolist() == [255, 0, 0]
    assert img[:, 0, 1].tolist() == [255, 255, 255]
    assert img[:, 1, 0].tolist() == [127, 127, 127]


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    (tmp_path / "a").mkdir()
    p.save(tmp_path / "a" / "p.png")
    assert _one(tmp_path / "a")[:, 0].T.tolist() == [[0, 0, 255], [0, 255, 0]]
    (tmp_path / "b").mkdir()
    p.save(tmp_path / "b" / "pt.png", transparency=1)  # palette index 1 is transparent
    assert _one(tmp_path / "b")[:, 0].T.tolist() == [[0, 0, 255], [255, 255, 255]]


def test_16bit_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257 * 100, 65535, 1000]], np.uint16)
    im = Image.fromarray(arr)
    assert im.mode.startswith("I")
    im.save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode in ("I;16", "I")
    assert _one(tmp_path)[0, 0].tolist() == [0, 100, 255, 4]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    img = _one(tmp_path).astype(int)
    assert img.shape == (3, 16, 16)
    r, g, b = img[:, 8, 8]
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_applied(tmp_path):
    # Stored 32 wide x 16 high, left half white; orientation 6 means "rotate 90 degrees
    # clockwise to display", which puts the stored left half on top.
    arr = np.zeros((16, 32), np.uint8)
    arr[:, :16] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).convert("RGB").save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    img = _one(tmp_path)
    assert img.shape == (3, 32, 16)  # now 16 wide, 32 high
    assert img[:, :12].mean() > 230 and img[:, 20:].mean() < 25


def test_class_subfolders_give_labels(tmp_path):
    for cls, value in (("dog", 10), ("cat", 20), ("emu", 30)):
        (tmp_path / cls / "deeper").mkdir(parents=True)
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / cls / "a.png")
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / cls / "deeper" / "b.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "stray.png")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ["cat", "dog", "emu"] and ds.num_classes == 3
    assert len(ds) == 6
    for img, label in zip(ds.images, ds.labels.tolist()):
        assert int(img[0, 0, 0]) == {0: 20, 1: 10, 2: 30}[label]
    assert [why for _, why in ds.skipped] == ["outside the class subfolders"]


def test_single_subfolder_is_unlabelled(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "only" / f"{i}.png")
    ds = load_image_folder(tmp_path)
    assert ds.labels is None and len(ds) == 2


def test_bad_files_skipped_and_counted(tmp_path, caplog):
    for i in range(6):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(_png_bytes(tmp_path)[:300])
    (tmp_path / "text.jpg").write_text("this is not a jpeg")
    with caplog.at_level(logging.WARNING, logger="ganforge.data.folder"):
        ds = load_image_folder(tmp_path, max_bad_fraction=0.5)
    assert len(ds) == 6
    reasons = {p.rsplit("/", 1)[-1]: why for p, why in ds.skipped}
    assert set(reasons) == {"empty.png", "trunc.png", "text.jpg"}
    assert reasons["empty.png"] == "empty file" and "truncated" in reasons["trunc.png"]
    assert "skipped 3 of 9" in caplog.text and "empty.png" in caplog.text


def test_too_many_bad_files(tmp_path):
    for i in range(3):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"1 of 4 image files could not be decoded.*10%.*empty.png"):
        load_dataset(str(tmp_path))


def test_no_usable_images(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        load_dataset(str(tmp_path))
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images"):
        load_dataset(str(tmp_path))


def test_decompression_bomb_is_a_bad_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")  # 64 px: fine
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "warn.png")  # 144 px: warning
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "bomb.png")  # 400 px: error
    ds = load_image_folder(tmp_path, max_bad_fraction=1.0)
    assert len(ds) == 1
    assert all("decompression bomb" in why for _, why in ds.skipped) and len(ds.skipped) == 2


def test_sizes_must_match_unless_resized(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    cols = np.tile(np.arange(16, dtype=np.uint8) * 16, (8, 1))  # 8 high, 16 wide, column ramp
    Image.fromarray(cols).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="different sizes.*image_size"):
        load_image_folder(tmp_path)
    ds = load_image_folder(tmp_path, image_size=4)
    assert ds.images.shape == (2, 1, 4, 4)
    # short side 8 -> 4, so 16 wide -> 8 wide; the center 4 columns of the ramp remain.
    row = ds.images[1, 0, 2].int()
    assert (row.diff() > 0).all() and 70 < int(row[0]) < 110 and 150 < int(row[-1]) < 190


def test_channel_rules(tmp_path):
    Image.fromarray(np.full((4, 4), 50, np.uint8)).save(tmp_path / "g.png")
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "r.png")
    ds = load_image_folder(tmp_path)
    assert ds.images.shape == (2, 3, 4, 4)
    assert ds.images[0, :, 0, 0].tolist() == [50, 50, 50]  # gray replicated
    gray = load_dataset(str(tmp_path), channels=1)
    assert gray.images.shape == (2, 1, 4, 4) and int(gray.images[1, 0, 0, 0]) == 76  # 0.299 * 255


def test_train_test_subfolders_select_split(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / split / f"{i}.png")
    assert len(load_dataset(str(tmp_path))) == 3
    assert len(load_dataset(str(tmp_path), split="test")) == 2
    assert len(load_dataset(str(tmp_path), split="all")) == 5
    (tmp_path / "test").rename(tmp_path / "other")
    with pytest.raises(DataError, match="no test/ subfolder"):
        load_dataset(str(tmp_path), split="test")
