"""``ganforge eval --real DIR --fake DIR``: defaults that fit the folders, honest names, and hostile folders.

Uses the pooled-pixel stand-in extractor (conftest.PooledFeatures): the plumbing is under test.
"""

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_png_folder
from ganforge.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


def _folder(path, seed, n=40, shift=0):
    return write_png_folder(path, seed, n, shift, size=16)


def _eval(tmp_path, real, fake, *extra):
    out = tmp_path / "result.json"
    code = main(["eval", "--real", str(real), "--fake", str(fake), "--json", str(out), *extra])
    return code, (json.loads(out.read_text()) if code == 0 else None)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_two_folders_of_40_use_every_image_and_say_folder(tmp_path, stand_in_extractor, capsys):
    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    code, result = _eval(tmp_path, real, fake, "--metrics", "fid,kid")
    assert code == 0
    assert result["n_fake"] == result["n_real"] == 40
    assert "fid40_folder" in result and result["real"] == f"{real}:folder"
    assert not any("test" in key for key in result)
    # PNG files are uint8: nothing was quantised
    assert "quantised" not in result["protocol"] and "uint8 images as given" in result["protocol"]
    # KID: subsets of half the images, which differ, so the spread is a real spread
    mean, std = result["kid40_folder"]
    assert std > 1e-6 and "KID 100x20" in result["protocol"]
    assert any("biased upwards" in note for note in result["notes"])
    out = capsys.readouterr().out
    assert "note: FID from 40 images is biased upwards" in out


def test_fewer_fakes_than_real_images_default_to_the_smaller_folder(tmp_path, stand_in_extractor):
    real, fake = _folder(tmp_path / "A", 0, n=30), _folder(tmp_path / "B", 1, n=40)
    code, result = _eval(tmp_path, real, fake, "--metrics", "fid")
    assert code == 0 and result["n_fake"] == result["n_real"] == 30 and "fid30_folder" in result


def test_an_explicit_n_beyond_the_folder_is_one_line(tmp_path, stand_in_extractor, capsys):
    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    code, _ = _eval(tmp_path, real, fake, "--metrics", "fid", "--n", "50")
    assert code == 2 and "--n" in _one_error_line(capsys)


def test_kid_of_three_images_has_no_spread(tmp_path, stand_in_extractor, capsys):
    real, fake = _folder(tmp_path / "A", 0, n=3), _folder(tmp_path / "B", 1, n=3)
    code, result = _eval(tmp_path, real, fake, "--metrics", "kid")
    assert code == 0 and isinstance(result["kid3_folder"], float)
    assert "KID on all images" in result["protocol"]
    assert "+-" not in capsys.readouterr().out


def test_a_fifo_named_like_an_image_is_skipped_by_name(tmp_path, stand_in_extractor):
    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    os.mkfifo(real / "f.png")
    os.mkfifo(fake / "f.png")  # opening it would block until a writer came
    code, result = _eval(tmp_path, real, fake, "--metrics", "fid")
    assert code == 0 and result["n_fake"] == 40 and "fid40_folder" in result
    assert any(s.startswith("f.png (not a regular file") for s in result["skipped"])


def _bomb_png(path: Path) -> Path:
    """A valid PNG header claiming 50,000 x 50,000 pixels (far beyond Pillow's limit)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_and_an_unreadable_file_are_skipped_by_name(tmp_path, stand_in_extractor, capsys):
    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    # named to sort first: the evaluation reads files in order until it has n images
    _bomb_png(fake / "-bomb.png")
    (fake / "-broken.png").write_bytes(b"\x89PNG not really")
    code, result = _eval(tmp_path, real, fake, "--metrics", "fid")
    assert code == 0 and result["n_fake"] == 40
    skipped = " ".join(result["skipped"])
    assert "-bomb.png (decompression bomb" in skipped and "-broken.png" in skipped
    captured = capsys.readouterr()
    assert "skipped: -bomb.png" in captured.out and "Traceback" not in captured.err


def test_too_many_bad_files_are_refused_in_one_line(tmp_path, stand_in_extractor, capsys):
    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1, n=10)
    for i in range(5):
        (fake / f"bad{i}.png").write_bytes(b"not an image")
    code, _ = _eval(tmp_path, real, fake, "--metrics", "fid")
    err = _one_error_line(capsys)
    assert code == 2 and "could not be decoded" in err and "bad0.png" in err


def test_a_folder_nested_1100_levels_deep_is_refused_in_one_line(tmp_path, stand_in_extractor, capsys):
    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    deep = fake
    for _ in range(1100):  # one level at a time: Path.mkdir(parents=True) recurses
        deep = deep / "d"
        os.mkdir(deep)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(deep / "x.png")
    try:
        code, _ = _eval(tmp_path, real, fake, "--metrics", "fid")
        err = _one_error_line(capsys)
        assert code == 2 and "nested more than" in err and "RecursionError" not in err
    finally:  # shutil.rmtree recurses: take the chain down from the bottom
        (deep / "x.png").unlink()
        while deep != fake:
            deep.rmdir()
            deep = deep.parent


def test_an_unwritable_json_target_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import ganforge.metrics.evaluator as pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("evaluation started before --json was checked")

    monkeypatch.setattr(pipeline, "InceptionFeatures", no_work)
    monkeypatch.setattr(pipeline, "real_images_for", no_work)
    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    (tmp_path / "file").write_text("x")
    code = main(["eval", "--real", str(real), "--fake", str(fake), "--json", str(tmp_path / "file" / "r.json")])
    assert code == 2 and "--json" in _one_error_line(capsys)


def test_a_full_disk_at_the_json_write_is_one_line_after_the_printed_table(tmp_path, stand_in_extractor,
                                                                          monkeypatch, capsys):
    import errno
    import os

    import ganforge.atomic as atomic

    real, fake = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    out = tmp_path / "r.json"
    out.write_text('{"old": true}')

    real_mkstemp = atomic.tempfile.mkstemp

    def full_at_the_result(*args, prefix="", **kwargs):  # the pre-flight probe of --json still passes
        if prefix.startswith(".r.json."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full_at_the_result)
    code = main(["eval", "--real", str(real), "--fake", str(fake), "--metrics", "fid", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "fid" in captured.out  # the result was printed before the write failed
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "r.json" in err[0] and "Traceback" not in captured.err
    assert out.read_text() == '{"old": true}' and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_precision_recall_of_three_images_is_one_line(tmp_path, stand_in_extractor, capsys):
    real, fake = _folder(tmp_path / "A", 0, n=3), _folder(tmp_path / "B", 1, n=3)
    code = main(["eval", "--real", str(real), "--fake", str(fake), "--metrics", "pr"])
    assert code == 2 and "more than 3 images" in _one_error_line(capsys)
