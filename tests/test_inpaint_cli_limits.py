"""`ganforge inpaint` at the edges: huge and broken files, deep and float pixels, output checks, memory."""

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

import ganforge
from conftest import tiny_config
from ganforge.cli import main
from ganforge.config import dump_yaml
from ganforge.models import build_models
from ganforge.perf.memory import cli_peak_memory

ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(Path(ganforge.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    """An exported, untrained 1-channel inpainting generator (width 4, one residual block)."""
    out = tmp_path_factory.mktemp("gen")
    cfg = tiny_config(out, "model.arch=inpaint", "loss.name=hinge", "data.channels=1", "model.g_width=4",
                      "model.d_width=4", "model.res_blocks=1")
    G, _ = build_models(cfg)
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(out / "generator.safetensors"))
    (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    return out


def _chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _stream_png(path, w, h, row):
    """An 8-bit gray PNG of ``h`` rows, ``row(y) -> bytes``, compressed as it goes (no full-size array)."""
    comp = zlib.compressobj(1)
    idat = b"".join(comp.compress(b"\x00" + row(y)) for y in range(h)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def _with_size(png: bytes, w: int, h: int) -> bytes:
    """The PNG with its IHDR claiming ``w x h`` (valid CRC; the pixel data is left as it was)."""
    data = bytearray(png)
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _png_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _box(h=40, w=40):
    m = np.zeros((h, w), np.uint8)
    m[10:22, 12:30] = 255
    return m


def _files(tmp_path):
    img = tmp_path / "img.png"
    img.write_bytes(_png_bytes(np.tile(np.arange(40, dtype=np.uint8) * 5, (40, 1))))
    mask = tmp_path / "mask.png"
    mask.write_bytes(_png_bytes(_box()))
    return img, mask


def _run(capsys, *args):
    rc = main(["inpaint", *map(str, args)])
    err = capsys.readouterr().err
    return rc, err


def test_a_huge_header_is_one_line_and_exit_2_in_a_subprocess(gen_dir, tmp_path):
    img, mask = _files(tmp_path)
    huge = tmp_path / "huge.png"
    huge.write_bytes(_with_size(img.read_bytes(), 50000, 50000))
    proc = subprocess.run([sys.executable, "-m", "ganforge", "inpaint", str(gen_dir), "--image", str(huge),
                           "--mask", str(mask), "--out", str(tmp_path / "o.png")],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "2,500,000,000 pixels" in proc.stderr and "limit" in proc.stderr
    assert not (tmp_path / "o.png").exists()


def _cases(tmp_path):
    img, mask = _files(tmp_path)
    one = tmp_path / "one.png"
    one.write_bytes(_png_bytes(np.zeros((1, 1), np.uint8)))
    one_mask = tmp_path / "one_mask.png"
    one_mask.write_bytes(_png_bytes(np.full((1, 1), 255, np.uint8)))
    trunc = tmp_path / "trunc.png"
    noisy = _png_bytes(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8))
    trunc.write_bytes(noisy[:len(noisy) // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    big = tmp_path / "big.png"  # a size Pillow accepts, but no data behind it
    big.write_bytes(_with_size(img.read_bytes(), 13000, 13000))
    big_mask = tmp_path / "big_mask.png"
    big_mask.write_bytes(_with_size(mask.read_bytes(), 13000, 13000))
    return {
        "1x1 image": (one, one_mask, "1x1 pixels"),
        "truncated image": (trunc, mask, "cannot read the image"),
        "empty image": (empty, mask, "empty file"),
        "mask of another size": (big, mask, "mask is 40x40 (WxH) but the image"),
        "mask header without data": (big, big_mask, "cannot read the mask"),
        "huge mask": (img, _huge(tmp_path, mask), "mask has 2,500,000,000 pixels"),
    }


def _huge(tmp_path, src):
    p = tmp_path / "huge_mask.png"
    p.write_bytes(_with_size(src.read_bytes(), 50000, 50000))
    return p


@pytest.mark.parametrize("case", ["1x1 image", "truncated image", "empty image", "mask of another size",
                                  "mask header without data", "huge mask"])
def test_unusable_files_are_one_line_errors(gen_dir, tmp_path, capsys, case):
    image, mask, expect = _cases(tmp_path)[case]
    rc, err = _run(capsys, gen_dir, "--image", image, "--mask", mask, "--out", tmp_path / "o.png")
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "o.png").exists()


def test_outputs_are_checked_before_the_model_is_loaded(tmp_path, capsys):
    img, mask = _files(tmp_path)
    (tmp_path / "afile").write_text("x")
    no_run = tmp_path / "not-a-run"  # loading it would fail: the --out check comes first
    rc, err = _run(capsys, no_run, "--image", img, "--mask", mask, "--out", tmp_path / "afile" / "sub" / "o.png")
    assert rc == 2 and err.count("\n") == 1 and "--out" in err and "is a file, not a directory" in err
    rc, err = _run(capsys, no_run, "--image", img, "--mask", mask, "--out", tmp_path)
    assert rc == 2 and "not a run directory" in err  # a writable folder passes the check
    if Path("/proc/self").is_dir():  # a place nobody can create files in, not even root
        rc, err = _run(capsys, no_run, "--image", img, "--mask", mask, "--out", "/proc/ganforge-test/o.png")
        assert rc == 2 and err.count("\n") == 1 and "--out: cannot write into /proc" in err


def test_folder_outputs_that_would_collide_or_replace_inputs_are_refused(gen_dir, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    arr = np.full((12, 12), 80, np.uint8)
    Image.fromarray(arr).save(folder / "a.png")
    Image.fromarray(arr).save(folder / "a.bmp")
    _, mask = _files(tmp_path)
    rc, err = _run(capsys, gen_dir, "--image", folder, "--mask", mask, "--out", tmp_path / "out")
    assert rc == 2 and "would both be written as a.png" in err
    rc, err = _run(capsys, gen_dir, "--image", folder, "--mask", mask, "--out", folder)
    assert rc == 2 and "must differ from the image folder" in err


def test_16_bit_and_float_images_keep_depth_and_known_pixels(gen_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    known = _box() < 128
    deep = tmp_path / "deep.png"
    Image.fromarray(rng.integers(0, 65536, (40, 40), dtype=np.uint16)).save(deep)
    mask = tmp_path / "mask.png"
    Image.fromarray(_box()).save(mask)
    rc, _ = _run(capsys, gen_dir, "--image", deep, "--mask", mask, "--out", tmp_path / "deep_out.png")
    a, b = Image.open(deep), Image.open(tmp_path / "deep_out.png")
    assert rc == 0 and b.mode == "I;16" and np.array_equal(np.asarray(a)[known], np.asarray(b)[known])

    flt = tmp_path / "float.tif"
    Image.fromarray((rng.standard_normal((40, 40)) * 1000).astype(np.float32)).save(flt)
    rc, err = _run(capsys, gen_dir, "--image", flt, "--mask", mask, "--out", tmp_path / "f.png")
    assert rc == 2 and err.count("\n") == 1 and "PNG cannot store the float pixels" in err and ".tif" in err
    assert not (tmp_path / "f.png").exists()
    rc, _ = _run(capsys, gen_dir, "--image", flt, "--mask", mask, "--out", tmp_path / "f.tif")
    a, b = np.asarray(Image.open(flt)), np.asarray(Image.open(tmp_path / "f.tif"))
    assert rc == 0 and b.dtype == np.float32 and np.array_equal(a[known], b[known])
    assert np.isfinite(b).all() and not np.array_equal(a, b)

    folder = tmp_path / "mixed"  # in a folder, float images are written as TIFF, the rest as PNG
    folder.mkdir()
    (folder / "f.tif").write_bytes(flt.read_bytes())
    (folder / "d.png").write_bytes(deep.read_bytes())
    rc, _ = _run(capsys, gen_dir, "--image", folder, "--mask", mask, "--out", tmp_path / "mixed_out")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "mixed_out").iterdir()) == ["d.png", "f.tiff"]


def _needs_exact_peak():
    pytest.importorskip("resource")
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs /proc/self/clear_refs (Linux) to reset the peak resident size")


# Documented in README (Inpainting): beyond the interpreter and torch, inpainting an 8-bit gray
# 10000x10000 image took 3.5 bytes per pixel with the peak reset after the imports (the decoded
# image, its pixel array, the mask and one forward pass over the hole's neighbourhood).
BYTES_PER_GRAY_PIXEL = 5


@pytest.mark.slow
def test_a_10000x10000_image_is_inpainted_in_bounded_memory(gen_dir, tmp_path):
    _needs_exact_peak()
    side, (y0, y1, x0, x1) = 10000, (4900, 5100, 3000, 3300)
    base = (np.arange(side) // 1000 * 20 + 30).astype(np.uint8).tobytes()  # vertical bands
    hole_row = bytearray(side)
    hole_row[x0:x1] = b"\xff" * (x1 - x0)
    img = _stream_png(tmp_path / "big.png", side, side, lambda y: base)
    mask = _stream_png(tmp_path / "mask.png", side, side, lambda y: bytes(hole_row) if y0 <= y < y1 else bytes(side))
    out = tmp_path / "out.png"
    proc, rc, extra, _ = cli_peak_memory(["inpaint", gen_dir, "--image", img, "--mask", mask, "--out", out], env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Warning" not in proc.stderr  # 10^8 px is above Pillow's warning size, below its limit: accepted
    assert rc == 0 and extra < BYTES_PER_GRAY_PIXEL * side * side, extra / 2**20
    print(f"peak extra {extra / 2**20:.0f} MiB = {extra / side**2:.2f} bytes/pixel")
    Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS  # no size warning when reading it back here
    try:
        result = np.asarray(Image.open(out))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    expect = np.frombuffer(base, np.uint8)
    assert result.shape == (side, side)
    assert (result[:y0] == expect).all() and (result[y1:] == expect).all()
    band = result[y0:y1]
    assert (band[:, :x0] == expect[:x0]).all() and (band[:, x1:] == expect[x1:]).all()
    assert not (band[:, x0:x1] == expect[x0:x1]).all()  # the hole was filled


def test_a_white_mask_over_a_10000x10000_image_is_refused_fast(gen_dir, tmp_path):
    _needs_exact_peak()
    side = 10000
    img = _stream_png(tmp_path / "big.png", side, side, lambda y: bytes(side))
    mask = _stream_png(tmp_path / "white.png", side, side, lambda y: b"\xff" * side)
    out = tmp_path / "out" / "o.png"
    proc, rc, extra, seconds = cli_peak_memory(["inpaint", gen_dir, "--image", img, "--mask", mask, "--out", out],
                                               env=ENV, timeout=120)
    assert rc == 2 and seconds < 20, (rc, seconds, proc.stderr[-2000:])
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "white.png: the hole has 100,000,000 missing pixels, above --max-hole-pixels 4,194,304" in err[0]
    assert extra < 4 * side * side  # the mask is decoded to count its hole (measured 3.2 bytes/pixel); the image is not
    assert not (tmp_path / "out").exists()


def test_a_hole_within_a_raised_limit_is_inpainted_with_progress(gen_dir, tmp_path, capsys):
    side = 600
    img = _stream_png(tmp_path / "img.png", side, side, lambda y: bytes(range(200)) * 3)
    mask = _stream_png(tmp_path / "white.png", side, side, lambda y: b"\xff" * side)
    out = tmp_path / "o.png"
    rc, err = _run(capsys, gen_dir, "--image", img, "--mask", mask, "--out", out, "--max-hole-pixels", 300_000)
    assert rc == 2 and "360,000 missing pixels, above --max-hole-pixels 300,000" in err and err.count("\n") == 1
    rc, err = _run(capsys, gen_dir, "--image", img, "--mask", mask, "--out", out, "--max-hole-pixels", 0,
                   "--max-pixels", 128 * 128)
    assert rc == 0 and out.is_file()
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("inpaint: img.png: tiles ") for line in lines), err
    done, total = map(int, lines[-1].rsplit(" ", 1)[1].split("/"))
    assert done == total >= 8
    assert _run(capsys, gen_dir, "--image", img, "--mask", mask, "--out", out, "--max-hole-pixels", -1)[0] == 2


# A colour photograph takes the decoded image, its RGB array, the output array and the image
# written from it (3 bytes per pixel each), the mask (decoded and as an array: 2) and one forward
# pass over the hole's neighbourhood: measured 13.0-13.8 bytes per pixel at 12 megapixels (BENCHMARKS.md).
BYTES_PER_RGB_PIXEL = 20


@pytest.mark.slow
def test_a_12_megapixel_colour_photo_keeps_known_pixels_in_bounded_memory(tmp_path):
    """4000x3000 RGB JPEG, a 300x200 hole, a colour generator with the smooth prefill (as the photo presets)."""
    _needs_exact_peak()
    gen = tmp_path / "gen"
    gen.mkdir()
    cfg = tiny_config(gen, "model.arch=inpaint", "task=inpaint", "loss.name=hinge", "data.channels=3",
                      "model.g_width=8", "model.d_width=4", "model.res_blocks=2", "inpaint.prefill=smooth")
    G, _ = build_models(cfg)
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(gen / "generator.safetensors"))
    (gen / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    w, h, (y0, y1, x0, x1) = 4000, 3000, (1400, 1600, 2000, 2300)
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:h:4, 0:w:4]
    small = np.stack([xs * 255 / w, ys * 255 / h, (xs + ys) * 127 / (w + h) + 64], -1)
    small = small + rng.normal(0, 12, small.shape)
    photo = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    photo.save(tmp_path / "photo.jpg", quality=90)
    del photo, small
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    proc, rc, extra, _ = cli_peak_memory(["inpaint", gen, "--image", tmp_path / "photo.jpg", "--mask",
                                          tmp_path / "mask.png", "--out", out], env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rc == 0 and extra < BYTES_PER_RGB_PIXEL * w * h, extra / 2**20
    original = np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB"))
    result = np.asarray(Image.open(out))
    known = mask == 0
    assert result.shape == (h, w, 3) and np.array_equal(result[known], original[known])  # bit-identical
    hole = result[y0:y1, x0:x1].astype(int)
    assert not np.array_equal(hole, original[y0:y1, x0:x1])
    # The untrained generator returns the smooth fill: the hole continues its surroundings' colour.
    ring = np.concatenate([original[y0 - 8:y0, x0:x1].reshape(-1, 3), original[y1:y1 + 8, x0:x1].reshape(-1, 3)])
    assert np.abs(hole.reshape(-1, 3).mean(0) - ring.mean(0)).max() < 12
    print(f"peak extra {extra / 2**20:.0f} MiB = {extra / (w * h):.1f} bytes/pixel")
