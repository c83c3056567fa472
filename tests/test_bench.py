"""``ganforge bench``: every mode runs, numbers are consistent, settings are what each mode says."""

import json

import pytest

from ganforge.cli import main


@pytest.mark.slow
def test_bench_reports_each_mode_with_consistent_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    out = tmp_path / "bench.json"
    assert main(["bench", "--presets", "dcgan-28,resnet-28", "--modes", "reference,fast,preset",
                 "--batch", "8", "--iters", "1", "--rounds", "2", "--warmup", "1", "--sampling", "16",
                 "--inception", "0", "--peak-size", "256", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {(r["preset"], r["mode"]): r for r in report["train"]}
    assert set(rows) == {(p, m) for p in ("dcgan-28", "resnet-28") for m in ("reference", "fast", "preset")}
    for r in rows.values():
        assert r["finite"] and r["batch"] == 8 and r["flops_per_iter"] > 0
        assert r["images_per_s"] == pytest.approx(8 * r["n_dis"] / (r["ms_per_iter"] / 1e3))
        assert r["gflops_achieved"] == pytest.approx(r["flops_per_iter"] / r["ms_per_iter"] * 1e-6)
    for preset in ("dcgan-28", "resnet-28"):
        ref, fast, shipped = (rows[(preset, m)] for m in ("reference", "fast", "preset"))
        assert ref["settings"]["precision"] == "fp32" and not ref["settings"]["channels_last"]
        assert not ref["settings"]["fused_adam"] and not ref["settings"]["reuse_fake"]
        assert ref["speedup_vs_reference"] == pytest.approx(1.0)
        assert fast["settings"]["fused_adam"] and fast["settings"]["reuse_fake"]
        assert fast["flops_per_iter"] < ref["flops_per_iter"]  # fake reuse saves a G forward
    # the ResNet preset ships with channels_last; the plain modes override it
    assert rows[("resnet-28", "preset")]["settings"]["channels_last"]
    assert not rows[("resnet-28", "fast")]["settings"]["channels_last"]
    assert {s["preset"] for s in report["sampling"]} == {"dcgan-28", "resnet-28"}
    assert report["peaks"]["fp32"]["gflops"] > 0


@pytest.mark.parametrize("argv, named", [(["--modes", "reference,warp-drive"], "warp-drive"),
                                         (["--presets", "dcgan-29"], "--presets"),
                                         (["--iters", "-1"], "--iters"), (["--threads", "-2"], "--threads")])
def test_bench_bad_option_is_one_line_exit_2(argv, named, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
