"""eval-inpaint per mask family and comod ratio bucket, ganforge and the classical baselines in one table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ganforge.cli import main
from ganforge.config import load_config
from ganforge.inpaint import baselines
from ganforge.inpaint.mask_families import COMOD_BUCKETS
from ganforge.inpaint.preview import BAND, LABEL_W
from ganforge.train.trainer import Trainer


def _two_photos(path, sizes=((40, 60), (50, 36))):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 255 / w, y * 255 / h, np.full((h, w), 90.0)], -1) + rng.normal(0, 10, (h, w, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path / f"{i}.png")
    return path


@pytest.mark.skipif(not all(baselines.available(m) for m in baselines.BASELINES), reason="baselines not installed")
def test_eval_table_per_family_and_bucket(tmp_path, stand_in_extractor, capsys):
    photos = _two_photos(tmp_path / "photos")
    cfg = load_config(None, [f"out_dir={tmp_path}", "task=inpaint", "model.arch=inpaint", f"data.dataset={photos}",
                             "data.image_size=32", "data.channels=3", "data.crops=true", "model.g_width=4",
                             "model.d_width=4", "model.res_blocks=1", "train.batch_size=2", "train.steps=1",
                             "train.sample_every=1", "train.ckpt_every=1", "train.sample_grid=3",
                             "train.device=cpu", "train.precision=fp32", "inpaint.masks=lama"])
    Trainer(cfg, tmp_path / "run").train()
    out = tmp_path / "eval.json"
    assert main(["eval-inpaint", str(tmp_path / "run"), "--dataset", str(photos), "--masks", "thin,comod",
                 "--n", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    evals = doc["evaluations"]
    assert [e["masks"] for e in evals] == ["thin"] + ["comod"] * len(COMOD_BUCKETS)
    assert [tuple(e["hole_range"]) for e in evals[1:]] == list(COMOD_BUCKETS)
    for e in evals:
        assert set(e["results"]) == {"ganforge", *baselines.BASELINES}
        for metrics in e["results"].values():
            assert {"psnr_hole", "ssim_hole", "l1_hole", "fid2_test"} <= set(metrics)
    for e in evals[1:]:
        lo, hi = e["hole_range"]
        assert lo < e["mean_hole_fraction"] <= hi
    assert len(doc["table"]) == len(evals) * 4
    printed = capsys.readouterr().out
    assert "masks=comod (0.8, 1.0)" in printed and "telea" in printed
    assert "IPD skipped: needs the Inception network" in printed  # the stand-in has no layers to compare
    # Ten pairs or more: P-IDS and U-IDS too.
    twelve = _two_photos(tmp_path / "twelve", sizes=[(36 + i, 40) for i in range(12)])
    out = tmp_path / "ids.json"
    grid = tmp_path / "pictures" / "grid.png"
    assert main(["eval-inpaint", str(tmp_path / "run"), "--dataset", str(twelve), "--masks", "thick",
                 "--baselines", "telea", "--n", "12", "--json", str(out), "--grid", str(grid), "--grid-n", "3",
                 "--grid-start", "10"]) == 0
    e = json.loads(out.read_text())  # one family: one evaluation, not a list
    assert "preview" not in e
    with Image.open(grid) as im:  # a title band, then original / masked / ganforge / telea rows of crops 10 and 11
        assert im.size == (LABEL_W + 2 * 32 * 2, BAND + 4 * 32 * 2)
    assert e["n"] == 12 and set(e["results"]) == {"ganforge", "telea"}
    for metrics in e["results"].values():
        assert 0.0 <= metrics["pids12_test"] <= 1.0 and 0.0 <= metrics["uids12_test"] <= 1.0
    assert main(["eval-inpaint", str(tmp_path / "run"), "--masks", "thin,nope"]) == 2
    assert "unknown mask kind 'nope'" in capsys.readouterr().err
    assert main(["eval-inpaint", str(tmp_path / "run"), "--grid-n", "3"]) == 2
    assert "--grid-n: has no effect without --grid PATH" in capsys.readouterr().err
    assert main(["eval-inpaint", str(tmp_path / "run"), "--grid-start", "3"]) == 2
    assert "--grid-start: has no effect without --grid PATH" in capsys.readouterr().err
    assert main(["eval-inpaint", str(tmp_path / "run"), "--n", "12", "--grid", str(grid), "--grid-start", "12"]) == 2
    assert "--grid-start: must be below --n (12), got 12" in capsys.readouterr().err
    # Fewer images than --n: the start is checked against what is there, before any filling.
    assert main(["eval-inpaint", str(tmp_path / "run"), "--dataset", str(twelve), "--masks", "thick", "--n", "20",
                 "--grid", str(grid), "--grid-start", "15"]) == 2
    assert "--grid-start: must be below the 12 images of" in capsys.readouterr().err
