"""Self-attention in the ResNets (model.attention): the block, where it goes, its config, training with it."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_config, tiny_dataset
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.models.attention import SelfAttention2d
from ganforge.models.resnet import attention_resolutions
from ganforge.train import transfer
from ganforge.train.trainer import Trainer
from test_resnet import HOST_SYNCING_BACKWARD, _backward_node_names


def _cfg(size=28, attention=0, classes=0, *extra):
    return load_config(None, ["model.arch=resnet", f"data.image_size={size}", "data.channels=1",
                              "model.g_width=8", "model.d_width=8", "model.z_dim=12",
                              f"model.num_classes={classes}", f"model.attention={attention}", *extra])


def _wake(block, gamma=0.7):
    """Give ``gamma`` a value training would: at 0 the branch is invisible."""
    with torch.no_grad():
        block.gamma.fill_(gamma)
    return block


# ------------------------------------------------------------------ the block


@pytest.mark.parametrize("hw", [(14, 14), (7, 7), (8, 8), (3, 5), (1, 6), (1, 1)])
def test_block_is_the_identity_at_initialisation(hw):
    block = SelfAttention2d(16)
    x = torch.randn(3, 16, *hw)
    assert block.gamma.item() == 0.0
    assert torch.equal(block(x), x)
    o = block.attend(x)  # the branch itself is not trivial, and keeps the shape at odd sizes
    assert o.shape == x.shape and o.abs().sum() > 0


def test_block_widths_and_spectral_norm():
    block = SelfAttention2d(32, spectral_norm=True)
    assert [block.query.out_channels, block.key.out_channels, block.value.out_channels] == [4, 4, 16]
    assert block.out.in_channels == 16 and block.out.out_channels == 32
    for conv in (block.query, block.key, block.value, block.out):
        assert torch.nn.utils.parametrize.is_parametrized(conv, "weight") and conv.bias is None
    assert block.gamma.shape == ()
    tiny = SelfAttention2d(4)  # test widths: at least one channel each
    assert tiny.query.out_channels == 1 and tiny.value.out_channels == 2


def test_every_position_can_be_attended_to_at_odd_sizes():
    # 2x2 max-pooling rounds up: a 7x7 map keeps its last row and column as keys.
    block = _wake(SelfAttention2d(8))
    x = torch.zeros(1, 8, 7, 7, requires_grad=True)
    x.data[0, :, 6, 6] = torch.randn(8)
    block.attend(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, :, 6, 6].abs().sum() > 0


def test_block_matches_a_direct_computation():
    # softmax_j(q_i . k_j) over 2x2-max-pooled keys, values averaged with those weights, then W_o.
    torch.manual_seed(0)
    block = _wake(SelfAttention2d(16))
    x = torch.randn(2, 16, 6, 6)
    conv = torch.nn.functional.conv2d
    q = conv(x, block.query.weight).flatten(2)
    k = torch.nn.functional.max_pool2d(conv(x, block.key.weight), 2).flatten(2)
    v = torch.nn.functional.max_pool2d(conv(x, block.value.weight), 2).flatten(2)
    a = torch.softmax(torch.einsum("nci,ncj->nij", q, k), dim=2)
    o = conv(torch.einsum("nij,ncj->nci", a, v).reshape(2, 8, 6, 6), block.out.weight)
    torch.testing.assert_close(block(x), x + 0.7 * o)


def test_gradients_reach_gamma_and_every_attention_convolution():
    block = SelfAttention2d(16, spectral_norm=True)
    x = torch.randn(4, 16, 7, 7)
    block(x).square().sum().backward()
    params = dict(block.named_parameters())
    assert len(params) == 5  # four weights (behind spectral norm) and gamma
    assert params["gamma"].grad is not None and params["gamma"].grad.abs() > 0
    # At gamma = 0 the convolutions get exact zeros: the gradient is there, it only has no size yet.
    assert all(p.grad is not None for p in params.values())
    block.zero_grad()
    _wake(block)(x).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad.abs().sum() > 0, name


def test_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    block = _wake(SelfAttention2d(16))
    x = torch.randn(4, 16, 14, 14)
    want = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = block(x.bfloat16())
    assert got.dtype == torch.bfloat16  # gamma (float32, 0-dim) does not promote the output
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
    block_cl = block.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = block_cl(x_cl)
    torch.testing.assert_close(out, want)
    assert out.is_contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        block_cl(x_cl).float().sum().backward()
    assert block.gamma.grad is not None and torch.isfinite(block.gamma.grad)


def test_block_depends_on_shapes_only():
    # Meta tensors have shapes but no values: anything that reads values back to the host
    # (.item(), boolean masks, data-dependent sizes) fails here, and would break CUDA graph capture.
    with torch.device("meta"):
        block = SelfAttention2d(16, spectral_norm=False)
        x = torch.empty(2, 16, 7, 7, requires_grad=True)
    out = block(x)
    assert out.shape == (2, 16, 7, 7) and out.is_meta
    out.sum().backward()


# ------------------------------------------------------------------ in the networks


def _block_sizes(module, run):
    """Spatial sizes after each G/D block and at the input of the attention block, from forward hooks."""
    blocks, seen = [], []
    hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o.shape[-1])) for b in module.blocks]
    if module.attention is not None:
        hooks.append(module.attention.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1])))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return blocks, seen


@pytest.mark.parametrize("size", [28, 32, 64])
def test_valid_resolutions_are_those_both_networks_have(size):
    G, D = build_models(_cfg(size))
    z, x = torch.randn(2, 12), torch.randn(2, 1, size, size)
    g_sizes, _ = _block_sizes(G, lambda: G(z))
    d_sizes, _ = _block_sizes(D, lambda: D(x))
    assert attention_resolutions(size) == tuple(sorted(set(g_sizes) & set(d_sizes)))
    assert attention_resolutions(28) == (14,) and attention_resolutions(32) == (8, 16)


@pytest.mark.parametrize("size, attention", [(28, 14), (32, 8), (32, 16)])
@pytest.mark.parametrize("classes", [0, 10])
def test_shapes_and_placement(size, attention, classes):
    G, D = build_models(_cfg(size, attention, classes, "model.spectral_norm_d=true"))
    z = torch.randn(3, 12)
    y = torch.tensor([0, 4, 9]) if classes else None
    box = {}
    with torch.no_grad():
        g_sizes, g_seen = _block_sizes(G, lambda: box.setdefault("x", G(z, y)))
        assert box["x"].shape == (3, 1, size, size)
        d_sizes, d_seen = _block_sizes(D, lambda: box.setdefault("d", D(box["x"], y)))
    assert box["d"].shape == (3,)
    # one block each, right after the block whose output has that resolution
    assert g_seen == [attention] and d_seen == [attention]
    assert g_sizes[G.attention_after] == attention and d_sizes[D.attention_after] == attention
    assert G.attention.out.out_channels == G.blocks[G.attention_after].conv2.out_channels
    assert D.attention.out.out_channels == D.blocks[D.attention_after].conv2.out_channels


@pytest.mark.parametrize("size, attention", [(28, 14), (32, 8)])
def test_networks_with_attention_start_as_the_networks_without(size, attention):
    # gamma = 0: a model without attention, loaded into one with it, gives the same outputs exactly
    # (and its tensor names are all still there, only attention.* is new).
    torch.manual_seed(0)
    G0, D0 = build_models(_cfg(size, 0, 10, "model.spectral_norm_d=true"))
    G1, D1 = build_models(_cfg(size, attention, 10, "model.spectral_norm_d=true"))
    for old, new in ((G0, G1), (D0, D1)):
        missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
        assert not unexpected and missing and all(k.startswith("attention.") for k in missing)
    z, y = torch.randn(4, 12), torch.tensor([1, 2, 3, 4])
    x0, x1 = G0(z, y), G1(z, y)
    assert torch.equal(x0, x1)
    assert torch.equal(D0(x0, y), D1(x1, y))


def test_gradients_reach_the_attention_blocks_of_both_networks():
    G, D = build_models(_cfg(28, 14, 10, "model.spectral_norm_d=true", "model.spectral_norm_g=true"))
    _wake(G.attention)
    _wake(D.attention)
    y = torch.randint(0, 10, (6,))
    loss = D(G(torch.randn(6, 12), y), y).mean()
    loss.backward()
    for net in (G, D):
        for name, p in net.attention.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    names = _backward_node_names(loss.grad_fn)
    assert not [n for n in names if n.rstrip("0123456789") in HOST_SYNCING_BACKWARD], names


def test_networks_under_bf16_autocast_and_channels_last():
    G, D = build_models(_cfg(28, 14, 10, "model.spectral_norm_d=true"))
    _wake(G.attention)
    _wake(D.attention)
    G.to(memory_format=torch.channels_last)
    D.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = G(torch.randn(4, 12), y)
        out = D(x.contiguous(memory_format=torch.channels_last), y)
    assert x.shape == (4, 1, 28, 28) and out.shape == (4,)
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert G.attention.gamma.grad is not None and D.attention.gamma.grad is not None


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    G, D = build_models(_cfg(32, 16, 10, "model.spectral_norm_d=true"))
    _wake(G.attention, 0.3)
    _wake(D.attention, -0.2)
    for net, name in ((G, "g"), (D, "d")):
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / f"{name}.safetensors"))
    assert "attention.gamma" in G.state_dict() and "attention.gamma" in D.state_dict()
    torch.manual_seed(1)
    G2, D2 = build_models(_cfg(32, 16, 10, "model.spectral_norm_d=true"))
    G2.load_state_dict(load_file(str(tmp_path / "g.safetensors")))
    D2.load_state_dict(load_file(str(tmp_path / "d.safetensors")))
    for net in (G, D, G2, D2):
        net.eval()  # BN running statistics and spectral norm's stored vectors: no state changes
    z, y = torch.randn(3, 12), torch.tensor([0, 5, 9])
    with torch.no_grad():
        assert torch.equal(G(z, y), G2(z, y))
        x = G(z, y)
        assert torch.equal(D(x, y), D2(x, y))


def test_attention_belongs_to_the_block_it_follows():
    G, D = build_models(_cfg(32, 16, 0, "model.spectral_norm_d=true"))
    G_plain, D_plain = build_models(_cfg(32, 0))
    for net, plain, key in ((G, G_plain, "train.freeze_g"), (D, D_plain, "train.freeze_d")):
        blocks = net.transfer_blocks()
        assert len(blocks) == len(plain.transfer_blocks())  # freeze_g / freeze_d count the same blocks
        owned = [id(p) for b in blocks for part in b for p in part.parameters()]
        assert sorted(owned) == sorted(id(p) for p in net.parameters())
        group = [i for i, b in enumerate(blocks) if net.attention in b]
        assert len(group) == 1 and blocks[group[0]][0] is net.blocks[net.attention_after]
        # freezing up to and including that block freezes the attention block too
        frozen = transfer.freeze(net, group[0] + 1, key)
        assert "attention.gamma" in frozen
        assert not [n for n, _ in net.named_parameters() if n.startswith("attention.")]


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("size, value", [(28, 16), (28, 7), (28, 28), (28, 13), (32, 4), (32, 32), (64, 64)])
def test_resolution_that_is_not_in_both_networks_is_a_config_error(size, value):
    cfg = _cfg(size, value)  # in range: which sizes exist is known once the architecture is
    with pytest.raises(ConfigError) as err:
        build_models(cfg)
    assert err.value.where == "model.attention"
    message = str(err.value)
    assert str(value) in message and "\n" not in message
    assert all(str(r) in message for r in attention_resolutions(size))


@pytest.mark.parametrize("arch", ["dcgan", "mlp", "mlp-res", "inpaint"])
def test_other_architectures_refuse_attention(arch):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"model.arch={arch}", "model.attention=14"])
    assert err.value.where == "model.attention" and "resnet" in str(err.value)
    load_config(None, [f"model.arch={arch}", "model.attention=0"])  # 0 (the default) is fine everywhere


@pytest.mark.parametrize("value", ["-14", "2048", "14.5", "true"])
def test_out_of_range_values_name_the_key(value):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.arch=resnet", f"model.attention={value}"])
    assert err.value.where == "model.attention"


def test_direct_construction_checks_the_resolution_too():
    from ganforge.models.resnet import ResNetDiscriminator, ResNetGenerator

    with pytest.raises(ConfigError, match="model.attention"):
        ResNetGenerator(12, 28, 1, width=8, attention=7)
    with pytest.raises(ConfigError, match="model.attention"):
        ResNetDiscriminator(28, 1, width=8, attention=28)


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("extra", [[], ["train.precision=bf16", "train.channels_last=true"]])
def test_a_tiny_run_trains_with_attention_and_resumes(tmp_path, extra):
    cfg = tiny_config(tmp_path, "model.arch=resnet", "model.attention=14", "model.num_classes=10",
                      "model.spectral_norm_d=true", "loss.name=hinge", "train.steps=4", "train.ckpt_every=2",
                      "train.ema_decay=0.9", *extra)
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    assert t.G.attention is not None and t.D.attention is not None
    logs = t.train_step()
    assert all(torch.isfinite(torch.tensor(logs[k])) for k in ("d_loss", "g_loss"))
    summary = t.train()
    assert summary["step"] == 4
    # Adam moves gamma off zero from the first step on: the branch takes part in training.
    assert t.G.attention.gamma.item() != 0 and t.D.attention.gamma.item() != 0
    resumed = Trainer.resume(tmp_path / "run", dataset=tiny_dataset())
    assert resumed.step == 4
    for a, b in ((t.G, resumed.G), (t.D, resumed.D)):
        assert torch.equal(a.attention.gamma, b.attention.gamma)
