"""Checkpoint round trip, atomicity and refusal of corrupt or mismatched files."""

import json

import pytest
import torch

import os
import shutil

from conftest import pid_of_a_finished_process, tiny_config, tiny_dataset
from ganforge.errors import CheckpointError
from ganforge import checkpoint as ckpt
from ganforge.atomic import SWAPPED_OUT
from ganforge.train.trainer import Trainer


def _trainer(tmp_path, name="run", *extra):
    cfg = tiny_config(tmp_path, *extra)
    return Trainer(cfg, tmp_path / name, dataset=tiny_dataset())


def test_round_trip_restores_weights_and_optimizer(tmp_path):
    t = _trainer(tmp_path)
    t.train_step()
    path = t.save()
    c = ckpt.load_checkpoint(path)
    assert c.step == 1 and set(c.weights) == {"G", "D"}
    fresh = _trainer(tmp_path, "other")
    fresh.load_state(c)
    for a, b in zip(t.G.state_dict().values(), fresh.G.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = t.opt_d.state_dict(), fresh.opt_d.state_dict()
    for k in sa["state"]:
        assert torch.equal(sa["state"][k]["exp_avg"], sb["state"][k]["exp_avg"])
    assert sb["param_groups"][0]["lr"] == sa["param_groups"][0]["lr"]


def test_keep_last_prunes_old_checkpoints(tmp_path):
    t = _trainer(tmp_path, "run", "train.keep_last=2")
    for _ in range(4):
        t.train_step()
        t.save()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")] == [4, 3]


def test_corrupt_file_is_refused_and_latest_falls_back(tmp_path):
    t = _trainer(tmp_path)
    t.train_step()
    first = t.save()
    t.train_step()
    second = t.save()
    weights = second / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="SHA-256"):
        ckpt.load_checkpoint(second)
    assert ckpt.find_latest(tmp_path / "run").path == first


def test_missing_manifest_and_stale_temporaries(tmp_path):
    t = _trainer(tmp_path)
    t.train_step()
    path = t.save()
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        ckpt.load_checkpoint(path)
    stale = path.parent / f".tmp-step_00000009-{pid_of_a_finished_process()}"
    stale.mkdir()
    assert ckpt.list_checkpoints(path.parent)[0][1] == path  # temporaries are not checkpoints
    assert ckpt.clean_stale(path.parent) == 1 and not stale.exists()


def test_clean_stale_restores_a_swapped_out_checkpoint_and_spares_live_writers(tmp_path):
    t = _trainer(tmp_path)
    t.train_step()
    path = t.save()
    root, dead = path.parent, pid_of_a_finished_process()
    # A writer killed between replace_dir's two renames: the previous step is parked, its new copy complete.
    parked = root / f"{SWAPPED_OUT}{path.name}-{dead}"
    os.replace(path, parked)
    shutil.copytree(parked, root / f".tmp-{path.name}-{dead}")
    live = root / f".tmp-step_00000099-{os.getppid()}"  # a save still running in another process
    live.mkdir()
    old_best = root / f"{SWAPPED_OUT}best-{dead}"  # swapped out and replaced: only removed
    old_best.mkdir()
    (root / "best").mkdir(exist_ok=True)
    assert ckpt.clean_stale(root) == 3
    assert sorted(p.name for p in root.iterdir()) == sorted(["best", path.name, live.name])
    assert ckpt.load_checkpoint(path).step == t.step  # the saved step survived, verified


def test_garbage_safetensors_gives_checkpoint_error(tmp_path):
    t = _trainer(tmp_path)
    t.train_step()
    path = t.save()
    (path / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["sha256"]["weights.safetensors"] = ckpt.sha256_file(path / "weights.safetensors")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(path)


def test_shape_mismatch_is_refused(tmp_path):
    t = _trainer(tmp_path)
    t.train_step()
    c = ckpt.load_checkpoint(t.save())
    wide = _trainer(tmp_path, "wide", "model.g_width=16")
    with pytest.raises(CheckpointError, match="shape"):
        wide.load_state(c)


def test_non_finite_weights_are_never_written(tmp_path):
    t = _trainer(tmp_path)
    with torch.no_grad():
        next(t.G.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match="non-finite"):
        t.save()
    assert ckpt.list_checkpoints(tmp_path / "run" / "checkpoints") == []
