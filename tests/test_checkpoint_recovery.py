"""A full disk while saving is one line and exit 2 with every earlier checkpoint intact and
nothing left behind; a run stopped before its first checkpoint was complete restarts in place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError

from conftest import tiny_config, tiny_dataset, write_gray_npz
from ganforge import checkpoint as ckpt
from ganforge.cli import main
from ganforge.errors import CheckpointError
from ganforge.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
TINY = ["model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=16", "train.log_every=1000",
        "train.sample_every=1000", "train.ckpt_every=2", "train.sample_grid=16"]
ENOSPC = "Error while serializing: I/O error: No space left on device (os error 28)"

# Runs the CLI with safetensors' writer failing as it does on a full disk (after leaving
# a partial file) from its Nth call on; N is argv[1].
_FULL_DISK_DRIVER = f"""
import sys
from safetensors import SafetensorError
from ganforge import checkpoint
from ganforge.cli import main

fail_from, calls = int(sys.argv[1]), [0]
real = checkpoint.save_file

def save_file(tensors, path, metadata=None):
    calls[0] += 1
    if calls[0] < fail_from:
        return real(tensors, path, metadata=metadata)
    open(path, "wb").write(b"partial")
    raise SafetensorError({ENOSPC!r})

checkpoint.save_file = save_file
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def npz(tmp_path):
    return write_gray_npz(tmp_path / "tiny.npz")


def _train_argv(npz, run_dir, steps=4):
    return ["train", "--config", str(ROOT / "configs" / "dcgan-fashion-mnist.yaml"), "--run-dir", str(run_dir),
            f"data.dataset={npz}", f"train.steps={steps}", *TINY]


