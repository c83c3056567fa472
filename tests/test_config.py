"""Config loading, overrides and validation: bad values name their key."""

import pytest

from ganforge.config import diff_configs, dump_yaml, load_config, load_yaml
from ganforge.errors import ConfigError


def test_presets_load_and_validate():
    import pathlib

    presets = sorted(pathlib.Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))
    assert len(presets) >= 3
    for path in presets:
        cfg = load_config(path)
        assert cfg.name


def test_overrides_apply_with_yaml_types():
    cfg = load_config(None, ["optim.lr_g=1e-4", "train.steps=7", "model.spectral_norm_d=true", "data.root=null"])
    assert cfg.optim.lr_g == 1e-4 and cfg.train.steps == 7 and cfg.model.spectral_norm_d is True
    assert cfg.data.root is None


@pytest.mark.parametrize("override, key", [
    ("optim.lr_g=-1", "optim.lr_g"),
    ("train.steps=0", "train.steps"),
    ("train.batch_size=abc", "train.batch_size"),
    ("loss.name=foo", "loss.name"),
    ("train.bogus=1", "train.bogus"),
    ("nosuchsection.x=1", "nosuchsection"),
    ("data.channels=2", "data.channels"),
    ("train.augment=rotate", "train.augment"),
    ("optim.beta1=1.5", "optim.beta1"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert err.value.where == key


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError):
        load_config(None, ["train.steps"])


def test_unreadable_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(p)
    assert str(p) in str(err.value)
    with pytest.raises(ConfigError):
        load_yaml(tmp_path / "missing.yaml")


def test_dump_roundtrip_and_diff(tmp_path):
    cfg = load_config(None, ["train.steps=11"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(cfg))
    again = load_config(p)
    assert again == cfg
    other = load_config(p, ["optim.lr_d=1e-3"])
    assert diff_configs(cfg, other) == {"optim.lr_d": (2e-4, 1e-3)}


def test_inpainting_loss_weights_moved_from_loss_to_inpaint():
    # Configs written before the inpainting section owned its loss weights still load.
    cfg = load_config(None, ["loss.l1_hole=3.0", "loss.feature_matching=0.5"])
    assert cfg.inpaint.l1_hole == 3.0 and cfg.inpaint.feature_matching == 0.5
    assert not hasattr(cfg.loss, "l1_hole")
    with pytest.raises(ConfigError, match="loss.l1_hole"):
        load_config(None, ["loss.l1_hole=3.0", "inpaint.l1_hole=2.0"])


@pytest.mark.parametrize("override, key", [("model.arch=transformer", "model.arch"), ("task=colourise", "task")])
def test_unregistered_names_are_refused_before_any_work(override, key):
    """Model families and tasks are registries that plug-ins extend, so their names are checked when a config
    is used (the task lookup, which training, --dry-run and every inference command make first)."""
    from ganforge.tasks import task_class

    with pytest.raises(ConfigError) as err:
        task_class(load_config(None, [override]))
    assert err.value.where == key
