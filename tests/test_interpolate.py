"""Latent interpolation and truncation (ganforge.sampling) and `ganforge sample --interpolate`."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from ganforge.cli import main
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.sampling import generate, interpolation_latents, seed_latent, slerp, truncate_


def _model(tmp_path, *overrides):
    cfg = tiny_config(tmp_path, *overrides)
    torch.manual_seed(0)
    G, _ = build_models(cfg)
    return G.eval(), cfg


@pytest.mark.parametrize("overrides", [(), ("model.num_classes=3",)])
def test_strip_ends_are_the_single_seed_samples(tmp_path, overrides):
    G, cfg = _model(tmp_path, *overrides)
    label = 2 if overrides else None
    z, y = interpolation_latents(cfg, 5, 9, steps=6, label=label)
    assert z.shape == (6, cfg.model.z_dim) and (y is None) == (not overrides)
    with torch.inference_mode():
        strip = G(z, y)
    a = next(generate(G, cfg, 1, seed=5, label=label))
    b = next(generate(G, cfg, 1, seed=9, label=label))
    torch.testing.assert_close(strip[0], a[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(strip[-1], b[0], rtol=0, atol=1e-6)
    assert not torch.allclose(strip[2], a[0], atol=1e-3)  # the middle is somewhere else


def test_conditional_strip_keeps_seed_a_class_when_none_is_given(tmp_path):
    _, cfg = _model(tmp_path, "model.num_classes=5")
    _, ya = seed_latent(cfg, 3)
    _, y = interpolation_latents(cfg, 3, 4, steps=4)
    assert y.tolist() == [int(ya[0])] * 4


def test_slerp_keeps_the_norm_between_vectors_of_equal_norm():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path.norm(dim=1), torch.full((5,), 3.0))
    torch.testing.assert_close(path[2], torch.tensor([3 / 2**0.5, 3 / 2**0.5]))
    lin = torch.lerp(a, b, 0.5)
    assert lin.norm() < 2.2  # what slerp avoids


def test_truncation_bounds_the_noise_and_is_reproducible(tmp_path):
    G, cfg = _model(tmp_path)
    z = truncate_(torch.randn(64, 32, generator=torch.Generator().manual_seed(1)), 0.5,
                  torch.Generator().manual_seed(2))
    assert z.abs().max() <= 0.5 and z.std() > 0.1  # resampled, not clamped to +-0.5
    x1 = next(generate(G, cfg, 4, seed=3, truncation=0.7))
    x2 = next(generate(G, cfg, 4, seed=3, truncation=0.7))
    x3 = next(generate(G, cfg, 4, seed=3))
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    zt, _ = seed_latent(cfg, 3, truncation=0.7)
    assert zt.abs().max() <= 0.7
    with pytest.raises(ConfigError, match="--truncation"):
        next(generate(G, cfg, 1, truncation=-1.0))


def test_bad_interpolation_arguments_are_config_errors(tmp_path):
    _, cfg = _model(tmp_path)
    with pytest.raises(ConfigError, match="--steps"):
        interpolation_latents(cfg, 0, 1, steps=1)
    with pytest.raises(ConfigError, match="mode"):
        interpolation_latents(cfg, 0, 1, steps=3, mode="cubic")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interp")
    args = ["train", "--run-dir", str(tmp / "run"), f"out_dir={tmp}", "data.dataset=" + str(_npz(tmp)),
            "data.channels=1", "model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=8",
            "train.steps=2", "train.log_every=1", "train.sample_every=2", "train.ckpt_every=2"]
    assert main(args) == 0
    return tmp / "run"


def _npz(tmp):
    rng = np.random.default_rng(0)
    path = tmp / "tiny.npz"
    np.savez(path, images=rng.integers(0, 256, (24, 28, 28), dtype=np.uint8))
    return path


def test_cli_writes_a_strip_and_a_gif(run_dir, tmp_path, capsys):
    out, gif = tmp_path / "strip.png", tmp_path / "walk.gif"
    assert main(["sample", str(run_dir), "--interpolate", "0", "7", "--steps", "5", "--out", str(out),
                 "--gif", str(gif)]) == 0
    printed = capsys.readouterr().out
    assert "interpolation strip of 5 images" in printed and str(gif) in printed
    strip = np.asarray(Image.open(out))
    assert strip.shape == (2 + 30, 2 + 5 * 30)  # one row of five 28x28 images with 2 px padding
    with Image.open(gif) as g:
        assert g.n_frames == 8  # there and back: 5 + 3
    # The strip's first image is `ganforge sample --n 1 --seed 0`.
    one = tmp_path / "one.png"
    assert main(["sample", str(run_dir), "--n", "1", "--seed", "0", "--out", str(one)]) == 0
    assert np.array_equal(np.asarray(Image.open(one))[2:30, 2:30], strip[2:30, 2:30])


@pytest.mark.parametrize("argv, where", [(["--gif", "x.gif"], "--gif"), (["--interpolate", "0", "1", "--steps", "1"],
                                                                         "--steps"),
                                         (["--truncation", "0"], "--truncation")])
def test_cli_bad_options_are_one_line_errors(run_dir, tmp_path, capsys, argv, where):
    assert main(["sample", str(run_dir), "--out", str(tmp_path / "o.png"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and where in err and "\n" not in err
