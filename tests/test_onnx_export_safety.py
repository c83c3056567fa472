"""``export --format onnx`` writes a whole folder or nothing: bad --out refused first, links never followed,
a full disk or a kill -9 leaves the previous export intact."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ganforge.cli import main

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'ganforge[onnx]')")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'ganforge[onnx]')")
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx-run")
    rng = np.random.default_rng(0)
    npz = tmp / "tiny.npz"
    np.savez(npz, images=rng.integers(0, 256, (16, 28, 28), dtype=np.uint8))
    assert main(["train", "--run-dir", str(tmp / "run"), f"data.dataset={npz}", "model.g_width=4",
                 "model.d_width=4", "model.z_dim=8", "train.batch_size=8", "train.steps=2",
                 "train.ckpt_every=2", "train.sample_every=2"]) == 0
    return tmp / "run"


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    return captured.err


def _good_export(run, out) -> bytes:
    assert main(["export", str(run), "--out", str(out), "--format", "onnx"]) == 0
    onnx.checker.check_model(str(out / "generator.onnx"))
    return (out / "generator.onnx").read_bytes()


def test_bad_out_values_are_refused_before_any_work(run, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(foreign, target_is_directory=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    for out, why in (("/proc/x", "cannot"), (a_file, "not a directory"), ("/dev/null", "not a directory"),
                     (a_file / "under", "is a file"), (foreign, "not empty"), (link, "symbolic link")):
        capsys.readouterr()
        t0 = time.monotonic()
        assert main(["export", str(run), "--out", str(out), "--format", "onnx"]) == 2, out
        assert why in _one_line_error(capsys), out
        assert time.monotonic() - t0 < 5, out  # refused before the run is loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert a_file.read_text() == "keep me" and sorted(os.listdir(foreign)) == ["notes.txt"]


def test_a_linked_file_in_the_target_is_replaced_not_written_through(run, tmp_path):
    out = tmp_path / "onnx"
    _good_export(run, out)
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"precious")
    (out / "generator.onnx").unlink()
    (out / "generator.onnx").symlink_to(outside)
    (out / "config.yaml").unlink()
    (out / "config.yaml").symlink_to(outside)
    _good_export(run, out)
    assert outside.read_bytes() == b"precious"
    assert not (out / "generator.onnx").is_symlink() and not (out / "config.yaml").is_symlink()


def test_a_full_disk_leaves_the_previous_export_intact(run, tmp_path, monkeypatch, capsys):
    import torch

    out = tmp_path / "onnx"
    good = _good_export(run, out)
    capsys.readouterr()

    def full_disk(model, args, path, **kwargs):
        Path(path).write_bytes(b"\x08\x07partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(torch.onnx, "export", full_disk)
    assert main(["export", str(run), "--out", str(out), "--format", "onnx"]) == 2
    assert "No space left on device" in _one_line_error(capsys)
    assert (out / "generator.onnx").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no temporary folder left


DRIVER = """
import sys
from ganforge.cli import main
while True:
    print("exporting", flush=True)
    assert main(["export", sys.argv[1], "--out", sys.argv[2], "--format", "onnx"]) == 0
"""


@pytest.mark.slow
def test_kill_9_during_a_rewrite_leaves_the_old_export_or_none(run, tmp_path):
    out = tmp_path / "onnx"
    _good_export(run, out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for delay in (0.05, 0.3, 0.8):
        errors = tmp_path / f"driver-{delay}.err"  # kept so that a stopped driver says why
        with open(errors, "w") as err:
            proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(run), str(out)], stdout=subprocess.PIPE,
                                    stderr=err, env=env, text=True)
        try:
            started = 0
            while started < 2:  # the second export rewrites the folder the first one wrote
                line = proc.stdout.readline()
                assert line, f"the export driver stopped: {errors.read_text()[-2000:]}"
                started += line.strip() == "exporting"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        if (out / "generator.onnx").exists():
            onnx.checker.check_model(str(out / "generator.onnx"))
            assert (out / "config.yaml").stat().st_size > 0 and (out / "export.json").stat().st_size > 0
        else:
            assert not out.exists()
            _good_export(run, out)  # the next export simply writes it again
    _good_export(run, out)  # and tidies what the killed exports left beside the folder
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
