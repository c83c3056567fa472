"""train.init_from / init_partial / freeze_d / freeze_g / init_lr_mult: loading, refusing, freezing, resuming."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_same_weights, full_and_interrupted, tiny_config, tiny_dataset
from ganforge.artifacts import export_generator
from ganforge.config import load_config
from ganforge.errors import CheckpointError, ConfigError
from ganforge.models import build_models
from ganforge.train import transfer
from ganforge.train.trainer import Trainer


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished tiny run with an EMA generator: the pretrained weights."""
    tmp = tmp_path_factory.mktemp("source")
    cfg = tiny_config(tmp, "train.steps=3", "train.ema_decay=0.9")
    t = Trainer(cfg, tmp / "src", dataset=tiny_dataset())
    t.train()
    return tmp / "src", {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in t.modules().items()}


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_new_run_starts_from_a_run_directory(tmp_path, source):
    src, weights = source
    cfg = tiny_config(tmp_path, f"train.init_from={src}", "train.ema_decay=0.9")
    t = Trainer(cfg, tmp_path / "ft", dataset=tiny_dataset())
    mods = t.modules()
    for name in ("G", "D", "G_ema"):
        assert _same(_state(mods[name]), weights[name]), name
    assert t.step == 0 and not t.opt_g.state and not t.opt_d.state  # optimizer starts fresh
    assert t.transfer.kind == "run" and t.transfer.source_step == 3
    t.train(stop_after=1)
    event = json.loads((tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()[0])
    assert event["event"] == "init_from" and event["step"] == 0 and event["source"] == str(src)
    assert event["loaded"] == {"G": len(weights["G"]), "D": len(weights["D"]), "G_ema": len(weights["G_ema"])}
    assert json.loads((tmp_path / "ft" / "transfer.json").read_text())["kind"] == "run"
    assert load_config(tmp_path / "ft" / "config.yaml").train.init_from == str(src)


def test_from_an_exported_generator_and_a_bare_safetensors_file(tmp_path, source):
    src, weights = source
    export = export_generator(src, tmp_path / "export")  # the EMA generator
    t = Trainer(tiny_config(tmp_path, f"train.init_from={export}"), tmp_path / "a", dataset=tiny_dataset())
    assert _same(_state(t.G), weights["G_ema"])
    assert t.transfer.kind == "export" and "D" not in t.transfer.loaded  # D stays freshly initialised
    assert not _same(_state(t.D), weights["D"])

    bare = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in weights["G"].items()}, str(bare))
    t = Trainer(tiny_config(tmp_path, f"train.init_from={bare}"), tmp_path / "b", dataset=tiny_dataset())
    assert _same(_state(t.G), weights["G"]) and t.transfer.kind == "file"

    both = tmp_path / "weights.safetensors"  # a checkpoint's file: G.* and D.* names
    shutil.copyfile(sorted((src / "checkpoints").iterdir())[-1] / "weights.safetensors", both)
    t = Trainer(tiny_config(tmp_path, f"train.init_from={both}"), tmp_path / "c", dataset=tiny_dataset())
    assert _same(_state(t.G), weights["G"]) and _same(_state(t.D), weights["D"])


def test_freeze_d_needs_discriminator_weights(tmp_path, source):
    export = export_generator(source[0], tmp_path / "export")
    cfg = tiny_config(tmp_path, f"train.init_from={export}", "train.freeze_d=1")
    with pytest.raises(ConfigError, match="no discriminator weights"):
        Trainer(cfg, tmp_path / "ft", dataset=tiny_dataset())


def test_shape_mismatch_is_refused_or_reinitialised_by_name(tmp_path):
    # A conditional source with 3 classes, a target with 4: the class inputs of G's projection
    # and D's first convolution change shape; everything else matches.
    cfg = tiny_config(tmp_path, "model.num_classes=3", "train.steps=2", "train.ckpt_every=2")
    Trainer(cfg, tmp_path / "src", dataset=tiny_dataset(classes=3)).train()
    new = ["model.num_classes=4", f"train.init_from={tmp_path / 'src'}"]
    with pytest.raises(CheckpointError, match="project.weight.*init_partial") as info:
        Trainer(tiny_config(tmp_path, *new), tmp_path / "no", dataset=tiny_dataset(classes=4))
    assert "\n" not in str(info.value)
    t = Trainer(tiny_config(tmp_path, *new, "train.init_partial=true"), tmp_path / "yes",
                dataset=tiny_dataset(classes=4))
    assert t.transfer.reinitialised == {"G": ["project.weight"], "D": ["features.0.weight"]}
    src = transfer.read_source(tmp_path / "src", t.cfg)[0]
    for name, module in (("G", t.G), ("D", t.D)):
        for k, v in module.state_dict().items():
            if k not in t.transfer.reinitialised[name]:
                assert torch.equal(v, src[name][k]), k


