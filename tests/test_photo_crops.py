"""Random-crop training from photographs of any size: decoding, determinism, bit-identical resume, presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_weights
from PIL import Image

from ganforge.config import load_config
from ganforge.data.crops import CropBatcher, PhotoCache
from ganforge.errors import CheckpointError, ConfigError, DataError
from ganforge.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _photo(rng, h, w):
    """A smooth colour gradient with noise: photo-like enough for crops and resizes."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def write_photo_folder(path: Path, seed: int = 0) -> Path:
    """Photographs of different sizes and encodings: EXIF-rotated JPEG, RGBA PNG, 16-bit gray, CMYK JPEG."""
    path.mkdir()
    rng = np.random.default_rng(seed)
    Image.fromarray(_photo(rng, 90, 150)).save(path / "a_plain.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 80x120 (WxH), shown 120x80
    Image.fromarray(_photo(rng, 120, 80)).save(path / "b_rotated.jpg", exif=exif, quality=95)
    rgba = np.dstack([_photo(rng, 100, 100), np.full((100, 100), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(path / "c_alpha.png")
    gray16 = (np.linspace(0, 65535, 70 * 110).reshape(70, 110)).astype(np.uint16)
    Image.fromarray(gray16).save(path / "d_gray16.png")
    Image.fromarray(_photo(rng, 96, 96)).convert("CMYK").save(path / "e_cmyk.jpg", quality=95)
    return path


@pytest.fixture
def photo_dir(tmp_path):
    return write_photo_folder(tmp_path / "photos")


def test_cache_decodes_every_encoding_and_bounds_the_side(photo_dir):
    cache = PhotoCache.from_folder(photo_dir, max_side=100)
    assert len(cache) == 5
    shapes = [a.shape for a in cache.arrays]
    assert all(s[2] == 3 and max(s[:2]) <= 100 for s in shapes)
    assert shapes[1][:2] == (67, 100)  # EXIF orientation applied: stored 120 high, shown 80 high x 120 wide
    assert shapes[0][:2] == (60, 100)  # 90x150 downscaled to a longer side of 100
    assert cache.nbytes == sum(int(np.prod(s)) for s in shapes)
    with pytest.raises(DataError, match="exceed"):
        PhotoCache.from_folder(photo_dir, max_side=100, max_bytes=1000)


def test_a_bad_file_among_photographs_is_skipped_and_named(photo_dir, caplog):
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(_photo(rng, 40, 50)).save(photo_dir / f"h_extra{i}.png")
    (photo_dir / "f_truncated.jpg").write_bytes((photo_dir / "b_rotated.jpg").read_bytes()[:200])
    with caplog.at_level("WARNING"):
        cache = PhotoCache.from_folder(photo_dir, max_side=100)
    assert len(cache) == 11 and "f_truncated.jpg" not in {f.name for f in cache.files}
    assert [Path(p).name for p, _ in cache.skipped] == ["f_truncated.jpg"]
    assert "skipped 1 of 12" in caplog.text and "f_truncated.jpg" in caplog.text
    (photo_dir / "g_not_an_image.png").write_text("not a picture")  # 2 of 13: more than 10% is an error
    with pytest.raises(DataError, match="2 of 13 image files could not be decoded"):
        PhotoCache.from_folder(photo_dir)


def _batches(cache, seed, k, **kw):
    b = CropBatcher(cache, 4, 32, seed, **kw)
    return [next(b)[0] for _ in range(k)]


def test_crops_are_deterministic_by_seed_and_in_range(photo_dir):
    cache = PhotoCache.from_folder(photo_dir)
    a, b, c = _batches(cache, 0, 3), _batches(cache, 0, 3), _batches(cache, 1, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (4, 3, 32, 32) and a[0].min() >= -1 and a[0].max() <= 1
    params = CropBatcher(cache, 64, 32, 0, scale=(0.5, 0.9))._params(0)
    assert any(f for *_, f in params) and not all(f for *_, f in params)
    for i, top, left, side, _ in params:
        h, w = cache.arrays[i].shape[:2]
        assert 32 <= side <= min(h, w) and top + side <= h and left + side <= w
        assert side >= min(round(0.5 * min(h, w)), min(h, w)) - 1 or side == 32
    assert not any(f for *_, f in CropBatcher(cache, 64, 32, 0, flip=False)._params(0))


def test_state_resumes_the_stream_exactly(photo_dir):
    cache = PhotoCache.from_folder(photo_dir)
    first = CropBatcher(cache, 4, 32, 7)
    for _ in range(3):
        next(first)
    state = first.state_dict()
    assert state == {"epoch": 0, "index": 12, "seed": 7, "kind": "crops"}
    second = CropBatcher(cache, 4, 32, 0)
    second.load_state_dict(state)
    assert torch.equal(next(first)[0], next(second)[0])
    with pytest.raises(CheckpointError):
        second.load_state_dict({"epoch": 0, "index": 3, "seed": 0})


def test_bad_settings_are_one_line_errors(photo_dir):
    cache = PhotoCache.from_folder(photo_dir)
    with pytest.raises(ConfigError, match="crop_scale"):
        CropBatcher(cache, 4, 32, 0, scale=(0.0, 1.0))
    with pytest.raises(DataError, match="short side"):
        CropBatcher(cache, 4, 512, 0)


def _tiny(path, tmp_path, photo_dir, *extra):
    return load_config(path, [f"out_dir={tmp_path}", f"data.dataset={photo_dir}", "data.image_size=32",
                              "model.g_width=4", "model.d_width=4", "model.res_blocks=2", "train.batch_size=4",
                              "train.steps=2", "train.log_every=1", "train.sample_every=2", "train.ckpt_every=100",
                              "train.sample_grid=6", "train.eval_every=0", "train.ema_start=0",
                              "train.device=cpu", "train.compile=false", *extra])


@pytest.mark.parametrize("name", ["inpaint-photos-64", "inpaint-photos-128", "inpaint-photos-256-gpu"])
def test_photo_presets_train_two_steps_on_crops(name, tmp_path, photo_dir):
    cfg = _tiny(CONFIGS / f"{name}.yaml", tmp_path, photo_dir, "train.precision=fp32")
    assert cfg.data.crops and cfg.inpaint.dilations
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.batcher, CropBatcher)
    summary = trainer.train()
    assert summary["step"] == 2 and not summary["stopped_early"]
    assert (tmp_path / "run" / "samples" / "step_00000002.png").is_file()


def test_crop_training_resumes_bit_identically(tmp_path, photo_dir):
    cfg = _tiny(CONFIGS / "inpaint-photos-64.yaml", tmp_path, photo_dir, "train.steps=4", "train.ema_decay=0.9",
                "train.precision=fp32")
    full = Trainer(cfg, tmp_path / "full")
    full.train()
    Trainer(cfg, tmp_path / "part").train(stop_after=2)
    resumed = Trainer.resume(tmp_path / "part")
    assert resumed.batcher.state_dict()["index"] == 8
    resumed.train()
    assert_same_weights(full, resumed)


@pytest.mark.parametrize("scale", ["[0.5]", "[0.0,1.0]", "[0.8,0.4]", "[0.5,1.5]"])
def test_a_bad_crop_scale_is_refused_when_the_config_is_read(tmp_path, scale):
    from conftest import tiny_config

    with pytest.raises(ConfigError, match="data.crop_scale"):
        tiny_config(tmp_path, f"data.crop_scale={scale}")
