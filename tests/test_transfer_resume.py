"""Transfer and resume at the edges: an empty init_from, a source larger than memory, a lost
transfer.json with the source gone, a checkpoint whose data position is absurd."""

import hashlib
import json
import shutil

import pytest

from conftest import assert_same_weights, full_and_interrupted, tiny_config, tiny_dataset, write_gray_npz
from ganforge.cli import main
from ganforge.config import dump_yaml, load_config
from ganforge.errors import CheckpointError, ConfigError
from ganforge.train import transfer
from ganforge.train.trainer import Trainer


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_init_from_on_the_command_line_is_an_error(tmp_path, capsys, value):
    with pytest.raises(ConfigError, match="empty value"):
        load_config(None, [f"train.init_from={value}"])
    assert main(["train", f"out_dir={tmp_path}", f"train.init_from={value}"]) == 2
    assert "train.init_from: has an empty value" in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []  # no run was started


def test_a_source_larger_than_the_memory_left_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB on paper, nothing on disk
    monkeypatch.setattr(transfer, "available_memory", lambda: int(2.5e9))
    data = write_gray_npz(tmp_path / "d.npz")
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", f"train.init_from={big}")
    (tmp_path / "c.yaml").write_text(dump_yaml(cfg))
    assert main(["train", "-c", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "ft")]) == 2
    err = _one_line(capsys)
    assert "big.safetensors: is 3.00 GiB to read into memory, but only 2.33 GiB is available" in err
    assert not (tmp_path / "ft" / "checkpoints").exists()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("source")
    Trainer(tiny_config(tmp, "train.steps=3", "train.ema_decay=0.9"), tmp / "src", dataset=tiny_dataset()).train()
    return tmp / "src"


@pytest.mark.parametrize("lost", ["transfer.json", "transfer.json and metrics.jsonl"])
def test_a_fine_tuning_run_resumes_without_its_record_or_source(tmp_path, source, capsys, lost):
    src = tmp_path / "src"
    shutil.copytree(source, src)
    cfg = tiny_config(tmp_path, f"train.init_from={src}", "train.freeze_d=1", "train.init_lr_mult=0.5",
                      "train.ema_decay=0.9", "train.steps=6", "train.ckpt_every=100")
    ds = tiny_dataset()
    full = full_and_interrupted(cfg, tmp_path, ds, stop_after=3)
    shutil.rmtree(src)
    (tmp_path / "part" / "transfer.json").unlink()
    if "metrics" in lost:
        (tmp_path / "part" / "metrics.jsonl").unlink()
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    assert resumed.step == 3 and resumed.transfer.frozen == full.transfer.frozen
    assert {g["name"]: g["lr"] for g in resumed.opt_d.param_groups} == {g["name"]: g["lr"] for g in full.opt_d.param_groups}
    resumed.train()
    assert_same_weights(full, resumed)


def test_a_partial_load_without_any_record_is_one_line(tmp_path, capsys):
    Trainer(tiny_config(tmp_path, "model.num_classes=3", "train.steps=2"), tmp_path / "src",
            dataset=tiny_dataset(classes=3)).train()
    cfg = tiny_config(tmp_path, "model.num_classes=4", f"train.init_from={tmp_path / 'src'}",
                      "train.init_partial=true", "train.steps=4", "train.ckpt_every=2")
    Trainer(cfg, tmp_path / "ft", dataset=tiny_dataset(classes=4)).train(stop_after=2)
    shutil.rmtree(tmp_path / "src")
    for name in ("transfer.json", "metrics.jsonl"):
        (tmp_path / "ft" / name).unlink()
    with pytest.raises(CheckpointError, match="transfer.json: missing.*which is gone") as info:
        Trainer.resume(tmp_path / "ft", dataset=tiny_dataset(classes=4))
    assert "\n" not in str(info.value)


def _rewrite_state(ckpt_dir, change):
    state_path = ckpt_dir / "state.json"
    state = json.loads(state_path.read_text())
    change(state)
    state_path.write_text(json.dumps(state))
    manifest = json.loads((ckpt_dir / "manifest.json").read_text())
    manifest["sha256"]["state.json"] = hashlib.sha256(state_path.read_bytes()).hexdigest()
    (ckpt_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("field, value", [("index", 10 ** 12), ("epoch", 10 ** 12)])
def test_an_absurd_data_position_falls_back_to_the_previous_checkpoint(tmp_path, capsys, caplog, field, value):
    data = write_gray_npz(tmp_path / "d.npz")
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.steps=8", "train.ckpt_every=2",
                      "train.keep_last=3")
    run = tmp_path / "run"
    Trainer(cfg, run).train(stop_after=4)
    newest = sorted((run / "checkpoints").glob("step_*"))[-1]
    assert newest.name == "step_00000004"
    _rewrite_state(newest, lambda s: s["batcher"].__setitem__(field, value))
    assert main(["train", "--resume", str(run)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert any("step_00000004" in r.message and "data position" in r.message for r in caplog.records)
    assert load_config(run / "config.yaml").train.steps == 8
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(e["step"] for e in events) == 8