def test_another_architecture_is_refused(tmp_path, source):
    cfg = tiny_config(tmp_path, "model.arch=mlp", f"train.init_from={source[0]}", "train.init_partial=true")
    with pytest.raises(ConfigError, match="'dcgan' model"):
        Trainer(cfg, tmp_path / "ft", dataset=tiny_dataset())


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_and_malformed_files_are_refused_as_elsewhere(tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"weight": _Payload(marker)}, f)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 3)
    for path, words in ((evil, "pickle-based weights"), (broken, "not a valid safetensors"),
                        (tmp_path / "missing.safetensors", "not found")):
        with pytest.raises(CheckpointError, match=words):
            Trainer(tiny_config(tmp_path, f"train.init_from={path}"), tmp_path / "ft", dataset=tiny_dataset())
    assert not marker.exists()


def test_nonfinite_source_weights_are_refused(tmp_path):
    G, _ = build_models(tiny_config(tmp_path))
    state = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in G.state_dict().items()}
    path = tmp_path / "nan.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match="non-finite"):
        Trainer(tiny_config(tmp_path, f"train.init_from={path}"), tmp_path / "ft", dataset=tiny_dataset())


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "resnet", "mlp-res", "inpaint"])
def test_every_family_defines_blocks_and_freezing_turns_them_into_buffers(tmp_path, arch):
    cfg = tiny_config(tmp_path, f"model.arch={arch}", "model.g_layers=2", "model.d_layers=2",
                      "model.res_blocks=2", "model.spectral_norm_d=true")  # SN moves weights into parametrizations
    G, D = build_models(cfg)
    for module, key in ((G, "train.freeze_g"), (D, "train.freeze_d")):
        blocks = module.transfer_blocks()
        owned = {id(p) for b in blocks for part in b for p in part.parameters()}
        assert owned == {id(p) for p in module.parameters()}, "every parameter belongs to one block"
        names = set(module.state_dict())
        first = {id(p) for part in blocks[0] for p in part.parameters()}
        frozen = transfer.freeze(module, 1, key)
        assert len(frozen) == len(first) > 0
        assert set(module.state_dict()) == names  # same tensor names: checkpoints are unchanged
        module.requires_grad_(True)  # as the trainer does around the G step
        trainable = dict(module.named_parameters())
        assert not set(frozen) & set(trainable)
        with pytest.raises(ConfigError, match="at most"):
            transfer.freeze(module, len(blocks), key)


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_frozen_blocks_do_not_change_while_the_others_do(tmp_path, source, arch):
    if arch == "dcgan":
        src, extra = source[0], []
    else:
        extra = ["model.arch=mlp", "model.g_layers=2", "model.d_layers=2"]
        Trainer(tiny_config(tmp_path, *extra, "train.steps=2"), tmp_path / "src", dataset=tiny_dataset()).train()
        src = tmp_path / "src"
    cfg = tiny_config(tmp_path, *extra, f"train.init_from={src}", "train.freeze_d=1", "train.freeze_g=1",
                      "train.steps=3")
    t = Trainer(cfg, tmp_path / "ft", dataset=tiny_dataset())
    frozen = t.transfer.frozen
    assert frozen["G"] and frozen["D"]
    for opt, module in ((t.opt_g, t.G), (t.opt_d, t.D)):
        in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
        assert in_opt == {id(p) for p in module.parameters()}
    before = {n: _state(m) for n, m in (("G", t.G), ("D", t.D))}
    t.train()
    for name, module in (("G", t.G), ("D", t.D)):
        after = module.state_dict()
        for k in frozen[name]:
            assert torch.equal(after[k], before[name][k]), k
        moving = [k for k, _ in module.named_parameters()]
        assert moving and all(not torch.equal(after[k], before[name][k]) for k in moving)


