"""Inputs unlike the training images: an error for what cannot work, one warning line for what may work badly."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.errors import DataError
from ganforge.inpaint.domain import TrainingDomain, check_inputs
from ganforge.inpaint.pipeline import InpaintingPipeline
from ganforge.models.encoder_decoder import InpaintGenerator

torch.manual_seed(0)
_G1 = InpaintGenerator(1, width=4, res_blocks=1)


def _pipe(size=28):
    return InpaintingPipeline(_G1, 1, train_size=size)


def _mask(h, w, box):
    m = np.zeros((h, w), bool)
    m[box[0]:box[1], box[2]:box[3]] = True
    return m


def test_an_image_like_training_is_quiet(caplog):
    pipe = _pipe()
    with caplog.at_level(logging.WARNING):
        pipe(np.full((28, 28), 128, np.uint8), _mask(28, 28, (8, 16, 8, 16)))
    assert pipe.warnings == [] and not caplog.records


def test_a_large_rgb_photo_warns_once_per_kind(caplog):
    pipe = _pipe()
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    mask = _mask(512, 512, (100, 300, 100, 300))
    with caplog.at_level(logging.WARNING):
        pipe(photo, mask)
        pipe(photo, mask)  # a second image: no more lines
    texts = [r.getMessage() for r in caplog.records]
    assert len(texts) == 3 and all("\n" not in t for t in texts)
    joined = " ".join(texts)
    assert "trained on grayscale" in joined and "own grayscale image" in joined  # the conversion applied
    assert "28x28" in joined and "512x512" in joined and "downscale" in joined  # what to expect
    assert "hole spans 200x200" in joined
    assert len(pipe.warnings) == 3  # the last call's, for callers (serve)


def test_grayscale_into_an_rgb_model_states_the_conversion():
    notes = check_inputs(TrainingDomain(3, 64), 1, _mask(64, 64, (0, 8, 0, 8)))
    assert len(notes) == 1 and "replicated to RGB" in notes[0]


def test_whole_image_hole_warns():
    notes = check_inputs(TrainingDomain(1, 28), 1, np.ones((28, 28), bool))
    assert any("whole 28x28 image" in n for n in notes)


def test_unknown_training_size_checks_channels_only():
    assert check_inputs(TrainingDomain(1, None), 1, _mask(900, 900, (0, 800, 0, 800))) == []


@pytest.mark.parametrize("scale, hint", [(255.0, "127.5"), (-5.0, "scale the values")])
def test_float_tensor_out_of_range_is_an_error(scale, hint):
    pipe = _pipe()
    image = torch.rand(1, 1, 28, 28) * scale
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 8:16, 8:16] = 1
    with pytest.raises(DataError, match=hint):
        pipe(image, mask)
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        pipe.fill(image, mask)
    pipe(image / abs(scale) * 2 - 1 if scale > 0 else image / 5, mask)  # in range: fine


def test_from_run_knows_the_training_size(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--run-dir", str(run), "data.dataset=" + str(_folder(tmp_path)), "data.channels=1",
            "data.image_size=16", "model.arch=inpaint", "loss.name=hinge", "model.g_width=4", "model.d_width=4",
            "model.res_blocks=1", "train.batch_size=4", "train.steps=1", "train.ckpt_every=1",
            "train.sample_every=1", "train.threads=1"]
    assert main(args) == 0
    pipe = InpaintingPipeline.from_run(run)
    assert pipe.domain == TrainingDomain(1, 16)


def test_cli_warns_about_a_colour_image(tmp_path, capsys, caplog):
    pipe_run = tmp_path / "run"
    folder = _folder(tmp_path)
    assert main(["train", "--run-dir", str(pipe_run), f"data.dataset={folder}", "data.channels=1",
                 "data.image_size=16", "model.arch=inpaint", "loss.name=hinge", "model.g_width=4",
                 "model.d_width=4", "model.res_blocks=1", "train.batch_size=4", "train.steps=1",
                 "train.ckpt_every=1", "train.sample_every=1"]) == 0
    capsys.readouterr()
    img, mask = tmp_path / "big.png", tmp_path / "mask.png"
    Image.fromarray(np.full((96, 96, 3), 100, np.uint8)).save(img)
    Image.fromarray((_mask(96, 96, (40, 50, 40, 50)) * 255).astype(np.uint8)).save(mask)
    with caplog.at_level(logging.WARNING):
        assert main(["inpaint", str(pipe_run), "--image", str(img), "--mask", str(mask),
                     "--out", str(tmp_path / "out.png")]) == 0
    texts = [r.getMessage() for r in caplog.records if r.name == "ganforge.inpaint"]
    assert len(texts) == 2 and "trained on grayscale" in texts[0] and "16x16" in texts[1]


def _folder(tmp_path):
    folder = tmp_path / "photos"
    if not folder.is_dir():
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder
