"""A run trained on some classes (``data.classes``) is evaluated against those classes' real images only,
with conditional labels drawn from them, under its own cache key, and its records say so.

Uses the pooled-pixel stand-in extractor (conftest.PooledFeatures): only the plumbing is under test.
"""

import json

import numpy as np
import pytest
import torch

import ganforge.metrics.evaluator as evaluate
from conftest import tiny_config, write_gray_npz
from ganforge.cli import main
from ganforge.metrics.cache import stats_key
from ganforge.metrics.classifier import dataset_key
from ganforge.metrics.compute import compute_metrics
from ganforge.metrics.evaluator import Evaluator
from ganforge.sampling import class_labels, generate
from ganforge.train.periodic_eval import evaluate_during_training
from ganforge.train.trainer import Trainer

KEPT = [7, 3]  # deliberately unsorted: records and keys hold them sorted


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def labelled(tmp_path):
    """200 random labelled images (labels 0-9) and, separately, the images of classes 3 and 7 alone."""
    path = write_gray_npz(tmp_path / "d.npz", n=200, labels=True)
    with np.load(path) as z:
        images, labels = z["images"], z["labels"]
    only = np.isin(labels, KEPT)
    kept = tmp_path / "kept.npz"
    np.savez(kept, images=images[only], labels=labels[only])
    return path, kept, int(only.sum())


def _conditional_run(tmp_path, data, *extra):
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", f"data.classes={KEPT}",
                      "data.limit=20", "model.num_classes=10", "train.steps=2", "train.ckpt_every=2",
                      "train.ema_decay=0.5", *extra)
    return cfg, Trainer(cfg, tmp_path / "run")


def test_labels_of_a_class_subset_run_come_from_those_classes_only(tmp_path):
    cfg = tiny_config(tmp_path, "model.num_classes=10")
    everything = class_labels(cfg, 2000, None, torch.Generator().manual_seed(0))
    assert set(everything.tolist()) == set(range(10))  # unchanged without data.classes
    cfg.data.classes = KEPT
    drawn = class_labels(cfg, 2000, None, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == set(KEPT)
    assert 0.4 < float((drawn == 3).float().mean()) < 0.6  # uniform over the kept classes
    # an explicit class is still honoured
    assert set(class_labels(cfg, 5, 1, torch.Generator()).tolist()) == {1}


def test_eval_of_a_class_subset_run_compares_with_those_classes_only(tmp_path, labelled, stand_in_extractor,
                                                                     monkeypatch, capsys):
    import ganforge.artifacts as artifacts

    data, kept, count = labelled
    cfg, trainer = _conditional_run(tmp_path, data)
    trainer.train()
    # ganforge eval loads the run's generator itself: spy on the labels it is called with.
    seen = []
    real_load = artifacts.load_generator

    def spied(*args, **kwargs):
        G, c, step = real_load(*args, **kwargs)
        G.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[1].clone()))
        return G, c, step

    monkeypatch.setattr(artifacts, "load_generator", spied)
    # No --n: the default is what the filtered reference holds (here fewer than 10000), although
    # training saw only data.limit=20 of those images.
    assert main(["eval", str(tmp_path / "run"), "--metrics", "fid", "--split", "all"]) == 0
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["n_real"] == record["n_fake"] == count < 200
    key = f"fid{count}_all"
    assert key in record and record["classes"] == [3, 7]
    assert "(classes [3, 7] only)" in record["protocol"]
    labels = torch.cat(seen)
    assert len(labels) == count and set(labels.tolist()) <= {3, 7}
    assert "[3, 7]" in capsys.readouterr().out  # the printed table lists the classes (not as "3 +- 7")
    # The same number as an evaluation against a data set holding only those classes' images.
    G_eval, cfg_eval, _ = real_load(tmp_path / "run")
    direct = compute_metrics(generate(G_eval, cfg_eval, count, seed=0, batch_size=64), str(kept), "all", ("fid",),
                             count, image_size=cfg.data.image_size, channels=cfg.data.channels)
    assert record[key] == direct[key]
    # An explicit --n beyond the filtered split is a one-line error naming --n and the classes.
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--metrics", "fid", "--split", "all", "--n", str(count + 1)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--n" in err and "classes [3, 7]" in err and f"at most {count}" in err


