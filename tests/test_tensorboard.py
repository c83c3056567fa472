"""``train.tensorboard``: the metrics records and sample grids as TensorBoard events, without duplicated steps."""

import json
import shutil
import sys

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge.errors import ConfigError
from ganforge.train.trainer import Trainer

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ganforge.train.tensorboard import TensorBoardLog  # noqa: E402


def _events(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def test_run_resumed_from_an_older_checkpoint_has_each_step_once(tmp_path):
    cfg = tiny_config(tmp_path, "train.tensorboard=true", "train.steps=8", "train.log_every=2",
                      "train.sample_every=4", "train.ckpt_every=4")
    ds = tiny_dataset()
    run = tmp_path / "run"
    Trainer(cfg, run, dataset=ds).train(stop_after=6)  # logs 2, 4, 6; checkpoints 4 and 6
    before = _events(run / "tensorboard")
    assert _steps(before, "loss/d") == [2, 4, 6]
    # As if killed before the checkpoint at 6 was written: resume from 4, and log 6 again.
    shutil.rmtree(run / "checkpoints" / "step_00000006")
    resumed = Trainer.resume(run, dataset=ds)
    assert resumed.step == 4
    resumed.train()
    acc = _events(run / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    assert {"loss/d", "loss/g", "d/real", "d/fake", "speed/images_per_s", "train/skipped_steps",
            "train/images_seen", "train/seconds"} <= tags
    for tag in ("loss/d", "loss/g", "d/real", "speed/images_per_s"):
        assert _steps(acc, tag) == [2, 4, 6, 8], tag
    # the same values as metrics.jsonl
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("loss/g")] == pytest.approx([r["g_loss"] for r in records], rel=1e-6)
    grids = acc.Images("samples")
    assert [e.step for e in grids] == [4, 8]
    assert (grids[0].width, grids[0].height) == (4 * 28 + 5 * 2, 4 * 28 + 5 * 2)  # 16 images, 4x4, padded


def test_evaluations_rollbacks_and_other_scalars(tmp_path):
    tb = TensorBoardLog(tmp_path / "tb")
    for step in range(1, 6):
        tb.write({"step": step, "d_loss": 1.0, "g_loss": 2.0, "gp": 0.5, "l1_hole": 0.1, "note": "x"})
    tb.write({"step": 2, "event": "rollback", "from_step": 5, "rollbacks": 1})
    for step in range(3, 7):
        tb.write({"step": step, "d_loss": 3.0, "g_loss": 2.0})
    tb.write({"step": 6, "event": "eval", "fid2k_test": 12.5, "kid2k_test": [0.25, 0.01], "train_seconds": 9.0,
              "best": True})
    tb.close()
    acc = _events(tmp_path / "tb")
    assert _steps(acc, "loss/d") == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in acc.Scalars("loss/d")] == [1.0, 1.0, 3.0, 3.0, 3.0, 3.0]
    assert _steps(acc, "loss/gp") == [1, 2] and _steps(acc, "train/l1_hole") == [1, 2]  # purged past 2
    assert [(e.step, e.value) for e in acc.Scalars("eval/fid2k_test")] == [(6, 12.5)]
    assert [e.value for e in acc.Scalars("eval/kid2k_test")] == [0.25]
    assert not {"eval/best", "eval/train_seconds", "train/note"} & set(acc.Tags()["scalars"])


def test_missing_package_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"ganforge\[tensorboard\]"):
        TensorBoardLog(tmp_path / "tb")


def test_off_by_default(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=2")
    Trainer(cfg, tmp_path / "run", dataset=tiny_dataset()).train()
    assert not (tmp_path / "run" / "tensorboard").exists()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_only_rank_zero_writes_under_torchrun(tmp_path):
    from test_distributed import _launch

    _launch(tmp_path, "train.tensorboard=true")
    files = list((tmp_path / "run" / "tensorboard").iterdir())
    assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
    acc = _events(tmp_path / "run" / "tensorboard")
    assert _steps(acc, "loss/d") == [1, 2, 3, 4]
    assert [e.step for e in acc.Images("samples")] == [2, 4]
