"""The resnet family's normalisation-free generator (``model.g_norm=none``): no norms left,
each block starting as its shortcut, training moving it away, and the option's errors."""

import pytest
import torch

from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.train.ema import batchnorm_layers


def _cfg(size=28, *extra):
    return load_config(None, ["model.arch=resnet", f"data.image_size={size}", "data.channels=3",
                              "model.g_width=8", "model.d_width=8", "model.z_dim=12", "model.g_norm=none",
                              *extra])


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_no_norms_and_blocks_start_as_their_shortcut(size, block):
    torch.manual_seed(0)
    G, D = build_models(_cfg(size, f"model.block={block}", "model.expansion=2", "model.group_channels=4"))
    assert batchnorm_layers(G) == []  # nothing for the EMA generator's statistics to recompute
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in G.modules())
    h = torch.randn(2, G.c0, G.base, G.base)
    for b in G.blocks:
        with torch.no_grad():
            out = b(h)
            assert torch.equal(b.residual(h, None), torch.zeros_like(out))
            assert torch.equal(out, b.shortcut(h))
        h = out
    x = G(torch.randn(2, 12))
    assert x.shape == (2, 3, size, size) and x.std() > 0  # the shortcuts carry z to the image
    assert D(x).shape == (2,)


def test_a_step_moves_the_residual_branches():
    torch.manual_seed(0)
    G, _ = build_models(_cfg(28))
    x = G(torch.randn(4, 12))
    x.square().mean().backward()
    last = [b.conv2.weight for b in G.blocks]
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in last)
    torch.optim.SGD(G.parameters(), lr=0.1).step()
    with torch.no_grad():
        h = torch.randn(2, G.c0, G.base, G.base)
        assert G.blocks[0].residual(h, None).abs().sum() > 0


def test_batch_keeps_the_norms_and_xavier_branches():
    G, _ = build_models(_cfg(28, "model.g_norm=batch"))
    assert len(batchnorm_layers(G)) == 2 * len(G.blocks) + 1
    assert all(b.conv2.weight.abs().sum() > 0 for b in G.blocks)


def test_spectral_norm_keeps_a_nonzero_branch():
    # A zero matrix has no spectral norm: with it, the branch keeps its Xavier start.
    G, _ = build_models(_cfg(28, "model.spectral_norm_g=true"))
    assert all(b.conv2.weight.abs().sum() > 0 for b in G.blocks)
    with torch.no_grad():
        assert torch.isfinite(G(torch.randn(2, 12))).all()


def test_errors_name_the_option():
    with pytest.raises(ConfigError, match="model.g_norm.*num_classes"):
        build_models(_cfg(28, "model.num_classes=10"))
    with pytest.raises(ConfigError, match="model.g_norm.*model.arch=resnet"):
        load_config(None, ["model.arch=dcgan", "model.g_norm=none"])
    with pytest.raises(ConfigError, match="model.g_norm"):
        load_config(None, ["model.arch=resnet", "model.g_norm=layer"])