def _entries(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def _full_disk(monkeypatch, fail_from=1):
    calls = [0]
    real = ckpt.save_file

    def save_file(tensors, path, metadata=None):
        calls[0] += 1
        if calls[0] < fail_from:
            return real(tensors, path, metadata=metadata)
        Path(path).write_bytes(b"partial")
        raise SafetensorError(ENOSPC)

    monkeypatch.setattr(ckpt, "save_file", save_file)


@pytest.mark.slow
def test_disk_full_in_a_real_process_prints_exactly_one_line(tmp_path, npz):
    """stderr of a real process is exactly what a user sees: one line, no traceback."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    # The step-0 checkpoint (two writer calls) succeeds, the step-2 one hits the full disk.
    out = subprocess.run([sys.executable, "-c", _FULL_DISK_DRIVER, "3", *_train_argv(npz, run_dir)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [x for x in out.stderr.strip().splitlines() if not x.startswith("INFO ")]  # progress logs
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert lines[0].startswith("error: ") and "No space left on device" in lines[0]
    assert _entries(run_dir) == ["step_00000000"]


def test_disk_full_is_exit_2_keeps_earlier_checkpoints_and_resumes_once_freed(tmp_path, npz, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    _full_disk(monkeypatch, fail_from=3)  # the step-0 checkpoint is written, the step-2 one is not
    assert main(_train_argv(npz, run_dir)) == 2  # main() caught it: no traceback
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "No space left on device" in err and "previous checkpoints are intact" in err
    assert _entries(run_dir) == ["step_00000000"]  # no temporary directory left behind
    assert ckpt.find_latest(run_dir).step == 0

    # Resuming while the disk is still full: the same error, nothing left behind.
    _full_disk(monkeypatch)
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "No space left on device" in err[-1]
    assert _entries(run_dir) == ["step_00000000"]
    monkeypatch.undo()

    # Space freed: the run continues from its intact checkpoint to the end.
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert ckpt.find_latest(run_dir).step == 4


def test_write_errors_other_than_the_writer_are_one_error_too(tmp_path, monkeypatch):
    t = Trainer(tiny_config(tmp_path), tmp_path / "run", dataset=tiny_dataset())
    t.train_step()
    first = t.save()
    t.train_step()

    def fail_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", fail_fsync)
    with pytest.raises(CheckpointError, match="No space left on device"):
        t.save()
    monkeypatch.undo()
    assert _entries(tmp_path / "run") == [first.name]
    assert ckpt.find_latest(tmp_path / "run").path == first


def test_a_truncated_safetensors_write_is_caught(tmp_path, monkeypatch):
    """A writer that silently drops its last block must not produce a checkpoint."""
    t = Trainer(tiny_config(tmp_path), tmp_path / "run", dataset=tiny_dataset())
    t.train_step()
    first = t.save()
    t.train_step()
    real = ckpt.save_file

    def truncating(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 100)

    monkeypatch.setattr(ckpt, "save_file", truncating)
    with pytest.raises(CheckpointError, match="not written completely"):
        t.save()
    assert _entries(tmp_path / "run") == [first.name]


def _mount_tiny_fs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return res.returncode == 0


def test_a_really_full_filesystem(tmp_path):
    """On a tmpfs too small for two checkpoints (where this machine allows mounting one)."""
    root = tmp_path / "run" / "checkpoints"
    if not _mount_tiny_fs(root, "400k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        t = Trainer(tiny_config(tmp_path, "train.keep_last=5"), tmp_path / "run", dataset=tiny_dataset())
        t.train_step()
        first = t.save()  # about 250 kB
        t.train_step()
        with pytest.raises(CheckpointError, match="No space left on device"):
            t.save()
        assert _entries(tmp_path / "run") == [first.name]
        assert ckpt.find_latest(tmp_path / "run").path == first
    finally:
        subprocess.run(["umount", str(root)], check=True)


# ------------------------------------------------- runs without a valid checkpoint


def _interrupted_first_checkpoint(tmp_path, npz, monkeypatch):
    """A run whose very first checkpoint never completed (disk full, then a kill -9 litter)."""
    run_dir = tmp_path / "run"
    _full_disk(monkeypatch)
    assert main(_train_argv(npz, run_dir)) == 2
    monkeypatch.undo()
    root = run_dir / "checkpoints"
    (root / ".tmp-step_00000000-4242").mkdir()  # a writer killed mid-save
    torn = root / "step_00000002"  # and a directory that does not verify
    torn.mkdir()
    (torn / "manifest.json").write_text("{")
    assert ckpt.find_latest(run_dir) is None
    return run_dir


@pytest.mark.parametrize("how", ["again", "resume"])
def test_a_run_without_a_valid_checkpoint_restarts_in_place(tmp_path, npz, monkeypatch, capsys, how):
    run_dir = _interrupted_first_checkpoint(tmp_path, npz, monkeypatch)
    capsys.readouterr()
    argv = _train_argv(npz, run_dir) if how == "again" else ["train", "--resume", str(run_dir)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "no valid checkpoint" in err and "starting it again from step 0" in err
    assert "none of its checkpoints loads (kept as rejected-step_00000002)" in err
    assert _entries(run_dir) == ["rejected-step_00000002", "step_00000000", "step_00000002", "step_00000004"]
    assert ckpt.find_latest(run_dir).step == 4


def test_a_run_killed_during_its_first_checkpoint_restarts_in_place(tmp_path, npz, capsys):
    run_dir = tmp_path / "run"
    assert main(_train_argv(npz, run_dir, steps=2)) == 0
    root = run_dir / "checkpoints"
    for p in root.iterdir():  # as if kill -9 had hit the first save: only its temporary directory
        p.rename(root / f".tmp-{p.name}-4242") if p.name == "step_00000000" else shutil.rmtree(p)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "it stopped before its first checkpoint was complete" in capsys.readouterr().err
    assert _entries(run_dir) == ["step_00000000", "step_00000002"]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2]  # the records of the abandoned attempt are gone


def test_a_run_with_a_valid_checkpoint_is_not_restarted(tmp_path, npz, capsys):
    run_dir = tmp_path / "run"
    assert main(_train_argv(npz, run_dir, steps=2)) == 0
    capsys.readouterr()
    assert main(_train_argv(npz, run_dir, steps=2)) == 2
    assert "already holds a run; use --resume" in capsys.readouterr().err