def test_learning_rate_multiplier_applies_to_loaded_parameters_and_survives_lr_changes(tmp_path):
    cfg = tiny_config(tmp_path, "model.num_classes=3", "train.steps=2", "train.ckpt_every=2")
    Trainer(cfg, tmp_path / "src", dataset=tiny_dataset(classes=3)).train()
    cfg = tiny_config(tmp_path, "model.num_classes=4", f"train.init_from={tmp_path / 'src'}",
                      "train.init_partial=true", "train.init_lr_mult=0.1", "optim.lr_d=1e-3")
    t = Trainer(cfg, tmp_path / "ft", dataset=tiny_dataset(classes=4))
    groups = {g["name"]: g for g in t.opt_d.param_groups}
    assert groups["loaded"]["lr"] == pytest.approx(1e-4) and groups["new"]["lr"] == pytest.approx(1e-3)
    assert [p.shape for p in groups["new"]["params"]] == [t.D.features[0].weight.shape]
    t.counters.rollbacks = 1  # as after a rollback: learning rates x rollback_lr_factor, multiplier kept
    t._apply_lr_factor()
    groups = {g["name"]: g for g in t.opt_d.param_groups}
    assert groups["loaded"]["lr"] == pytest.approx(0.5e-4) and groups["new"]["lr"] == pytest.approx(0.5e-3)


def test_a_resumed_fine_tuning_run_is_bit_identical(tmp_path, source):
    src = tmp_path / "src"
    shutil.copytree(source[0], src)
    cfg = tiny_config(tmp_path, f"train.init_from={src}", "train.freeze_d=1", "train.init_lr_mult=0.5",
                      "train.ema_decay=0.9", "train.augment=translation,cutout", "data.classes=[1, 2, 3]",
                      "data.limit=24", "train.steps=7", "train.ckpt_every=100")
    ds = tiny_dataset(n=120)
    full = full_and_interrupted(cfg, tmp_path, ds, stop_after=3)
    shutil.rmtree(src)  # resuming must not need the source any more
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    assert resumed.step == 3 and resumed.transfer.frozen == full.transfer.frozen
    resumed.train()
    assert_same_weights(full, resumed)
    events = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [e.get("event") for e in events].count("init_from") == 1


@pytest.mark.parametrize("override, words", [
    ("train.freeze_d=1", "only applies with train.init_from"),
    ("train.init_partial=true", "only applies with train.init_from"),
    ("train.init_lr_mult=0", r"must be in \(0, "),
    ("train.freeze_g=-1", r"must be in \[0, "),
    ("train.init_from=''", "empty"),
])
def test_bad_transfer_config_values(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, [override])


def test_resume_refuses_changing_the_transfer_settings(tmp_path, source, capsys, monkeypatch):
    from ganforge.cli import main

    run = tmp_path / "ft"
    cfg = tiny_config(tmp_path, f"train.init_from={source[0]}", "train.steps=2")
    Trainer(cfg, run, dataset=tiny_dataset()).train()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "train.freeze_d=1", "--allow-config-change"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.freeze_d cannot change when resuming" in err and len(err.splitlines()) == 1


def test_the_two_step_recipe_presets(tmp_path, monkeypatch):
    """configs/dcgan-fashion-mnist-0-8.yaml then configs/finetune-fashion-mnist-class.yaml, tiny."""
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    tiny = ["model.g_width=8", "model.d_width=8", "train.batch_size=8", "train.steps=2", "train.log_every=1",
            "train.sample_every=2", "train.ckpt_every=2", "train.sample_grid=16", f"out_dir={tmp_path}"]
    ds = tiny_dataset(n=300)
    pre = load_config(configs / "dcgan-fashion-mnist-0-8.yaml", tiny)
    assert pre.data.classes == list(range(9))
    Trainer(pre, tmp_path / "pre", dataset=ds).train()
    ft = load_config(configs / "finetune-fashion-mnist-class.yaml",
                     [*tiny, f"train.init_from={tmp_path / 'pre'}", "data.limit=16"])
    t = Trainer(ft, tmp_path / "ft", dataset=ds)
    assert set(t.dataset.labels.tolist()) == {9} and len(t.dataset) == 16
    assert t.transfer.frozen["D"] and not t.transfer.frozen["G"]
    assert t.train()["step"] == 2
