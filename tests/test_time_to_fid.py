"""benchmarks/time_to_fid.py: stops at the first evaluation below every threshold, reports training time."""

import json

import pytest

from conftest import load_script, tiny_config, write_gray_npz
from ganforge.config import dump_yaml

@pytest.fixture
def ttf():
    return load_script("time_to_fid")


@pytest.fixture
def tiny_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    data = write_gray_npz(tmp_path / "d.npz")
    path = tmp_path / "tiny.yaml"
    path.write_text(dump_yaml(tiny_config(tmp_path, f"data.dataset={data}", "data.split=all")))
    return path


def test_first_crossings_pick_the_first_point_below_each_threshold(ttf):
    curve = [{"step": 2, "fid": 30.0}, {"step": 4, "fid": 15.0}, {"step": 6, "fid": 18.0}, {"step": 8, "fid": 9.0}]
    hits = ttf.first_crossings(curve, [20.0, 10.0, 5.0])
    assert hits["20"]["step"] == 4 and hits["10"]["step"] == 8 and hits["5"] is None


def _run(ttf, preset, tmp_path, thresholds: str, max_steps: int) -> dict:
    out = tmp_path / "ttf.json"
    assert ttf.main(["--config", str(preset), "--device", "cpu", "--thresholds", thresholds, "--eval-every", "2",
                     "--eval-n", "16", "--max-steps", str(max_steps), "--run-dir", str(tmp_path / "run"),
                     "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_runs_until_budget_and_reports_the_curve(ttf, tiny_preset, tmp_path, stand_in_extractor):
    # the stand-in FID of tiny random data is far above 0.001 and far below 1e9
    result = _run(ttf, tiny_preset, tmp_path, "1e9,0.001", max_steps=6)
    assert [pt["step"] for pt in result["curve"]] == [2, 4, 6] and result["steps"] == 6
    assert result["thresholds"]["1e+09"]["step"] == 2 and result["thresholds"]["0.001"] is None
    seconds = [pt["train_seconds"] for pt in result["curve"]]
    assert all(b > a for a, b in zip([0.0] + seconds, seconds)), seconds
    assert result["curve"][0]["images_seen"] == 2 * 16


def test_stops_once_every_threshold_is_reached(ttf, tiny_preset, tmp_path, stand_in_extractor):
    result = _run(ttf, tiny_preset, tmp_path, "1e9", max_steps=50)
    assert result["steps"] == 2 and len(result["curve"]) == 1


def test_bad_config_is_one_line_exit_2(ttf, tmp_path, capsys):
    assert ttf.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_reports_why_a_planned_cuda_graph_fell_back_to_eager(ttf, tiny_preset, tmp_path, stand_in_extractor):
    result = _run(ttf, tiny_preset, tmp_path, "1e9", max_steps=50)
    assert result["cuda_graph_failed"] == []  # CPU: nothing was captured, nothing failed
    with open(tmp_path / "run" / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": 3, "event": "cuda_graph_failed", "reason": "RuntimeError: sync"}) + "\n")
    assert [r["reason"] for r in ttf.event_records(tmp_path / "run", "cuda_graph_failed")] == ["RuntimeError: sync"]


def test_deferred_evaluation_gives_the_same_curve_as_evaluating_during_training(ttf, tiny_preset, tmp_path,
                                                                              stand_in_extractor):
    now = _run(ttf, tiny_preset, tmp_path / "now", "0.001", max_steps=6)
    out = tmp_path / "later.json"
    assert ttf.main(["--config", str(tiny_preset), "--device", "cpu", "--thresholds", "0.001", "--eval-every", "2",
                     "--eval-n", "16", "--max-steps", "6", "--run-dir", str(tmp_path / "later"),
                     "--json", str(out), "--defer-eval"]) == 0
    later = json.loads(out.read_text())
    assert later["deferred_eval"] and later["complete"]
    assert [pt["step"] for pt in later["curve"]] == [pt["step"] for pt in now["curve"]] == [2, 4, 6]
    assert [pt["fid"] for pt in later["curve"]] == pytest.approx([pt["fid"] for pt in now["curve"]], rel=1e-9)
    assert all(pt["eval_seconds"] > 0 for pt in later["curve"] + now["curve"])
    # the evaluator's one-off set-up is reported apart from the per-evaluation cost, by the run that paid it
    # (the second run in this process found the evaluator set up)
    assert now["eval_setup_seconds"] > 0 and later["eval_setup_seconds"] is None
    # the deferred points are in the run's log too, marked as such
    evals = ttf.eval_records(tmp_path / "later")
    assert [r["step"] for r in evals] == [2, 4, 6] and all(r["deferred"] for r in evals)


def test_marks_in_seconds_extrapolate_the_measured_rate(ttf):
    m = ttf.Marks(every=100, seconds=[10.0, 20.0])
    assert m.by_time and not m.due(0, 0.0)
    assert m.steps_to_next(0, 0.0) == m.WARMUP_STEPS  # start-up and capture: not part of the rate
    first = m.steps_to_next(50, 3.0)  # the steady rate is measured from here
    assert 1 <= first <= 50
    # 100 steps per second since (50 steps, 3 s): 4 s to the mark -> 400 steps
    assert m.steps_to_next(150, 4.0) == 600
    assert m.due(750, 9.9) and not m.due(750, 9.7)
    m.passed()
    assert not m.finished() and m.seconds == [20.0]
    m.passed()
    assert m.finished()
    steps = ttf.Marks(every=4, seconds=[])
    assert not steps.by_time and steps.steps_to_next(6, 1.0) == 2 and steps.due(8, 0.0) and not steps.due(0, 0.0)


def test_evaluates_at_training_seconds(ttf, tiny_preset, tmp_path, stand_in_extractor):
    out = tmp_path / "t.json"
    assert ttf.main(["--config", str(tiny_preset), "--device", "cpu", "--thresholds", "0.001",
                     "--eval-at-seconds", "0.5,1.0", "--max-train-seconds", "5", "--eval-n", "16",
                     "--run-dir", str(tmp_path / "run"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["eval_at_seconds"] == [0.5, 1.0] and len(result["curve"]) == 2
    for pt, mark in zip(result["curve"], [0.5, 1.0]):
        assert pt["train_seconds"] >= mark - 0.2
    assert result["curve"][1]["step"] > result["curve"][0]["step"]
    assert result["train_seconds"] < 5  # ends at the last mark


@pytest.mark.parametrize("marks", ["abc", "0,1", "-1", "99"])
def test_bad_marks_are_one_line_exit_2(ttf, tiny_preset, marks, capsys):
    with pytest.raises(SystemExit) as exc:
        ttf.main(["--config", str(tiny_preset), "--eval-at-seconds", marks, "--max-train-seconds", "50"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--eval-at-seconds" in err[0]


def test_truncated_scores_of_the_final_generator_come_beside_the_plain_curve(ttf, tiny_preset, tmp_path,
                                                                             stand_in_extractor):
    out = tmp_path / "t.json"
    assert ttf.main(["--config", str(tiny_preset), "--device", "cpu", "--thresholds", "0.001", "--eval-every", "2",
                     "--eval-n", "16", "--max-steps", "4", "--run-dir", str(tmp_path / "run"), "--json", str(out),
                     "--truncation", "0.5,2"]) == 0
    result = json.loads(out.read_text())
    assert result["truncation"]["step"] == 4 and set(result["truncation"]["fid"]) == {"0.5", "2"}
    last = result["curve"][-1]
    assert last["step"] == 4
    # other noise, other images: truncation changes the score; the plain curve is untouched by it
    assert result["truncation"]["fid"]["0.5"] != pytest.approx(last["fid"])


def test_the_run_budget_is_the_harness_budget(ttf, tiny_preset, tmp_path, stand_in_extractor):
    """A decay under a time budget must end where the harness stops, whatever the preset says."""
    out = tmp_path / "t.json"
    assert ttf.main(["--config", str(tiny_preset), "--device", "cpu", "--thresholds", "0.001",
                     "--eval-at-seconds", "0.4,0.8", "--max-train-seconds", "0.8", "--eval-n", "16",
                     "--run-dir", str(tmp_path / "run"), "--json", str(out), "optim.lr_decay=linear"]) == 0
    import yaml

    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["max_seconds"] == 0.8
    # the run stops on its budget, and the mark at the very end is still scored
    assert [pt["train_seconds"] >= mark - 0.2 for pt, mark in zip(json.loads(out.read_text())["curve"],
                                                                  [0.4, 0.8])] == [True, True]
    # a smaller budget given as an override ends the run without the harness looping on it
    assert ttf.main(["--config", str(tiny_preset), "--device", "cpu", "--thresholds", "0.001",
                     "--eval-at-seconds", "5", "--max-train-seconds", "10", "--eval-n", "16",
                     "--run-dir", str(tmp_path / "run2"), "--json", str(out), "train.max_seconds=0.3"]) == 0
    assert json.loads(out.read_text())["train_seconds"] < 2


@pytest.mark.parametrize("value", ["abc", "0", "-1,2"])
def test_bad_truncation_is_one_line_exit_2(ttf, tiny_preset, value, capsys):
    with pytest.raises(SystemExit) as exc:
        ttf.main(["--config", str(tiny_preset), "--truncation", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--truncation" in err[0]
