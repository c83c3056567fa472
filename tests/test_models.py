"""Shapes of every model family at tiny widths, conditioning, and unsupported sizes."""

import pytest
import torch

from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.models import build_models


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3)])
@pytest.mark.parametrize("classes", [0, 10])
def test_shapes(arch, size, channels, classes):
    cfg = load_config(None, [f"model.arch={arch}", f"data.image_size={size}", f"data.channels={channels}",
                             "model.g_width=8", "model.d_width=8", "model.z_dim=12", f"model.num_classes={classes}"])
    G, D = build_models(cfg)
    z = torch.randn(3, 12)
    y = torch.tensor([0, 4, 9]) if classes else None
    x = G(z, y)
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    logits = D(x, y)
    assert logits.shape == (3,)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_conditional_output_depends_on_label(arch):
    cfg = load_config(None, [f"model.arch={arch}", "model.g_width=8", "model.d_width=8", "model.num_classes=10"])
    G, D = build_models(cfg)
    G.eval()
    z = torch.randn(2, cfg.model.z_dim)
    a, b = G(z, torch.tensor([1, 1])), G(z, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(D(a, torch.tensor([1, 1])), D(a, torch.tensor([2, 2])))
    with pytest.raises(ValueError):
        G(z)


def test_unsupported_size_names_the_key():
    cfg = load_config(None, ["data.image_size=27"])
    with pytest.raises(ConfigError) as err:
        build_models(cfg)
    assert err.value.where == "data.image_size"


def test_discriminator_has_no_sigmoid():
    torch.manual_seed(0)
    cfg = load_config(None, ["model.g_width=8", "model.d_width=8"])
    _, D = build_models(cfg)
    D.eval()  # in train mode BatchNorm would normalise the input scale away
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in D.modules())
    with torch.no_grad():
        out = D(torch.randn(64, 1, 28, 28) * 50)
    assert (out < 0).any() and (out > 0).any()  # signed logits, not probabilities
