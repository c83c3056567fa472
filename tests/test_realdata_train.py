"""Training on the real Fashion-MNIST files, when installed (CI installs them)."""

import json

import pytest

from ganforge.config import load_config
from ganforge.data import locate
from ganforge.train.trainer import Trainer

pytestmark = pytest.mark.realdata


def _have_fashion():
    try:
        return locate("fashion-mnist", download=False) is not None
    except Exception:
        return False


@pytest.mark.skipif(not _have_fashion(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_default_preset_trains_on_real_fashion_mnist(tmp_path):
    cfg = load_config("configs/dcgan-fashion-mnist.yaml", [
        f"out_dir={tmp_path}", "train.steps=6", "train.log_every=3", "train.sample_every=6",
        "train.ckpt_every=6", "model.g_width=16", "model.d_width=16"])
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.dataset.images.shape == (60000, 1, 28, 28)
    summary = trainer.train()
    assert (tmp_path / "run" / "samples" / "step_00000006.png").is_file()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["d_loss"] is not None and r["g_loss"] is not None for r in records)
    assert summary["checkpoint"].endswith("step_00000006")
