"""The r3gan family: shapes, identity blocks at initialisation, no normalisation, training and bit-identical resume."""

import pytest
import torch
from torch import nn

from conftest import assert_same_weights, full_and_interrupted, tiny_config, tiny_dataset
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.models.r3gan import LowPassResample, ResidualBlock
from ganforge.train.trainer import Trainer


def _cfg(size, channels, classes, *extra):
    return load_config(None, ["model.arch=r3gan", f"data.image_size={size}", f"data.channels={channels}",
                              f"model.num_classes={classes}", "model.g_width=8", "model.d_width=8",
                              "model.z_dim=12", *extra])


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("classes", [0, 10])
def test_shapes(size, classes):
    torch.manual_seed(0)
    G, D = build_models(_cfg(size, 3, classes))
    y = torch.tensor([0, 3, 9]) if classes else None
    x = G(torch.randn(3, 12), y)
    assert x.shape == (3, 3, size, size) and torch.isfinite(x).all()
    logits = D(x, y)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    if classes:
        with pytest.raises(ValueError):
            G(torch.randn(3, 12))
        assert not torch.equal(G(torch.zeros(2, 12), torch.tensor([0, 0])), G(torch.zeros(2, 12), torch.tensor([0, 1])))


def test_every_block_is_the_identity_at_initialisation():
    G, D = build_models(_cfg(32, 1, 10))
    blocks = [m for m in (*G.modules(), *D.modules()) if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2 * 4 * 2  # two networks, four stages at 32 px, two blocks each
    for block in blocks:
        x = torch.randn(2, block.conv1.in_channels, 5, 5)
        assert torch.equal(block(x), x)
        assert block.conv3.weight.abs().sum() == 0 and block.conv1.weight.abs().sum() > 0


def test_no_normalisation_layers_and_spectral_norm_is_refused():
    G, D = build_models(_cfg(28, 1, 10))
    norms = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    for m in (*G.modules(), *D.modules()):
        assert not isinstance(m, norms)
        assert not nn.utils.parametrize.is_parametrized(m)
    with pytest.raises(ConfigError, match="spectral_norm"):
        build_models(_cfg(28, 1, 0, "model.spectral_norm_d=true"))


def test_grouped_convolution_needs_whole_groups():
    with pytest.raises(ConfigError, match="model.group_channels"):
        build_models(_cfg(28, 1, 0, "model.group_channels=12"))


def test_low_pass_resampling_keeps_constants_and_sizes():
    x = torch.full((1, 2, 8, 8), 3.0)
    up, down = LowPassResample(2, up=True)(x), LowPassResample(2, up=False)(x)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[..., :-1, :-1], torch.full_like(up[..., :-1, :-1], 3.0))  # zero-padded edge aside
    torch.testing.assert_close(down[..., 1:, 1:], torch.full_like(down[..., 1:, 1:], 3.0))


@pytest.mark.parametrize("classes", [0, 10])
def test_trains_and_resumes_bit_identically(tmp_path, classes):
    cfg = tiny_config(tmp_path, "model.arch=r3gan", "loss.name=rpgan", "loss.gamma=0.5", "loss.r1_every=2",
                      f"model.num_classes={classes}", "model.blocks_per_stage=1", "train.ema_halflife_kimg=0.05",
                      "train.ema_rampup=0.05")
    ds = tiny_dataset(48, classes=classes or 10)
    full = full_and_interrupted(cfg, tmp_path, ds, stop_after=4)
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    resumed.train()
    assert resumed.step == full.step == 6
    assert_same_weights(full, resumed)
