"""``ganforge report``: the history rules (resume, rollback, re-evaluation) and the report of a real tiny run."""

import json
import re

import numpy as np
import pytest

from conftest import tiny_config, write_gray_npz
from ganforge.cli import main
from ganforge.report.history import build_history, read_history
from ganforge.train.trainer import Trainer

pytest.importorskip("matplotlib")


def _train(step, **extra):
    return {"step": step, "d_loss": 1.0 + step / 100, "g_loss": 2.0, "train_seconds": float(step), **extra}


def test_history_keeps_one_record_per_step_across_rollbacks_and_resumes():
    records = [_train(2), _train(4), {"step": 4, "event": "eval", "fid2k_test": 50.0},
               _train(6), {"step": 6, "event": "eval", "fid2k_test": 40.0},
               {"step": 4, "event": "rollback", "from_step": 7},  # back to 4: steps 6 and its eval are gone
               _train(6, g_loss=3.0), _train(8), _train(10),
               _train(8, g_loss=4.0),  # killed after 10, resumed from the checkpoint at 6: 8 and 10 again
               _train(10, g_loss=4.0),
               {"step": 10, "event": "eval", "fid2k_test": 30.0, "kid2k_test": [0.5, 0.1]},
               {"step": 10, "event": "eval", "fid2k_test": 29.0, "kid2k_test": [0.4, 0.1]},  # re-evaluated
               {"step": 4, "event": "eval", "generator": "ema-if-present", "fid10k_test": 45.0},  # old checkpoint
               {"step": 10, "eval": "inpaint", "masks": "center", "inpaint/ganforge/psnr_hole": 20.0}]
    h = build_history(records)
    assert [r["step"] for r in h.train] == [2, 4, 6, 8, 10]
    assert [r["g_loss"] for r in h.train] == [2.0, 2.0, 3.0, 4.0, 4.0]
    steps, fid = h.eval_series("fid2k_test")
    assert steps.tolist() == [4, 10] and fid.tolist() == [50.0, 29.0]
    assert h.eval_series("kid2k_test")[1].tolist() == [0.4]  # the mean of [mean, std]
    assert h.eval_series("fid10k_test")[0].tolist() == [4]
    assert "inpaint/ganforge/psnr_hole" in h.eval_keys()
    assert [e["event"] for e in h.events] == ["rollback"]
    # training seconds of any step, interpolated between logged steps
    assert h.seconds_at(np.array([0, 3, 10])).tolist() == [0.0, 3.0, 10.0]


def test_torn_and_foreign_lines_are_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join([json.dumps(_train(2)), "[1, 2]", json.dumps(_train(4)), '{"step": 6, "d_lo']))
    h = read_history(path)
    assert [r["step"] for r in h.train] == [2, 4] and h.torn == 1


@pytest.fixture
def tiny_run(tmp_path, stand_in_extractor):
    """A real run: interrupted at step 5, resumed to 8, evaluated during training and by `ganforge eval`."""
    data = write_gray_npz(tmp_path / "d.npz")
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.steps=8", "train.log_every=2",
                      "train.sample_every=2", "train.ckpt_every=4", "train.eval_every=4", "train.eval_n=16")
    run = tmp_path / "run"
    Trainer(cfg, run).train(stop_after=5)
    Trainer.resume(run).train()
    assert main(["eval", str(run), "--metrics", "fid,kid", "--n", "16", "--split", "all"]) == 0
    # As if an earlier session had logged steps 6 and 8, was killed before its next checkpoint,
    # and the log was not truncated on resume: stale records that the resumed ones replace.
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    at = next(i for i, r in enumerate(records) if r.get("event") == "eval" and r["step"] == 4) + 1
    stale = [{**r, "g_loss": 99.0} for r in records if r.get("step") in (6, 8) and "d_loss" in r]
    records[at:at] = stale
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "execution.json").write_text(json.dumps(
        {"precision": {"value": "fp32", "reason": "no native bf16 on this CPU"}, "fused_optim": True}))
    return run


def test_report_of_a_resumed_run(tiny_run, capsys):
    assert main(["report", str(tiny_run)]) == 0
    out = tiny_run / "report"
    assert str(out / "index.html") in capsys.readouterr().out
    html = (out / "index.html").read_text()
    images = re.findall(r"<img src='([^']+)'", html)
    assert {"overview.png", "losses.png", "d_outputs.png", "speed.png", "skipped.png", "eval.png",
            "samples.png", "samples.gif"} <= set(images)
    assert all((out / name).is_file() and (out / name).stat().st_size > 1000 for name in images)
    best = json.loads((tiny_run / "checkpoints" / "best" / "best.json").read_text())
    assert f"step {best['step']}: fid16_all" in html
    assert "no native bf16 on this CPU" in html  # execution settings
    assert "train.steps" not in html and "steps: 8" in html  # the resolved config, as written
    assert "kid16_all" in html and "ganforge eval" in html  # the evaluation table


def test_report_figures_hold_each_step_once(tiny_run):
    from ganforge.report import build_report
    from ganforge.report.plot import render

    report = build_report(tiny_run, tiny_run / "elsewhere")
    specs = {s.name: s for s in report.specs}
    by_step, by_time = specs["losses"].panels
    for series in by_step.series:  # D loss and G loss
        assert series.x.tolist() == [2, 4, 5, 6, 8]  # step 5: where the first session stopped
    assert 99.0 not in by_step.series[1].y  # the stale G losses
    seconds = by_time.series[0].x
    assert seconds.size == 5 and np.all(np.diff(seconds) > 0)
    assert [s.label for s in specs["d_outputs"].panels[0].series] == ["D(x) real", "D(G(z)) fake"]
    # FID: periodic evaluations at 4 and 8, and the `ganforge eval` of the final checkpoint
    fid = next(p for p in specs["eval"].panels if p.title == "fid16_all by step").series[0]
    assert fid.x.tolist() == [4, 8, 8]
    kid = next(p for p in specs["eval"].panels if p.title == "kid16_all by step").series[0]
    assert kid.x.tolist() == [8]
    assert report.strip_steps == [2, 4, 6, 8] and report.animation_steps == [2, 4, 6, 8]
    # what matplotlib drew is that data
    import matplotlib.pyplot as plt

    fig = render(specs["losses"])
    try:
        assert fig.axes[0].get_lines()[0].get_xdata().tolist() == [2, 4, 5, 6, 8]
    finally:
        plt.close(fig)


def test_report_while_the_run_has_only_started(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  steps: 100\n")
    inpaint = {"step": 2, "eval": "inpaint", "masks": "center", "n": 8, "inpaint/ganforge/psnr_hole": 21.5,
               "inpaint/telea/psnr_hole": 19.25}
    (run / "metrics.jsonl").write_text(json.dumps(_train(2)) + "\n" + json.dumps(inpaint) + '\n{"step": 4, "d_')
    assert main(["report", str(run), "--no-animation"]) == 0
    html = (run / "report" / "index.html").read_text()
    assert "2 of 100" in html and "1 unreadable line" in html
    assert "<td>telea</td><td class=\"num\">19.25</td>" in html  # the eval-inpaint table
    assert not (run / "report" / "samples.gif").exists()


def test_not_a_run_and_missing_matplotlib_are_one_line_errors(tmp_path, capsys, monkeypatch):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]
    (tmp_path / "config.yaml").write_text("{}\n")
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if not installed
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ganforge[report]" in err[0]
    assert not (tmp_path / "report").exists()
