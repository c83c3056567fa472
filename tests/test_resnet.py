"""Residual families (resnet, mlp-res): shapes, residual identity, conditioning by CBN and projection."""

import pytest
import torch

from ganforge.config import load_config
from ganforge.models import build_models, model_names
from ganforge.models.conditional import ConditionalBatchNorm2d, ProjectionHead
from ganforge.models.mlp_res import DenseResBlock
from ganforge.models.resnet import DBlock, GBlock, ResNetDiscriminator, ResNetGenerator


def _cfg(arch, size=28, channels=1, classes=0, *extra):
    return load_config(None, [f"model.arch={arch}", f"data.image_size={size}", f"data.channels={channels}",
                              "model.g_width=8", "model.d_width=8", "model.z_dim=12", "model.g_layers=2",
                              "model.d_layers=2", f"model.num_classes={classes}", *extra])


def test_families_are_registered():
    assert {"resnet", "mlp-res"} <= set(model_names())  # importing ganforge.models registers them


@pytest.mark.parametrize("arch", ["resnet", "mlp-res"])
@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3), (128, 3)])
@pytest.mark.parametrize("classes", [0, 10])
def test_shapes(arch, size, channels, classes):
    G, D = build_models(_cfg(arch, size, channels, classes, "model.spectral_norm_d=true"))
    z = torch.randn(2, 12)
    y = torch.tensor([0, 9]) if classes else None
    with torch.no_grad():
        x = G(z, y)
        assert x.shape == (2, channels, size, size)
        assert x.min() >= -1 and x.max() <= 1
        assert D(x, y).shape == (2,)


@pytest.mark.parametrize("size, n_up, base", [(28, 2, 7), (32, 3, 4), (64, 4, 4), (128, 5, 4)])
def test_block_count_follows_resolution(size, n_up, base):
    G = ResNetGenerator(12, size, 3, width=4)
    D = ResNetDiscriminator(size, 3, width=4)
    assert len(G.blocks) == n_up and G.base == base
    downs = [b for b in D.blocks if b.downsample]
    assert len(downs) == n_up and not D.blocks[-1].downsample  # ends at base x base, then one more block
    assert D.blocks[0].first


def test_resnet_channel_schedule_at_128():
    G = ResNetGenerator(12, 128, 3, width=4)
    D = ResNetDiscriminator(128, 3, width=4)
    assert [b.conv2.out_channels for b in G.blocks] == [64, 32, 16, 8, 4]
    assert G.c0 == 64
    assert [b.conv2.out_channels for b in D.blocks] == [4, 8, 16, 32, 64, 64]


def _zero_last(layer):
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()


@pytest.mark.parametrize("cin, cout, classes", [(6, 6, 0), (6, 4, 3)])
def test_gblock_with_zeroed_branch_is_its_shortcut(cin, cout, classes):
    block = GBlock(cin, cout, classes)
    x, y = torch.randn(3, cin, 5, 5), torch.tensor([0, 1, 2]) if classes else None
    assert not torch.allclose(block(x, y), block.shortcut(x))
    _zero_last(block.conv2)
    out = block(x, y)
    assert out.shape == (3, cout, 10, 10)
    torch.testing.assert_close(out, block.shortcut(x))
    if cin == cout:  # identity shortcut: nearest upsampling of the input
        torch.testing.assert_close(out, x.repeat_interleave(2, 2).repeat_interleave(2, 3))


@pytest.mark.parametrize("cin, cout, down, first", [(3, 6, True, True), (6, 8, True, False), (6, 6, False, False)])
def test_dblock_with_zeroed_branch_is_its_shortcut(cin, cout, down, first):
    block = DBlock(cin, cout, down, first=first)
    x = torch.randn(2, cin, 8, 8)
    assert not torch.allclose(block(x), block.shortcut(x))
    _zero_last(block.conv2)
    out = block(x)
    assert out.shape == (2, cout, 4 if down else 8, 4 if down else 8)
    torch.testing.assert_close(out, block.shortcut(x))
    if not down and cin == cout:
        torch.testing.assert_close(out, x)


def test_dense_block_with_zeroed_branch_is_identity():
    block = DenseResBlock(16, "layer")
    x = torch.randn(4, 16)
    assert not torch.allclose(block(x), x)
    _zero_last(block.fc2)
    torch.testing.assert_close(block(x), x)


def test_shortcut_order_is_the_same_function():
    """1x1 conv commutes with nearest upsampling and with average pooling (used to save compute)."""
    conv = torch.nn.Conv2d(3, 5, 1)
    x = torch.randn(2, 3, 6, 6)
    up = torch.nn.functional.interpolate
    torch.testing.assert_close(up(conv(x), scale_factor=2), conv(up(x, scale_factor=2)))
    pool = torch.nn.functional.avg_pool2d
    torch.testing.assert_close(pool(conv(x), 2), conv(pool(x, 2)))


def test_conditional_batchnorm_starts_as_batchnorm():
    cbn, bn = ConditionalBatchNorm2d(4, 3), torch.nn.BatchNorm2d(4)
    x = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(cbn(x, torch.tensor([0, 1, 2, 0, 1, 2])), bn(x))
    with torch.no_grad():
        cbn.gamma.weight[1] = 2.0
        cbn.beta.weight[1] = 0.5
    y = torch.tensor([1, 1, 1, 1, 1, 1])
    torch.testing.assert_close(cbn(x, y), 2.0 * bn(x) + 0.5)
    with pytest.raises(ValueError):
        cbn(x)
    plain = ConditionalBatchNorm2d(4, 0)
    assert plain.bn.affine
    torch.testing.assert_close(plain(x), bn(x))


