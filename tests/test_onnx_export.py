"""ONNX export: parity with PyTorch under onnxruntime for unconditional, conditional and inpainting generators."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_config
from ganforge.cli import main
from ganforge.errors import ConfigError
from ganforge.models import build_models

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'ganforge[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'ganforge[onnx]')")

from ganforge import onnx_export  # noqa: E402


def _trained_like(tmp_path, *overrides):
    """A tiny generator whose BatchNorm statistics are not the initial ones (as after training)."""
    cfg = tiny_config(tmp_path, *overrides)
    torch.manual_seed(0)
    G, _ = build_models(cfg)
    for m in G.modules():  # per-class gains start equal; spread them as training would
        if isinstance(m, torch.nn.Embedding):
            torch.nn.init.normal_(m.weight, 1.0, 0.3)
    G.train()
    with torch.no_grad():
        for _ in range(3):
            if cfg.model.arch == "inpaint":
                G(torch.rand(4, cfg.data.channels, 28, 28) * 2 - 1, (torch.rand(4, 1, 28, 28) > 0.5).float())
            else:
                y = torch.randint(0, cfg.model.num_classes, (8,)) if cfg.model.num_classes else None
                G(torch.randn(8, cfg.model.z_dim) * 2, y)
    return G.eval(), cfg


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("overrides", [("model.arch=dcgan",), ("model.arch=mlp",)])
def test_unconditional_generator_matches_pytorch(tmp_path, overrides):
    G, cfg = _trained_like(tmp_path, *overrides)
    r = onnx_export.export_model(G, cfg, tmp_path / "g.onnx")
    assert r.kind == "generator" and list(r.inputs) == ["z"]
    assert r.max_abs_diff <= 1e-4 and r.max_abs_diff_other_batch <= 1e-4
    z = torch.randn(5, cfg.model.z_dim)  # a batch size the export never saw
    got = _session(tmp_path / "g.onnx").run(None, {"z": z.numpy()})[0]
    with torch.no_grad():
        ref = G(z).numpy()
    assert got.shape == (5, 1, 28, 28) and np.abs(got - ref).max() <= 1e-4


def test_conditional_resnet_with_spectral_norm_matches_pytorch(tmp_path):
    G, cfg = _trained_like(tmp_path, "model.arch=resnet", "model.num_classes=4", "model.spectral_norm_g=true")
    r = onnx_export.export_model(G, cfg, tmp_path / "cg.onnx")
    assert r.kind == "conditional generator" and list(r.inputs) == ["z", "label"]
    assert r.max_abs_diff <= 1e-4
    z, y = torch.randn(6, cfg.model.z_dim), torch.tensor([0, 1, 2, 3, 3, 0])
    got = _session(tmp_path / "cg.onnx").run(None, {"z": z.numpy(), "label": y.numpy()})[0]
    with torch.no_grad():
        ref = G(z, y).numpy()
    assert np.abs(got - ref).max() <= 1e-4
    # the label input matters: another class gives another image
    other = _session(tmp_path / "cg.onnx").run(None, {"z": z.numpy(), "label": ((y + 1) % 4).numpy()})[0]
    assert np.abs(other - got).max() > 1e-3


def test_resnet_with_self_attention_matches_pytorch(tmp_path):
    from ganforge.models.attention import SelfAttention2d

    G, cfg = _trained_like(tmp_path, "model.arch=resnet", "model.attention=14")
    blocks = [m for m in G.modules() if isinstance(m, SelfAttention2d)]
    assert len(blocks) == 1
    with torch.no_grad():  # gamma starts at 0 (the identity): give the attention branch a say
        blocks[0].gamma.fill_(0.8)
        z = torch.randn(5, cfg.model.z_dim)
        ref = G(z).numpy()
        blocks[0].gamma.zero_()
        assert np.abs(G(z).numpy() - ref).max() > 1e-3  # so the comparison below covers the branch
        blocks[0].gamma.fill_(0.8)
    r = onnx_export.export_model(G, cfg, tmp_path / "ag.onnx")
    assert r.max_abs_diff <= 1e-4 and r.max_abs_diff_other_batch <= 1e-4
    got = _session(tmp_path / "ag.onnx").run(None, {"z": z.numpy()})[0]
    assert got.shape == (5, 1, 28, 28) and np.abs(got - ref).max() <= 1e-4


@pytest.mark.parametrize("blocks", ["dilated", "fourier"])  # fourier: the FFT as DFT matrices in the graph
def test_inpainting_generator_matches_pytorch_and_keeps_known_pixels(tmp_path, blocks):
    G, cfg = _trained_like(tmp_path, "model.arch=inpaint", "model.res_blocks=2", f"inpaint.blocks={blocks}")
    r = onnx_export.export_model(G, cfg, tmp_path / "inp.onnx")
    assert r.kind == "inpaint generator" and list(r.inputs) == ["image", "mask"]
    assert r.max_abs_diff <= 1e-4 and r.max_abs_diff_other_batch <= 1e-4
    image = torch.rand(3, 1, 36, 44) * 2 - 1  # another size, multiples of 4: H and W are dynamic
    mask = torch.zeros(3, 1, 36, 44)
    mask[:, :, 10:25, 5:30] = 1
    got = _session(tmp_path / "inp.onnx").run(None, {"image": image.numpy(), "mask": mask.numpy()})[0]
    with torch.no_grad():
        ref = G(image, mask).numpy()
    assert np.abs(got - ref).max() <= 1e-4
    known = mask.numpy() == 0
    assert np.array_equal(got[known], image.numpy()[known])  # composited: known pixels exact


def test_cli_export_onnx_reports_parity_and_writes_metadata(tmp_path, capsys):
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, images=rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), labels=rng.integers(0, 3, 16))
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), f"data.dataset={npz}", "model.num_classes=3", "model.g_width=4",
                 "model.d_width=4", "model.z_dim=8", "train.batch_size=8", "train.steps=2", "train.log_every=1",
                 "train.sample_every=2", "train.ckpt_every=2"]) == 0
    capsys.readouterr()
    out = tmp_path / "onnx"
    assert main(["export", str(run), "--out", str(out), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "conditional generator" in printed and "max abs difference" in printed
    meta = json.loads((out / "export.json").read_text())
    assert meta["format"] == "onnx" and meta["max_abs_diff"] <= 1e-4 and meta["step"] == 2
    assert (out / "generator.onnx").is_file() and (out / "config.yaml").is_file()
    onnx.checker.check_model(str(out / "generator.onnx"))


def test_missing_extra_is_a_one_line_error_naming_it(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ConfigError, match=r"ganforge\[onnx\]"):
        onnx_export.require_onnx()
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime" in err and "ganforge[onnx]" in err
