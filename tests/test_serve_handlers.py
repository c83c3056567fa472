"""The web app's logic without a browser: uploads refused with a message, masks, generation, inpainting."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from ganforge.inpaint.pipeline import InpaintingPipeline
from ganforge.models import build_models
from ganforge.sampling import generate
from ganforge.serve import handlers as H


def _png(arr, path):
    Image.fromarray(arr).save(path)
    return path


def test_read_upload_refuses_non_images_huge_images_and_big_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(H.UploadError, match="not an image"):
        H.read_upload(text)
    big = _png(np.zeros((300, 400), np.uint8), tmp_path / "big.png")
    with pytest.raises(H.UploadError, match=r"400x300 pixels; the limit is 10,000 pixels"):
        H.read_upload(big, max_pixels=10_000)
    with pytest.raises(H.UploadError, match="MB; the limit is"):
        H.read_upload(big, max_mb=1e-4)
    with pytest.raises(H.UploadError, match="no image uploaded"):
        H.read_upload(None)
    ok = H.read_upload(_png(np.zeros((20, 30, 3), np.uint8), tmp_path / "ok.png"))
    assert ok.size == (30, 20) and ok.mode == "RGB"


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    # 1-bit PNGs compress to a few KB; only their headers are read.
    bomb = tmp_path / "bomb.png"
    Image.new("1", (3000, 3000)).save(bomb)
    with pytest.raises(H.UploadError, match="3000x3000 pixels; the limit"):
        H.read_upload(bomb)
    Image.new("1", (20000, 20000)).save(bomb)  # beyond PIL's own guard
    with pytest.raises(H.UploadError, match="far larger than the limit"):
        H.read_upload(bomb)


def test_masks_from_uploads_and_brush_layers(tmp_path):
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:7] = 255
    got = H.mask_from_upload(Image.fromarray(m), (10, 12))
    assert got.dtype == bool and got.sum() == 12
    with pytest.raises(H.UploadError, match="the mask is 12x10 but the image is 8x8"):
        H.mask_from_upload(Image.fromarray(m), (8, 8))
    with pytest.raises(H.UploadError, match="no white"):
        H.mask_from_upload(Image.fromarray(np.zeros((8, 8), np.uint8)), (8, 8))
    layer = np.zeros((10, 12, 4), np.uint8)
    layer[1:3, 1:4, 3] = 255  # painted pixels have alpha
    assert H.mask_from_layers([layer], (10, 12)).sum() == 6
    assert H.mask_from_layers([np.zeros((10, 12, 4), np.uint8)], (10, 12)) is None
    assert H.mask_from_layers(None, (10, 12)) is None


def test_editor_images_become_gray_or_rgb_with_alpha_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # transparent -> white
    gray = H.as_model_input(rgba)
    assert gray.shape == (4, 4) and gray[0, 0] == 255 and gray[1, 1] == 100
    rgba[1, 1, 0] = 200
    assert H.as_model_input(rgba).shape == (4, 4, 3)


def test_inpaint_keeps_known_pixels_and_telea_runs(tmp_path):
    cfg = tiny_config(tmp_path, "model.arch=inpaint", "model.res_blocks=1", "model.g_width=4")
    torch.manual_seed(0)
    G, _ = build_models(cfg)
    pipe = InpaintingPipeline(G.eval(), 1)
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    mask = np.zeros((28, 28), bool)
    mask[5:15, 5:15] = True
    out = H.inpaint(pipe, image, mask)
    assert out.shape == image.shape and np.array_equal(out[~mask], image[~mask])
    shown = H.show_holes(image, mask)
    assert shown.shape == (28, 28, 3) and (shown[mask] == (255, 0, 255)).all()
    pytest.importorskip("cv2")
    t = H.telea(image, mask)
    assert t.shape == image.shape and np.array_equal(t[~mask], image[~mask])


def test_a_colour_photo_model_is_served_and_fills_a_colour_upload(tmp_path):
    """A run like the photo presets (RGB, smooth prefill) loads as an inpainter; an RGBA editor image is filled."""
    from ganforge.train.trainer import Trainer

    cfg = tiny_config(tmp_path, "task=inpaint", "model.arch=inpaint", "loss.name=hinge", "data.channels=3",
                      "model.res_blocks=1", "model.g_width=4", "model.d_width=4", "inpaint.prefill=smooth",
                      "train.steps=1", "train.ckpt_every=1")
    Trainer(cfg, tmp_path / "run").train()
    generators, inpainters = H.load_runs([str(tmp_path / "run")])
    assert not generators and list(inpainters) == ["run"]
    pipe = inpainters["run"]
    rgba = np.zeros((40, 52, 4), np.uint8)
    rgba[..., 0] = np.linspace(0, 255, 52, dtype=np.uint8)[None, :]
    rgba[..., 1], rgba[..., 2], rgba[..., 3] = 90, 200, 255
    image = H.as_model_input(rgba)
    assert image.shape == (40, 52, 3)
    mask = np.zeros((40, 52), bool)
    mask[10:30, 20:36] = True
    out = H.inpaint(pipe, image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8 and np.array_equal(out[~mask], image[~mask])
    # The hole continues the horizontal red ramp and the constant green and blue around it.
    # (one training step has moved G a little off the fill)
    assert np.abs(out[mask][:, 1].astype(int) - 90).max() <= 8 and np.abs(out[mask][:, 2].astype(int) - 200).max() <= 8
    red = out[20, 20:36, 0].astype(int)
    assert (np.diff(red) >= -2).all() and red[-1] - red[0] > 40


def test_generated_grid_is_the_sampling_grid_enlarged(tmp_path):
    cfg = tiny_config(tmp_path, "model.num_classes=3")
    torch.manual_seed(0)
    G, _ = build_models(cfg)
    run = H.GeneratorRun("tiny", G.eval(), cfg, 0)
    img = np.asarray(H.generate_grid(run, seed=4, n=4, label=1))
    k = img.shape[0] // (2 * 30 + 2)
    assert k >= 2 and img.shape[:2] == (k * 62, k * 62)
    first = next(generate(G, cfg, 4, seed=4, label=1))[0, 0]
    expected = first.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(img[2 * k:30 * k:k, 2 * k:30 * k:k], expected)
    rows = np.asarray(H.generate_grid(run, seed=0, n=2, per_class=True))
    assert rows.shape[0] > rows.shape[1]  # three rows of two
    strip = np.asarray(H.interpolation_strip(run, 0, 1, steps=5, label=2))
    assert strip.shape[1] > 4 * strip.shape[0]
    with pytest.raises(H.UploadError, match="between 1 and 64"):
        H.generate_grid(run, 0, 0)


def test_inference_modules_do_not_import_training_code():
    code = ("import sys; import ganforge.serve.handlers, ganforge.onnx_export, ganforge.commands.serve; "
            "import ganforge.commands.export; bad = [m for m in sys.modules if m.startswith('ganforge.train')]; "
            "assert not bad, bad")
    src = str(Path(__file__).resolve().parents[1] / "src")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})


def test_serve_binds_to_localhost_by_default_and_names_the_missing_extra(tmp_path, monkeypatch, capsys):
    import builtins

    from ganforge.cli import build_parser, main

    args = build_parser().parse_args(["serve", "some-run"])
    assert args.host == "127.0.0.1" and args.port == 7860
    real_import = builtins.__import__

    def no_gradio(name, *a, **k):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ganforge[serve]" in err


def test_class_choices_list_the_classes_a_run_was_trained_on(tmp_path):
    from ganforge.serve.app import PER_CLASS, RANDOM, _class_choices

    def run(*overrides):
        cfg = tiny_config(tmp_path, *overrides)
        return H.GeneratorRun("r", torch.nn.Identity(), cfg, 0)

    assert _class_choices(run()) == [RANDOM]
    assert _class_choices(run("model.num_classes=3")) == [RANDOM, PER_CLASS, "class 0", "class 1", "class 2"]
    assert _class_choices(run("model.num_classes=10", "data.classes=[9, 4]")) == [RANDOM, PER_CLASS, "class 4",
                                                                                    "class 9"]


@pytest.mark.parametrize("args", [["--max-upload-mb", "nan"], ["--max-upload-mb", "inf"], ["--max-upload-mb", "1e400"],
                                  ["--max-upload-mb", "0"], ["--max-pixels", "0"], ["--port", "70000"],
                                  ["--device", "cuda"], ["--device", "nonsense"]])
def test_serve_options_are_one_line_errors(tmp_path, capsys, args):
    from ganforge.cli import main

    if args == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["serve", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and args[0] in err


def test_seeds_are_checked_with_a_message():
    assert H.check_seed(None) == 0 and H.check_seed(5.0) == 5 and H.check_seed(2**63 - 1) == 2**63 - 1
    for bad in (2**63, -1, 1.5, float("nan"), float("inf"), 1e30, "x"):
        with pytest.raises(H.UploadError, match="must be a whole number between 0 and"):
            H.check_seed(bad, "seed")


def test_deep_images_are_refused_rather_than_clipped(tmp_path):
    import io
    import struct
    import zlib

    gray16 = _png((np.arange(784, dtype=np.uint16).reshape(28, 28) * 80), tmp_path / "gray16.png")
    with pytest.raises(H.UploadError, match="16-bit pixels.*ganforge inpaint"):
        H.read_upload(gray16)
    tif = tmp_path / "float.tif"
    Image.fromarray(np.random.rand(8, 8).astype(np.float32)).save(tif)
    with pytest.raises(H.UploadError, match="floating-point pixels"):
        H.read_upload(tif)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A 16-bit RGB PNG: Pillow opens it as 8-bit "RGB"; only the header's raw mode tells.
    raw = b"".join(b"\0" + bytes(range(24)) for _ in range(4))
    rgb16 = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
             + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert H.header_problem(io.BytesIO(rgb16), "rgb16.png") is not None
    assert "16-bit" in H.header_problem(io.BytesIO(rgb16), "rgb16.png")
    ok = io.BytesIO()
    Image.new("RGB", (4, 4)).save(ok, "PNG")
    ok.seek(0)
    assert H.header_problem(ok, "ok.png") is None
    assert H.header_problem(io.BytesIO(b"not an image"), "notes.txt") is None


def test_routes_that_fetch_urls_or_keep_history_are_blocked():
    from ganforge.serve.guard import blocked

    for path in ("/gradio_api/file=http://localhost:1/x.png", "/file=https://a/b", "/gradio_api/file=//host/x",
                 "/gradio_api/proxy=http://x", "/gradio_api/runs", "/gradio_api/run-history/records",
                 "/gradio_api/monitoring", "/gradio_api/vibe-edit/"):
        assert blocked(path), path
    for path in ("/", "/config", "/gradio_api/upload", "/gradio_api/queue/join",
                 "/gradio_api/file=/tmp/ganforge-serve-x/uploads/runs/a.png", "/assets/index.js"):
        assert not blocked(path), path