def test_projection_head_is_an_inner_product():
    head = ProjectionHead(5, 3)
    h, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(head(h, y), (head.embed.weight[y] * h).sum(1))


@pytest.mark.parametrize("arch", ["resnet", "mlp-res"])
def test_conditional_generator_depends_on_label(arch):
    G, _ = build_models(_cfg(arch, classes=10))
    G.eval()  # BN running statistics: the label is the only difference between the two batches
    z = torch.randn(2, 12)
    with torch.no_grad():
        a, b = G(z, torch.tensor([1, 1])), G(z, torch.tensor([2, 2]))
    if arch == "resnet":  # CBN gains start at 1: move one class's embedding as training would
        assert torch.allclose(a, b)
        for m in G.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                torch.nn.init.normal_(m.gamma.weight, 1.0, 0.2)
                torch.nn.init.normal_(m.beta.weight, 0.0, 0.2)
        with torch.no_grad():
            a, b = G(z, torch.tensor([1, 1])), G(z, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError):
        G(z)


@pytest.mark.parametrize("arch", ["resnet", "mlp-res"])
def test_conditional_discriminator_depends_on_label(arch):
    _, D = build_models(_cfg(arch, 28, 1, 10, "model.spectral_norm_d=true"))
    D.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        a, b = D(x, torch.tensor([1, 1])), D(x, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    if arch == "resnet":  # the difference is exactly the projection term
        h = D.features(x)
        torch.testing.assert_close(a - b, D.projection(h, torch.tensor([1, 1])) - D.projection(h, torch.tensor([2, 2])))
    with pytest.raises(ValueError):
        D(x)


def test_unconditional_models_ignore_labels():
    G, D = build_models(_cfg("resnet"))
    G.eval()
    z = torch.randn(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(G(z, torch.tensor([1, 2])), G(z))
        torch.testing.assert_close(D(G(z), torch.tensor([1, 2])), D(G(z)))


@pytest.mark.parametrize("which", ["d", "g"])
def test_spectral_norm_switches(which):
    G, D = build_models(_cfg("resnet", 32, 3, 10, f"model.spectral_norm_{which}=true"))
    wrapped, plain = (D, G) if which == "d" else (G, D)
    convs = [m for m in wrapped.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())
    if which == "d":
        assert torch.nn.utils.parametrize.is_parametrized(D.projection.embed, "weight")
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in wrapped.modules()
                   if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)))


def test_discriminator_has_no_sigmoid_and_gives_logits():
    _, D = build_models(_cfg("resnet"))
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in D.modules())
    with torch.no_grad():
        out = D(torch.randn(16, 1, 28, 28) * 20)
    assert (out.abs() > 1).any()


def test_odd_size_names_the_key():
    from ganforge.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        build_models(_cfg("resnet", 27))
    assert err.value.where == "data.image_size"


def test_class_table_lookup_matches_embedding_values_and_gradients():
    # Conditional layers look up per-class rows with index_select (no Embedding backward,
    # which syncs with the host on CUDA); values and gradients must be the embedding's.
    from ganforge.models.layers import lookup_rows

    torch.manual_seed(0)
    table = torch.nn.Embedding(10, 7)
    y = torch.tensor([3, 0, 9, 3, 5])
    upstream = torch.randn(5, 7)
    (table(y) * upstream).sum().backward()
    want = table.weight.grad.clone()
    table.weight.grad = None
    rows = lookup_rows(table.weight, y)
    assert torch.equal(rows, table(y))
    (rows * upstream).sum().backward()
    torch.testing.assert_close(table.weight.grad, want)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lookup_rows(table.weight, y).dtype == torch.float32  # autocast leaves the rows exact


# Backward nodes whose CUDA kernels read a value back to the host (sorting labels and
# counting segments, or a data-dependent output size): one of them in a training step
# makes CUDA graph capture fail, and the step then runs eagerly with a host wait each time.
HOST_SYNCING_BACKWARD = ("EmbeddingBackward", "EmbeddingDenseBackward", "IndexBackward", "NonzeroBackward",
                         "MaskedSelectBackward", "UniqueBackward", "EmbeddingBagBackward")


def _backward_node_names(root) -> set[str]:
    seen, names, todo = set(), set(), [root]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(next_fn for next_fn, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("arch", ["resnet", "dcgan", "mlp", "mlp-res"])
def test_conditional_training_graph_has_no_host_syncing_backward(arch):
    # The class-conditional step (G's class tables and D's projection, through G into D)
    # must be as capturable as the unconditional one.
    G, D = build_models(_cfg(arch, 28, 1, 10, "model.spectral_norm_d=true"))
    y = torch.randint(0, 10, (6,))
    loss = D(G(torch.randn(6, G.z_dim), y), y).mean() + D(torch.rand(6, 1, 28, 28) * 2 - 1, y).mean()
    names = _backward_node_names(loss.grad_fn)
    assert not [n for n in names if n.rstrip("0123456789") in HOST_SYNCING_BACKWARD], names
    if arch == "resnet":  # class tables (conditional BN, projection) are in the graph, by index_select
        assert any(n.startswith("IndexSelectBackward") for n in names), names
