"""Every field a checkpoint reads from disk is validated: a malformed manifest.json or
state.json makes that checkpoint invalid (CheckpointError naming the file), and loading
falls back to the next older checkpoint instead of crashing."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from conftest import tiny_config, tiny_dataset
from ganforge import checkpoint as ckpt
from ganforge.errors import CheckpointError
from ganforge.train.trainer import Trainer


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A run with checkpoints at steps 1 and 2, and a trainer to restore them into."""
    base = tmp_path_factory.mktemp("ckpts")
    t = Trainer(tiny_config(base), base / "run", dataset=tiny_dataset())
    t.train_step()
    t.save()
    t.train_step()
    t.save()
    fresh = Trainer(tiny_config(base), base / "fresh", dataset=tiny_dataset())
    return base / "run", fresh


def _copy(run: Path, dest: Path) -> tuple[Path, Path]:
    shutil.copytree(run, dest)
    root = dest / "checkpoints"
    return root / "step_00000002", root / "step_00000001"


def _rehash(path: Path) -> None:
    """Make the manifest vouch for the (modified) state.json, so the loader parses it."""
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["sha256"]["state.json"] = ckpt.sha256_file(path / "state.json")
    (path / "manifest.json").write_text(json.dumps(manifest))


def _edit(path: Path, fname: str, change) -> None:
    data = json.loads((path / fname).read_text())
    change(data)
    (path / fname).write_text(json.dumps(data))
    if fname == "state.json":
        _rehash(path)


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(data):
        for k in keys[:-1]:
            data = data[k]
        data[keys[-1]] = value
    return change


MANIFEST_DEFECTS = {
    "sha256 is a list": _set("sha256", []),
    "sha256 entry is a number": _set("sha256", "state.json", 7),
    "step is a string": _set("step", "abc"),
    "step overflows": _set("step", 1e400),
    "step is a list": _set("step", [2]),
    "step is a bool": _set("step", True),
    "step disagrees with the directory": _set("step", 3),
    "format unknown": _set("format", 99),
    "not an object": lambda d: d.clear() or d.update({"x": 1}),
}

STATE_DEFECTS = {
    "step is a string": _set("step", "abc"),
    "step is huge": _set("step", 1e400),
    "step is a list": _set("step", [2]),
    "step disagrees with the manifest": _set("step", 1),
    "negative images_seen": _set("images_seen", -16),
    "fractional images_seen": _set("images_seen", 16.5),
    "train_seconds infinite": _set("train_seconds", 1e400),
    "batcher missing": lambda d: d.pop("batcher"),
    "batcher index negative": _set("batcher", "index", -1),
    "batcher seed a string": _set("batcher", "seed", "0"),
    "optim missing opt_d": lambda d: d["optim"].pop("opt_d"),
    "param_groups empty": _set("optim", "opt_g", "param_groups", []),
    "params not 0..n-1": _set("optim", "opt_g", "param_groups", 0, "params", [0, 0, 2]),
    "lr a string": _set("optim", "opt_d", "param_groups", 0, "lr", "fast"),
    "betas too short": _set("optim", "opt_d", "param_groups", 0, "betas", [0.5]),
    "scalars for an unknown parameter": _set("optim", "opt_g", "scalars", {"99": {"step": 1}}),
    "task state nested (older checkpoints)": _set("task", {"d_steps": {"a": 1}}),
    "precision scale zero": _set("precision", {"scale": 0.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                               "growth_interval": 100, "_growth_tracker": 0}),
    "python rng version": lambda d: d["rng_python"]["__tuple__"].__setitem__(0, 2),
    "python rng short": lambda d: d["rng_python"]["__tuple__"][1]["__tuple__"].pop(),
    "python rng word too big": lambda d: d["rng_python"]["__tuple__"][1]["__tuple__"].__setitem__(5, 2**40),
    "numpy rng name": lambda d: d["rng_numpy"].__setitem__(0, "PCG64"),
    "numpy rng position": lambda d: d["rng_numpy"].__setitem__(2, 625),
    "numpy rng state a dict": lambda d: d["rng_numpy"].__setitem__(1, {}),
}


@pytest.mark.parametrize("fname,defect", [("manifest.json", k) for k in MANIFEST_DEFECTS]
                         + [("state.json", k) for k in STATE_DEFECTS])
def test_malformed_json_is_invalid_and_loading_falls_back(two_checkpoints, tmp_path, caplog, fname, defect):
    run, _ = two_checkpoints
    newest, older = _copy(run, tmp_path / "run")
    table = MANIFEST_DEFECTS if fname == "manifest.json" else STATE_DEFECTS
    _edit(newest, fname, table[defect])
    with pytest.raises(CheckpointError) as err:
        ckpt.load_checkpoint(newest)
    assert err.value.where == str(newest / fname)
    assert ckpt.find_latest(tmp_path / "run").path == older
    assert any(str(newest / fname) in r.getMessage() for r in caplog.records)  # the warning names the file


