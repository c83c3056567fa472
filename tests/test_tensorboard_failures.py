"""The optional TensorBoard log never stops a run; an unwritable run directory is refused before data loading."""

import errno
import logging
import os
import time

import numpy as np
import pytest

from conftest import tiny_config, tiny_dataset
from ganforge.cli import main
from ganforge.train.trainer import Trainer

pytest.importorskip("tensorboard")


def test_an_event_log_that_cannot_be_created_is_one_warning(tmp_path, caplog, capfd):
    run = tmp_path / "run"
    run.mkdir()
    (run / "tensorboard").write_text("not a folder")  # as a read-only, immutable or full RUN/tensorboard
    cfg = tiny_config(tmp_path, "train.tensorboard=true", "train.steps=2")
    with caplog.at_level(logging.WARNING):
        summary = Trainer(cfg, run, dataset=tiny_dataset()).train()
    assert summary["step"] == 2
    warnings = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warnings) == 1 and "continues without the event log" in warnings[0]
    assert "Traceback" not in capfd.readouterr().err


def test_a_writer_that_fails_later_is_one_warning_and_no_thread_traceback(tmp_path, caplog, capfd, monkeypatch):
    from tensorboard.summary.writer import record_writer

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cfg = tiny_config(tmp_path, "train.tensorboard=true", "train.steps=4", "train.log_every=1",
                      "train.sample_every=2", "train.ckpt_every=2")
    monkeypatch.setattr(record_writer.RecordWriter, "write", full_disk)
    with caplog.at_level(logging.WARNING):
        summary = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset()).train()
        time.sleep(0.2)  # the writer thread has long failed; anything it printed is in stderr now
    assert summary["step"] == 4
    warnings = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warnings) == 1 and "No space left on device" in warnings[0]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err


def test_resume_with_an_unwritable_event_log_trains_and_later_resumes_work(tmp_path, capfd, caplog):
    npz = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, images=rng.integers(0, 256, (16, 28, 28), dtype=np.uint8))
    run = tmp_path / "run"
    common = ["model.g_width=4", "model.d_width=4", "model.z_dim=8", "train.batch_size=8", "train.log_every=1",
              "train.sample_every=2", "train.ckpt_every=2"]
    assert main(["train", "--run-dir", str(run), f"data.dataset={npz}", "train.steps=2"] + common) == 0
    (run / "tensorboard").write_text("not a folder")
    assert main(["train", "--resume", str(run), "train.steps=4", "train.tensorboard=true"]) == 0
    assert main(["train", "--resume", str(run), "train.steps=6"]) == 0  # no train.tensorboard=false needed
    assert "Traceback" not in capfd.readouterr().err
    warned = [r for r in caplog.records if "continues without the event log" in r.getMessage()]
    assert len(warned) == 2 and all(r.levelno == logging.WARNING for r in warned)


@pytest.mark.parametrize("where", ["--run-dir", "out_dir"])
def test_an_unwritable_new_run_directory_is_refused_before_loading_data(tmp_path, capsys, where):
    args = ["--run-dir", "/proc/x/run"] if where == "--run-dir" else ["out_dir=/proc/x"]
    t0 = time.monotonic()
    assert main(["train", "data.dataset=/no/such/data/is/read", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {where}: cannot write into /proc")
    assert time.monotonic() - t0 < 3
