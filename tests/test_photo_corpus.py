"""The photo corpus: its committed list, the split by photograph, hash checks and the missing-package error."""

from __future__ import annotations

import hashlib
import re

import pytest

from ganforge.data import photos
from ganforge.errors import DataError
from ganforge.models.encoder_decoder import InpaintGenerator


def test_list_names_each_photograph_once_with_licence_and_split():
    rows = photos.catalogue()
    names = [p.name for p in rows]
    assert len(names) == len(set(names))
    counts = {s: sum(p.split == s for p in rows) for s in ("train", "test", "foreign")}
    assert counts == {"train": 32, "test": 5, "foreign": 5}
    for p in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", p.sha256) and p.licence and p.copyright
        assert (p.package == "scikit-image") == (p.split == "foreign")


def test_evaluation_crops_only_come_from_held_out_photographs():
    held_out = {p.name for p in photos.catalogue() if p.split != "train"}
    crops = photos._all_crops()
    assert len(crops) == 300 and {c.name for c in crops} == held_out
    assert len({c.mask_seed for c in crops}) == len(crops)


def test_parse_spec():
    assert photos.parse_spec("photos") == ("photos", None)
    assert photos.parse_spec("Photos:test") == ("photos", "test")
    assert photos.parse_spec("skimage-photos") == ("skimage-photos", None)
    assert photos.parse_spec("fashion-mnist") is None


def _fake(monkeypatch, path, digest, package="some-wallpapers"):
    row = photos.Photo("x", package, str(path), digest, "8x8", "train", "GPL-2+", "nobody")
    monkeypatch.setattr(photos, "catalogue", lambda: (row,))


def test_missing_package_is_one_line_naming_it_and_the_command(monkeypatch, tmp_path):
    _fake(monkeypatch, tmp_path / "absent.jpg", "0" * 64)
    with pytest.raises(DataError) as err:
        photos.photo_files("photos", "train", install=False)
    msg = str(err.value)
    assert "\n" not in msg and "some-wallpapers" in msg and "scripts/setup.sh photos" in msg
    assert "apt-get install some-wallpapers" in msg


def test_changed_file_is_refused(monkeypatch, tmp_path):
    f = tmp_path / "p.jpg"
    f.write_bytes(b"abc")
    _fake(monkeypatch, f, hashlib.sha256(b"abc").hexdigest())
    assert photos.photo_files("photos", "train", install=False)[0][1] == f
    f.write_bytes(b"abd")
    with pytest.raises(DataError, match="SHA-256"):
        photos.photo_files("photos", "train", install=False)


def _installed() -> bool:
    return not photos._missing(photos._select("photos", "all"))


@pytest.mark.skipif(not _installed(), reason="photo packages not installed (scripts/setup.sh photos)")
def test_installed_corpus_loads_by_name():
    from ganforge.data import load_dataset

    test = load_dataset("photos:test", image_size=16, channels=3)
    assert tuple(test.images.shape) == (200, 3, 16, 16)
    train = load_dataset("photos", split="train", image_size=16, channels=3)
    assert tuple(train.images.shape) == (32, 3, 16, 16)
    assert photos.mask_seeds("photos:test", "train") == list(range(1, 201))


def test_generator_takes_dilations():
    g = InpaintGenerator(3, 4, 4, dilations=(1, 2, 4, 8))
    assert [b.body[0].dilation[0] for b in g.blocks] == [1, 2, 4, 8]
    from ganforge.errors import ConfigError

    with pytest.raises(ConfigError, match="dilations"):
        InpaintGenerator(3, 4, 2, dilations=(0,))


@pytest.mark.parametrize("spec", ["photos:test", "skimage-photos", "photos:all"])
def test_held_out_photographs_are_refused_as_training_data(tmp_path, spec):
    from conftest import tiny_config
    from ganforge.data.subset import training_set
    from ganforge.errors import ConfigError

    cfg = tiny_config(tmp_path, f"data.dataset={spec}", "data.channels=3", "data.crops=true", "task=inpaint",
                      "model.arch=inpaint")
    with pytest.raises(ConfigError, match="held out"):
        training_set(cfg, 64)