def test_non_finite_json_constants_are_refused(two_checkpoints, tmp_path):
    run, _ = two_checkpoints
    newest, older = _copy(run, tmp_path / "run")
    text = (newest / "state.json").read_text().replace('"train_seconds": 0.0', '"train_seconds": NaN')
    assert "NaN" in text
    (newest / "state.json").write_text(text)
    _rehash(newest)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ckpt.load_checkpoint(newest)
    assert ckpt.find_latest(tmp_path / "run").path == older


def test_a_renamed_checkpoint_directory_is_invalid(two_checkpoints, tmp_path):
    run, _ = two_checkpoints
    newest, older = _copy(run, tmp_path / "run")
    newest.rename(newest.with_name("step_00000005"))
    with pytest.raises(CheckpointError, match="directory name"):
        ckpt.load_checkpoint(newest.with_name("step_00000005"))
    assert ckpt.find_latest(tmp_path / "run").path == older


def test_a_valid_checkpoint_loads_with_its_counters(two_checkpoints):
    run, fresh = two_checkpoints
    c = ckpt.load_checkpoint(run / "checkpoints" / "step_00000002")
    assert c.step == 2 and c.state["step"] == 2 and c.state["images_seen"] == 32
    assert c.state["world_size"] == 1 and c.state["rollbacks"] == 0
    fresh.load_state(c)
    assert fresh.step == 2 and fresh.counters.images_seen == 32


# ------------------------------------------------------------- property test

_json_leaf = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _mutate(data, draw) -> object:
    """Replace, delete or add one node somewhere in ``data`` (or replace it whole)."""
    if not isinstance(data, (dict, list)) or not data or draw(st.integers(0, 5)) == 0:
        return draw(_json)
    key = draw(st.sampled_from(sorted(data)) if isinstance(data, dict) else st.integers(0, len(data) - 1))
    op = draw(st.sampled_from(["descend", "descend", "replace", "delete", "add"]))
    if op == "descend":
        data[key] = _mutate(data[key], draw)
    elif op == "replace":
        data[key] = draw(_json)
    elif op == "delete":
        del data[key]
    elif isinstance(data, dict):
        data[draw(st.text(max_size=6))] = draw(_json)
    else:
        data.insert(key, draw(_json))
    return data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fname=st.sampled_from(["manifest.json", "state.json"]), raw=st.booleans())
def test_random_json_corruption_only_ever_gives_checkpoint_error(two_checkpoints, data, fname, raw):
    run, fresh = two_checkpoints
    with tempfile.TemporaryDirectory() as tmp:
        newest, older = _copy(run, Path(tmp) / "run")
        target = newest / fname
        if raw:  # arbitrary bytes, e.g. a torn or overwritten file
            target.write_bytes(data.draw(st.binary(max_size=64)))
        else:
            target.write_text(json.dumps(_mutate(json.loads(target.read_text()), data.draw)), encoding="utf-8")
        if fname == "state.json":
            _rehash(newest)  # else the hash check alone would reject it
        try:
            c = ckpt.load_checkpoint(newest)
        except CheckpointError:
            loaded = False
        else:
            loaded = True
        event(f"{fname} {'accepted' if loaded else 'rejected'}")
        if loaded:
            try:  # what passed validation, the trainer can restore (or reject as a mismatch)
                fresh.load_state(c)
            except CheckpointError:
                event("accepted, then refused by the trainer")
        latest = ckpt.find_latest(Path(tmp) / "run")
        assert latest is not None and latest.path == (newest if loaded else older)


def test_non_finite_optimizer_state_is_neither_written_nor_loaded(tmp_path, two_checkpoints):
    t = Trainer(tiny_config(tmp_path), tmp_path / "run", dataset=tiny_dataset())
    t.train_step()
    next(iter(t.opt_g.state.values()))["exp_avg"].fill_(float("nan"))
    with pytest.raises(CheckpointError, match="non-finite"):
        t.save()
    assert ckpt.list_checkpoints(tmp_path / "run" / "checkpoints") == []

    run, _ = two_checkpoints
    newest, older = _copy(run, tmp_path / "copy")
    tensors = load_file(str(newest / "train.safetensors"))
    key = next(k for k in tensors if k.endswith("exp_avg"))
    tensors[key] = torch.full_like(tensors[key], float("inf"))
    save_file(tensors, str(newest / "train.safetensors"))
    manifest = json.loads((newest / "manifest.json").read_text())
    manifest["sha256"]["train.safetensors"] = ckpt.sha256_file(newest / "train.safetensors")
    (newest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="non-finite"):
        ckpt.load_checkpoint(newest)
    assert ckpt.find_latest(tmp_path / "copy").path == older
