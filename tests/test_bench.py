"""``ganforge bench``: every mode runs, numbers are consistent, settings are what each mode says;
the harness adapts to a CPU without native bf16."""

import json
from pathlib import Path

import pytest
import torch

import ganforge.train.precision as precision
from ganforge.perf import DEFAULT_MODES_NO_BF16, MODES, default_modes, measure_peaks, native_dtypes
from ganforge.cli import main

REPO = Path(__file__).parent.parent
TINY = ["--set", "model.g_width=8", "--set", "model.d_width=8", "--batch", "8", "--iters", "1", "--rounds", "2",
        "--warmup", "1", "--inception", "0", "--peak-size", "64", "--threads", "1"]


@pytest.fixture
def no_native_bf16(monkeypatch):
    """A CPU like a 2-core EPYC without AVX-512: bf16 only emulated, ``precision: auto`` picks fp32."""
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)


@pytest.mark.slow
def test_bench_reports_each_mode_with_consistent_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
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
                                         (["--iters", "-1"], "--iters"), (["--threads", "-2"], "--threads"),
                                         (["--peak-seconds", "-1"], "--peak-seconds")])
def test_bench_bad_option_is_one_line_exit_2(argv, named, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1


def test_without_native_bf16_defaults_leave_bf16_out(no_native_bf16):
    assert native_dtypes(torch.device("cpu")) == ("fp32",)
    for kind in ("cpu", "cuda"):
        modes = default_modes(kind, bf16_native=False)
        assert modes[0] == "reference" and all(MODES[m].get("precision") != "bf16" for m in modes)
        assert "bf16" in default_modes(kind, bf16_native=True)


def test_peaks_measure_native_dtypes_within_a_budget(no_native_bf16):
    cpu = torch.device("cpu")
    peaks = measure_peaks(cpu, 64)
    assert set(peaks) == {"fp32"} and peaks["fp32"]["native"] and peaks["fp32"]["gflops"] > 0
    # A spent budget stops the repetitions after the first timed product; a generous one allows all six.
    assert measure_peaks(cpu, 64, budget_s=0)["fp32"]["reps"] == 1
    assert measure_peaks(cpu, 64, budget_s=600)["fp32"]["reps"] == 6
    # A dtype asked for explicitly but only emulated: measured on small matrices, and marked.
    emulated = measure_peaks(cpu, 1024, ("fp32", "bf16"), budget_s=0)["bf16"]
    assert not emulated["native"] and emulated["n"] == 256


@pytest.mark.slow
def test_bench_on_a_cpu_without_bf16(tmp_path, monkeypatch, capsys, no_native_bf16):
    monkeypatch.chdir(REPO)
    out = tmp_path / "bench.json"
    assert main(["bench", "--presets", "dcgan-28", *TINY, "--sampling", "16", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    modes = [r["mode"] for r in report["train"]]
    assert modes == list(DEFAULT_MODES_NO_BF16["cpu"])
    assert all(r["settings"]["precision"] == "fp32" and not r["emulated"] for r in report["train"])
    assert set(report["peaks"]) == {"fp32"} and report["meta"]["native_dtypes"] == ["fp32"]
    assert [s["precision"] for s in report["sampling"]] == ["fp32"]
    printed = capsys.readouterr().out
    for mode in modes:  # a progress line per mode and per round, before the table
        assert f"# dcgan-28 {mode}: ready (fp32" in printed
    assert "# dcgan-28 round 2/2: reference" in printed
    assert printed.index("round 1/2") < printed.index("preset      mode")

    # bf16 asked for explicitly still runs, marked as emulated in the JSON and the table.
    assert main(["bench", "--presets", "dcgan-28", "--modes", "reference,bf16", *TINY, "--sampling", "0",
                 "--json", str(out)]) == 0
    rows = {r["mode"]: r for r in json.loads(out.read_text())["train"]}
    assert rows["bf16"]["emulated"] and rows["bf16"]["settings"]["precision"] == "bf16"
    assert not rows["reference"]["emulated"]
    printed = capsys.readouterr().out
    assert "bf16 is emulated" in printed and "bf16*" in printed


def test_every_bench_preset_names_a_shipped_config():
    from ganforge.perf.bench_presets import PRESETS
    from ganforge.preset_files import PRESET_DIR

    # A renamed preset file would otherwise be skipped silently ("missing config files are skipped");
    # the package's own presets, so the check does not depend on the working directory.
    missing = [name for name, file in PRESETS.items() if not (PRESET_DIR / file).is_file()]
    assert not missing


def test_bench_times_the_r3gan_preset_with_its_lazy_penalty(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "bench.json"
    # R1 + R2 is due at even D steps; a round of two consecutive iterations (n_dis 1) holds one of them.
    assert main(["bench", "--presets", "r3gan-28", "--modes", "preset", "--batch", "4", "--iters", "2",
                 "--rounds", "1", "--warmup", "1", "--sampling", "0", "--inception", "0", "--peak-size", "64",
                 "--threads", "1", "--set", "model.blocks_per_stage=1", "--set", "loss.r1_every=2",
                 "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["train"]
    assert row["preset"] == "r3gan-28" and row["finite"] and row["batch"] == 4
    assert row["flops_per_iter"] > 0 and row["ms_per_iter"] > 0
