"""The resnet family's bottleneck blocks (``model.block=bottleneck``): shapes, grouping, the
reordered 1x1 convolutions, identity at a zeroed branch, and the options' errors."""

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.models.resnet import DBlock, GBlock


def _cfg(size=28, channels=3, classes=0, *extra):
    return load_config(None, ["model.arch=resnet", f"data.image_size={size}", f"data.channels={channels}",
                              "model.g_width=8", "model.d_width=8", "model.z_dim=12", "model.block=bottleneck",
                              "model.expansion=2", "model.group_channels=4", f"model.num_classes={classes}",
                              *extra])


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("classes", [0, 10])
def test_shapes_and_grouping(size, classes):
    G, D = build_models(_cfg(size, 3, classes))
    z = torch.randn(2, 12)
    y = torch.tensor([0, 9]) if classes else None
    with torch.no_grad():
        x = G(z, y)
        assert x.shape == (2, 3, size, size)
        assert D(x, y).shape == (2,)
    for block in [*G.blocks, *D.blocks]:
        cout = block.conv3.out_channels
        assert block.conv1.out_channels == 2 * cout  # model.expansion
        assert block.conv2.kernel_size == (3, 3) and block.conv2.groups == 2 * cout // 4  # groups of 4 channels
        assert block.conv1.kernel_size == block.conv3.kernel_size == (1, 1)


def test_basic_blocks_keep_their_parameter_names():
    # Checkpoints of the basic ResNet must still load: no new submodules in its blocks.
    G, D = build_models(_cfg(28, 3, 0, "model.block=basic"))
    names = set(G.state_dict()) | set(D.state_dict())
    assert not any("conv3" in n or "bn3" in n for n in names)
    assert "blocks.0.conv2.weight" in G.state_dict() and G.blocks[0].conv2.kernel_size == (3, 3)


def test_generator_block_runs_its_first_1x1_before_upsampling_and_it_is_the_same_function():
    torch.manual_seed(0)
    block = GBlock(8, 4, bottleneck=(8, 2)).eval()  # eval: BN by running statistics, per pixel
    for bn in (block.bn1, block.bn2, block.bn3):
        bn.bn.running_mean.uniform_(-0.5, 0.5)
        bn.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 5, 5)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    h = block.conv1(up(F.relu(block.bn1(x, None))))  # the textbook order: upsample, then the 1x1
    h = block.conv2(F.relu(block.bn2(h, None)))
    reference = block.conv3(F.relu(block.bn3(h, None)))
    torch.testing.assert_close(block.residual(x, None), reference)


def test_discriminator_block_pools_before_its_last_1x1_and_it_is_the_same_function():
    torch.manual_seed(0)
    block = DBlock(6, 4, downsample=True, bottleneck=(8, 2))
    x = torch.randn(2, 6, 8, 8)
    h = block.conv2(F.relu(block.conv1(F.relu(x))))
    reference = F.avg_pool2d(block.conv3(F.relu(h)), 2)  # the 1x1, then the pooling
    torch.testing.assert_close(block.residual(x), reference)


@pytest.mark.parametrize("down", [True, False])
def test_blocks_with_zeroed_last_1x1_are_their_shortcuts(down):
    g, d = GBlock(8, 4, bottleneck=(8, 4)), DBlock(4, 4 if not down else 8, down, bottleneck=(8, 4))
    x = torch.randn(2, 8, 4, 4)
    xd = torch.randn(2, 4, 8, 8)
    assert not torch.allclose(g(x), g.shortcut(x)) and not torch.allclose(d(xd), d.shortcut(xd))
    for layer in (g.conv3, d.conv3):
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.zero_()
    torch.testing.assert_close(g(x), g.shortcut(x))
    torch.testing.assert_close(d(xd), d.shortcut(xd))


def test_every_parameter_gets_a_gradient():
    G, D = build_models(_cfg(28, 3, 10))
    y = torch.tensor([1, 2, 3])
    D(G(torch.randn(3, 12), y), y).sum().backward()
    missing = [n for n, p in [*G.named_parameters(), *D.named_parameters()] if p.grad is None or not p.grad.any()]
    assert not missing


def test_group_channels_that_do_not_divide_name_the_key():
    with pytest.raises(ConfigError, match="model.group_channels"):
        build_models(_cfg(28, 3, 0, "model.group_channels=5"))


@pytest.mark.parametrize("overrides", [["model.arch=dcgan"], ["model.arch=r3gan"]])
def test_block_shape_belongs_to_the_resnet_family(overrides):
    with pytest.raises(ConfigError, match="model.block"):
        _cfg(28, 3, 0, *overrides)


def test_unknown_block_shape_names_the_key():
    with pytest.raises(ConfigError, match="model.block"):
        _cfg(28, 3, 0, "model.block=inverted")
