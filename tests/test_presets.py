"""Every preset in configs/ loads, builds its models and trains two steps at tiny widths; conditional sampling CLI."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_dataset
from PIL import Image

from ganforge.cli import main
from ganforge.config import load_config
from ganforge.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(CONFIGS.glob("*.yaml"))

# Shrink a preset to seconds: tiny widths and batches, two steps, no periodic evaluation or compilation.
TINY = ["model.g_width=8", "model.d_width=8", "train.batch_size=8", "train.steps=2", "train.log_every=1",
        "train.sample_every=2", "train.ckpt_every=2", "train.sample_grid=20", "train.eval_every=0",
        "train.compile=false", "train.device=cpu"]


def test_there_are_presets():
    names = {p.stem for p in PRESETS}
    assert {"resnet-fashion-mnist", "cresnet-fashion-mnist", "wgan-gp-fashion-mnist", "resnet-cifar10",
            "resnet-128"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_trains_two_steps(path, tmp_path):
    cfg = load_config(path)
    if cfg.model.arch == "inpaint" and importlib.util.find_spec("ganforge.models.encoder_decoder") is None:
        pytest.skip("inpainting models are not part of this build")
    if cfg.train.init_from:
        pytest.skip("starts from another run's weights: trained in test_transfer.py")
    cfg = load_config(path, [f"out_dir={tmp_path}", "data.classes=null", "data.limit=0", *TINY])
    size = cfg.data.image_size
    if cfg.model.arch == "inpaint" and cfg.inpaint.load_size:
        size = cfg.inpaint.load_size
    ds = tiny_dataset(24, size, cfg.data.channels, cfg.model.num_classes or 10)
    trainer = Trainer(cfg, tmp_path / "run", dataset=ds)
    before = {f"{who}.{k}": v.detach().clone() for who, m in (("G", trainer.G), ("D", trainer.D))
              for k, v in m.named_parameters()}
    summary = trainer.train()
    assert summary["step"] == 2 and not summary["stopped_early"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        losses = {k: v for k, v in r.items() if "loss" in k}
        assert losses and all(math.isfinite(v) for v in losses.values()), r
        assert r["skipped_steps"] == 0
    after = {f"{who}.{k}": v for who, m in (("G", trainer.G), ("D", trainer.D)) for k, v in m.named_parameters()}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for who in ("G", "D"):
        names = [k for k in before if k.startswith(who + ".")]
        assert any(k in changed for k in names), who
        if cfg.model.arch != "inpaint":  # the families defined here: every weight moves
            # (biases may not: a Wasserstein critic's output bias cancels out of its loss)
            weights = {k for k in names if not k.endswith("bias")}
            assert weights <= changed, sorted(weights - changed)
    assert summary["samples"] and Path(summary["samples"]).is_file()


def _npz(tmp_path, classes=10):
    ds = tiny_dataset(24, 28, 1, classes)
    path = tmp_path / "tiny.npz"
    arrays = {"images": ds.images.numpy()}
    if classes:
        arrays["labels"] = ds.labels.numpy().astype(np.int64)
    np.savez(path, **arrays)
    return path


def _train_cli(tmp_path, preset, run_dir):
    argv = ["train", "--config", str(CONFIGS / preset), "--run-dir", str(run_dir),
            f"data.dataset={_npz(tmp_path)}", f"out_dir={tmp_path}", *TINY]
    assert main(argv) == 0
    return run_dir


def test_conditional_sampling_cli(tmp_path, capsys):
    run = _train_cli(tmp_path, "cresnet-fashion-mnist.yaml", tmp_path / "cond")
    one = tmp_path / "x.png"
    assert main(["sample", str(run), "--class", "3", "--n", "6", "--out", str(one)]) == 0
    grid = tmp_path / "grid.png"
    assert main(["sample", str(run), "--per-class", "4", "--out", str(grid)]) == 0
    with Image.open(one) as a, Image.open(grid) as b:
        assert a.size[0] > 0 and b.size[1] > b.size[0]  # 10 rows (classes) of 4 images
    rows = (tmp_path / "grid.classes.txt").read_text().splitlines()
    assert rows[0] == "row 0: class 0" and len(rows) == 10  # an .npz data set has ids, no names
    capsys.readouterr()

    plain = _train_cli(tmp_path, "resnet-fashion-mnist.yaml", tmp_path / "plain")
    assert main(["sample", str(plain), "--class", "3", "--out", str(tmp_path / "y.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --class")  # one line naming the option (after training's progress lines)
    assert not (tmp_path / "y.png").exists()