def test_the_class_subset_has_its_own_cache_key_and_the_all_class_key_is_unchanged(tmp_path, labelled,
                                                                                   monkeypatch, stand_in_extractor):
    data = labelled[0]
    keys = []
    real_cached = evaluate.cached_stats

    def spied(key, *args, **kwargs):
        keys.append(key)
        return real_cached(key, *args, **kwargs)

    monkeypatch.setattr(evaluate, "cached_stats", spied)
    fake = torch.zeros(16, 1, 28, 28, dtype=torch.uint8)
    plain = compute_metrics(iter([fake]), str(data), "all", ("fid",), 16, image_size=28, channels=1)
    subset = compute_metrics(iter([fake]), str(data), "all", ("fid",), 16, image_size=28, channels=1, classes=KEPT)
    again = compute_metrics(iter([fake]), str(data), "all", ("fid",), 16, image_size=28, channels=1,
                            classes=sorted(KEPT))
    everything, only, only_again = keys
    # Every class: the key of earlier versions, field for field; no classes in the record or protocol.
    assert everything == stats_key(dataset_key(str(data)), "all", 16, 28, 1, everything["extractor"], 16,
                                   subset_seed=0)
    assert "classes" not in plain and "classes" not in plain["protocol"]
    assert only["classes"] == [3, 7] and only != everything and only_again == only
    assert len(list((tmp_path / "cache" / "stats").glob("*.npz"))) == 2
    assert plain["fid16_all"] != subset["fid16_all"] == again["fid16_all"]


def test_periodic_evaluation_follows_the_same_rule(tmp_path, labelled, stand_in_extractor):
    data, kept, count = labelled
    cfg, trainer = _conditional_run(tmp_path, data, "train.eval_every=2", "train.eval_n=16")
    trainer.train()
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r.get("event") == "eval"]
    assert len(evals) == 1 and evals[0]["classes"] == [3, 7]
    seen = []
    G = trainer.ema.model
    G.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[1].clone()))
    record = evaluate_during_training(trainer)
    labels = torch.cat(seen)
    assert len(labels) == 16 and set(labels.tolist()) <= {3, 7}
    # The number of an evaluation against the kept classes' images alone (the ganforge eval protocol).
    direct = compute_metrics(generate(G, cfg, 16, seed=cfg.train.seed, batch_size=64), str(kept), "all",
                             ("fid",), 16, image_size=cfg.data.image_size, channels=cfg.data.channels)
    assert record["fid16_all"] == pytest.approx(direct["fid16_all"], rel=1e-9, abs=1e-9)
    # More generated than real images of those classes: all of them, and the name says how many.
    monitor = Evaluator(str(data), "all", count + 4, image_size=28, channels=1, classes=KEPT)
    result = monitor(generate(G, cfg, count + 4, seed=0))
    assert monitor.n_real == count and f"fid{count + 4}_all{count}" in result
    assert result["classes"] == [3, 7] and "(classes [3, 7] only)" in result["protocol"]


def test_training_of_a_class_subset_run_asks_g_for_those_classes_only(tmp_path, labelled):
    """The G phase draws its labels over data.classes: D never sees real images of the other ids."""
    data, _, _ = labelled
    # Without fake reuse the G phase draws its own labels (with it, G reuses the D phase's real labels).
    cfg, trainer = _conditional_run(tmp_path, data, "train.reuse_fake=false")
    seen = []
    trainer.G.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[1].clone()))
    trainer.train()
    drawn = torch.cat([y for y in seen if y is not None and len(y) == cfg.train.batch_size])
    assert len(drawn) >= 2 * cfg.train.batch_size  # a G forward in each of the two steps
    assert set(drawn.tolist()) <= set(KEPT) and set(drawn.tolist()) == set(KEPT)


def test_the_sample_grid_of_a_class_subset_run_has_one_row_per_kept_class(tmp_path):
    from ganforge.sampling import per_class_labels
    from ganforge.tasks.generation import fixed_noise, grid_columns

    cfg = tiny_config(tmp_path, "model.num_classes=10", "train.sample_grid=16", f"data.classes={KEPT}")
    assert cfg.label_classes == (3, 7)
    assert grid_columns(cfg) == 8
    _, y = fixed_noise(cfg, 16)
    assert y.tolist() == [3] * 8 + [7] * 8
    assert per_class_labels(cfg, 2).tolist() == [3, 3, 7, 7]
    everything = tiny_config(tmp_path, "model.num_classes=10", "train.sample_grid=20")
    assert everything.label_classes == tuple(range(10))
    assert fixed_noise(everything, 20)[1].tolist() == [k for k in range(10) for _ in range(2)]
    assert tiny_config(tmp_path).label_classes == ()
