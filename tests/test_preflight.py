"""The memory pre-flight: cheap, exact on parameters, never above the activations it bounds, and one clear error."""

import pytest
import torch

from conftest import tiny_config
from ganforge.cli import main
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.models import build_models, get_family
from ganforge.models import preflight

CONFIGS = [
    [],  # dcgan 28 px
    ["model.arch=mlp", "model.g_width=32", "model.d_width=32", "model.dropout=0.3"],
    ["model.arch=resnet", "model.g_width=8", "model.d_width=8", "model.num_classes=10",
     "model.spectral_norm_d=true", "model.spectral_norm_g=true"],
    ["model.arch=mlp-res", "model.g_width=16", "model.d_width=16"],
    ["model.arch=inpaint", "model.g_width=8", "model.d_width=8", "model.res_blocks=2"],
    ["model.arch=inpaint", "model.g_width=8", "model.d_width=8", "model.res_blocks=2", "inpaint.blocks=fourier"],
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_estimate_matches_the_real_models(overrides, tmp_path):
    cfg = tiny_config(tmp_path, *overrides)
    family = get_family(cfg.model.arch)
    G, D = family.build(cfg)
    bound = preflight.estimate_memory(cfg, family, exact=False)
    exact = preflight.estimate_memory(cfg, family, exact=True)
    assert exact.exact and not bound.exact
    for est, m in zip((exact.params_g, exact.params_d), (G, D)):
        weights = 4 * sum(t.numel() for name, t in (*m.named_parameters(), *m.named_buffers())
                          if not name.endswith(("._u", "._v")))  # spectral norm's vectors are left out
        assert est == weights
    assert 0 < exact.activations <= bound.activations


def test_preflight_leaves_the_random_state_alone(tmp_path):
    cfg = tiny_config(tmp_path)
    torch.manual_seed(0)
    G1, _ = build_models(cfg)
    torch.manual_seed(0)
    G2, _ = get_family(cfg.model.arch).build(cfg)
    for a, b in zip(G1.state_dict().values(), G2.state_dict().values()):
        assert torch.equal(a, b)


def test_too_little_memory_names_the_key_to_reduce(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "available_ram", lambda: 4 * 2**20)  # 4 MiB
    cfg = tiny_config(tmp_path, "model.g_width=64", "model.d_width=8", "train.batch_size=16")
    with pytest.raises(ConfigError) as err:
        build_models(cfg)
    assert err.value.where in preflight.SIZE_KEYS and "MiB" in err.value.reason
    # a huge batch is blamed on the batch (or the image size, which it multiplies)
    cfg = tiny_config(tmp_path, "train.batch_size=65536")
    with pytest.raises(ConfigError) as err:
        build_models(cfg)
    assert err.value.where in ("train.batch_size", "data.image_size")
    # loading for inference needs the parameters only
    monkeypatch.setattr(preflight, "available_ram", lambda: 64 * 2**20)
    build_models(cfg, training=False)


def test_unknown_available_memory_skips_the_check(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "available_ram", lambda: None)
    build_models(tiny_config(tmp_path, "train.batch_size=65536"))


def test_absurd_sizes_within_ranges_are_refused_quickly():
    cfg = load_config(None, ["model.arch=mlp", "model.g_layers=16", "model.g_width=4096"])
    with pytest.raises(ConfigError) as err:
        build_models(cfg)  # 2^15 * 4096-unit layers: petabytes
    assert err.value.where == "model.g_layers"


def test_cli_train_reports_it_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(preflight, "available_ram", lambda: 2**20)
    assert main(["train", "--run-dir", str(tmp_path / "r"), f"out_dir={tmp_path}", "model.g_width=8",
                 "model.d_width=8", "train.steps=1", "data.dataset=" + str(_npz(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "available" in err and "Traceback" not in err


def _npz(tmp_path):
    import numpy as np

    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((80, 28, 28), dtype=np.uint8))
    return path
