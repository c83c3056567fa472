"""A metric defined in this file only (no package code changes) is computed by ``compute_metrics``,
by ``ganforge eval`` on folders, and by periodic evaluation during training (``train.eval_metrics``)."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config, write_gray_npz
from ganforge.cli import main
from ganforge.metrics.compute import compute_metrics
from ganforge.metrics.catalog import metric_names, register_metric, unregister_metric
from ganforge.train.trainer import Trainer


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def toy_brightness():
    """The gap between the mean pixel values of the generated and the real images, in [0, 1]."""

    @register_metric("toy_brightness", needs=("images",), better="lower")
    def _toy(images, *, tag, split, options):
        gap = abs(images.fake.float().mean().item() - images.real.float().mean().item()) / 255
        return {f"toy_brightness{tag}_{split}": gap}

    yield
    unregister_metric("toy_brightness")
    assert "toy_brightness" not in metric_names()


def _folder(path, value, n=8):
    path.mkdir()
    for i in range(n):
        Image.fromarray(np.full((12, 12), value, np.uint8)).save(path / f"{i:02d}.png")
    return path


def test_a_metric_defined_in_a_test_is_computed_by_compute_metrics_and_eval(tmp_path, toy_brightness, capsys,
                                                                           monkeypatch):
    import ganforge.metrics.evaluator as pipeline

    class NoInception:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the images source needs no Inception features")

    monkeypatch.setattr(pipeline, "InceptionFeatures", NoInception)
    real, fake = _folder(tmp_path / "real", 100), _folder(tmp_path / "fake", 151)
    result = compute_metrics(str(fake), str(real), "all", ["toy_brightness"], n=8, split_name="folder")
    assert result["toy_brightness8_folder"] == pytest.approx(51 / 255)
    assert "quantised" not in result["protocol"]  # files are uint8 already
    out = tmp_path / "r.json"
    assert main(["eval", "--real", str(real), "--fake", str(fake), "--metrics", "toy_brightness",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["toy_brightness8_folder"] == pytest.approx(51 / 255)
    assert "toy_brightness8_folder" in capsys.readouterr().out


def test_periodic_evaluation_computes_the_registered_metric_and_keeps_the_best_by_it(tmp_path, toy_brightness,
                                                                                     stand_in_extractor):
    data = write_gray_npz(tmp_path / "d.npz")
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.steps=4", "train.eval_every=2",
                      "train.eval_n=16", "train.ema_decay=0.5", "train.eval_metrics=[toy_brightness, fid]")
    Trainer(cfg, tmp_path / "run").train()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0 <= r["toy_brightness16_all"] <= 1 and r["fid16_all"] > 0 for r in evals)
    assert "eval_setup_seconds" in evals[0] and all(r["eval_seconds"] > 0 for r in evals)
    # the best checkpoint follows the first requested metric (lower is better, as it declares)
    best = json.loads((tmp_path / "run" / "checkpoints" / "best" / "best.json").read_text())
    assert best["metric"] == "toy_brightness16_all" and best["better"] == "lower"
    assert best["value"] == min(r["toy_brightness16_all"] for r in evals)


def test_an_unregistered_eval_metric_is_a_config_error_naming_the_key(tmp_path, stand_in_extractor):
    from ganforge.errors import ConfigError

    data = write_gray_npz(tmp_path / "d.npz")
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.steps=2", "train.eval_every=2",
                      "train.eval_n=16", "train.eval_metrics=[no_such_metric]")
    with pytest.raises(ConfigError) as err:
        Trainer(cfg, tmp_path / "run").train()
    assert err.value.where == "train.eval_metrics" and "no_such_metric" in err.value.reason


def test_a_metric_that_prefers_higher_values_keeps_the_highest(tmp_path, stand_in_extractor):
    from ganforge.train.periodic_eval import evaluate_during_training

    values = iter([0.2, 0.5, 0.3])

    @register_metric("toy_score", better="higher")
    def _score(*, tag, split, options):
        return {f"toy_score{tag}": next(values)}

    try:
        data = write_gray_npz(tmp_path / "d.npz")
        cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.steps=2",
                          "train.eval_n=16", "train.eval_metrics=[toy_score]")
        trainer = Trainer(cfg, tmp_path / "run")
        trainer.train()
        marks = [evaluate_during_training(trainer).get("best", False) for _ in range(3)]
    finally:
        unregister_metric("toy_score")
    assert marks == [True, True, False]
    best = json.loads((tmp_path / "run" / "checkpoints" / "best" / "best.json").read_text())
    assert best["value"] == 0.5 and best["better"] == "higher" and "fid" not in best
