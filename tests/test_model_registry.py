"""Model families register one way: a toy family defined only here builds, trains, saves and loads."""

import pytest
import torch
from torch import nn

from conftest import tiny_config, tiny_dataset
from ganforge.cli import main
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.models import (build_models, from_pretrained, get_family, model_names, register_model,
                             save_pretrained, unregister_model)
from ganforge.models import preflight


class ToyGenerator(nn.Module):
    """(N, z_dim) [+ labels] -> (N, C, H, W) in [-1, 1]: one linear layer."""

    def __init__(self, z_dim, shape, num_classes):
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        self.fc = nn.Linear(z_dim, shape[0] * shape[1] * shape[2])

    def forward(self, z, y=None):
        if self.embed is not None:
            z = z + self.embed(y)
        return torch.tanh(self.fc(z)).view(z.shape[0], *self.shape)


class ToyDiscriminator(nn.Module):
    """(N, C, H, W) [+ labels] -> (N,) logits."""

    def __init__(self, shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(shape[0] * shape[1] * shape[2], 1)

    def forward(self, x, y=None):
        return self.fc(x.flatten(1)).squeeze(1)


def build_toy(cfg):
    """A one-layer toy GAN."""
    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    return ToyGenerator(cfg.model.z_dim, shape, cfg.model.num_classes), ToyDiscriminator(shape, cfg.model.num_classes)


@pytest.fixture
def toy():
    register_model("toy")(build_toy)
    yield "toy"
    unregister_model("toy")


def test_builtin_families_are_registered_in_their_modules():
    assert model_names()[:5] == ("mlp", "dcgan", "resnet", "mlp-res", "inpaint")
    assert get_family("inpaint").inputs == "image+mask" and get_family("dcgan").inputs == "noise"
    assert get_family("dcgan").build.__module__ == "ganforge.models.dcgan"
    assert get_family("mlp-res").build.__module__ == "ganforge.models.mlp_res"


def test_unknown_arch_names_the_key_and_the_known_families(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.arch=transformer"])
    assert err.value.where == "model.arch" and "dcgan" in err.value.reason and "inpaint" in err.value.reason
    cfg = tiny_config(tmp_path)
    cfg.model.arch = "transformer"  # a config edited in Python after validation
    with pytest.raises(ConfigError) as err:
        build_models(cfg)
    assert err.value.where == "model.arch" and "mlp-res" in err.value.reason


def test_registration_is_checked():
    with pytest.raises(ValueError, match="already registered"):
        register_model("dcgan")(build_toy)
    with pytest.raises(ValueError, match="lower case"):
        register_model("Toy")(build_toy)
    with pytest.raises(ValueError, match="inputs"):
        register_model("toy2", inputs="text")(build_toy)


def test_models_carry_the_config_they_were_built_from(tmp_path):
    cfg = tiny_config(tmp_path, "model.num_classes=10")
    G, D = build_models(cfg)
    assert G.config == cfg and D.config is G.config
    cfg.model.z_dim = 3  # the caller's later edits do not change what the models are
    assert G.config.model.z_dim == 16
    assert "config" not in dict(G.named_children()) and not any("config" in k for k in G.state_dict())


def test_a_family_registered_outside_the_package_trains_saves_and_loads(toy, tmp_path, capsys):
    cfg = tiny_config(tmp_path, "model.arch=toy", "train.steps=4", "train.ckpt_every=2", "train.ema_decay=0.5")
    assert cfg.model.arch == "toy"  # the config accepts a registered name
    preflight.check_fits(cfg, get_family("toy"))
    G, D = build_models(cfg)
    assert isinstance(G, ToyGenerator) and G.config.model.arch == "toy"

    from ganforge.train.trainer import Trainer

    trainer = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in trainer.G.state_dict().items())

    trained = trainer.ema.model if trainer.ema is not None else trainer.G
    out = save_pretrained(trained, tmp_path / "toy-generator", step=trainer.step, source="ema")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "export.json",
                                                    "generator.safetensors"]
    G2, cfg2, step = from_pretrained(out)
    assert step == 4 and cfg2 == cfg and G2.config == cfg and not G2.training
    z, y = torch.randn(5, cfg.model.z_dim), None
    with torch.no_grad():
        assert torch.equal(trained.eval()(z, y), G2(z, y))
    card = (out / "README.md").read_text()
    assert "`toy`" in card and "A one-layer toy GAN" in card and "4 generator steps" in card

    # the CLI takes the toy family's run and its export like any other
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exported")]) == 0
    assert "of step 4" in capsys.readouterr().out
    assert main(["sample", str(tmp_path / "exported"), "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0
    assert "from step 4" in capsys.readouterr().out


def test_a_family_with_its_own_example_inputs_is_measured_with_them(tmp_path):
    calls = []

    def inputs(cfg, batch, device):
        calls.append(device)
        return (torch.zeros(batch, cfg.model.z_dim, device=device), None), \
               (torch.zeros(batch, 1, 28, 28, device=device), None)

    register_model("toy-inputs", example_inputs=inputs)(build_toy)
    try:
        cfg = tiny_config(tmp_path, "model.arch=toy-inputs")
        est = preflight.estimate_memory(cfg, get_family("toy-inputs"), exact=True)
        assert est.exact and calls == ["meta"]
    finally:
        unregister_model("toy-inputs")
