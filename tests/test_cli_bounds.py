"""Bad options, unwritable outputs and impossible sizes: one line on stderr, exit code 2, before any work."""

import os
import pathlib

import numpy as np
import pytest
import torch

from conftest import tiny_config, write_gray_npz
from ganforge.cli import main
from ganforge.errors import CheckpointError, ConfigError
from ganforge.train.trainer import Trainer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-step run on 64 random 28x28 images (split: all)."""
    tmp = tmp_path_factory.mktemp("bounds")
    data = write_gray_npz(tmp / "d.npz")
    cfg = tiny_config(tmp, f"data.dataset={data}", "data.split=all", "train.steps=2", "train.ckpt_every=2")
    Trainer(cfg, tmp / "run").train()
    return tmp / "run"


def one_line_exit_2(argv, capsys, needle=None):
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    if needle is not None:
        assert needle in err, err
    return err, captured.out


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if generation or evaluation starts: the checks must come first."""
    import ganforge.inpaint.compare as inpaint_eval
    import ganforge.metrics.compute as evaluate
    import ganforge.sampling as sampling

    def forbidden(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(evaluate, "compute_metrics", forbidden)
    monkeypatch.setattr(inpaint_eval, "evaluate_inpainting", forbidden)
    monkeypatch.setattr(sampling, "generate", forbidden)


# ------------------------------------------------------------------ output paths

@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


@pytest.mark.parametrize("make_argv", [
    lambda run, f: ["sample", run, "--out", f"{f}/grid.png"],  # parent is a file
    lambda run, f: ["sample", run, "--out", f"{f}/deeper/grid.png"],
    lambda run, f: ["sample", run, "--files", "--out", f"{f}"],  # a directory output that is a file
    lambda run, f: ["sample", run, "--out", f"{f.parent}"],  # a file output that is a directory
    lambda run, f: ["export", run, "--out", f"{f}"],
    lambda run, f: ["export", run, "--out", f"{f}/sub"],
    lambda run, f: ["eval", run, "--n", "8", "--split", "all", "--json", f"{f}/r.json"],
    lambda run, f: ["eval", "--real", run, "--fake", run, "--json", f"{f.parent}"],
    lambda run, f: ["eval-inpaint", run, "--json", f"{f}/r.json"],
])
def test_unwritable_outputs_fail_before_the_work(make_argv, run_dir, a_file, capsys, no_work):
    err, out = one_line_exit_2(make_argv(str(run_dir), a_file), capsys)
    assert str(a_file.parent) in err and "wrote" not in out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a file system nobody can write (/proc)")
@pytest.mark.parametrize("argv", [["sample", "RUN", "--out", "/proc/ganforge-test/grid.png"],
                                  ["sample", "RUN", "--files", "--out", "/proc/ganforge-test"],
                                  ["eval", "RUN", "--json", "/proc/ganforge-test.json"]])
def test_non_writable_directory(argv, run_dir, capsys, no_work):
    one_line_exit_2([str(run_dir) if a == "RUN" else a for a in argv], capsys, "cannot write into /proc")


def test_missing_parents_are_created(run_dir, tmp_path, capsys):
    grid = tmp_path / "new" / "dirs" / "grid.png"
    assert main(["sample", str(run_dir), "--n", "4", "--out", str(grid)]) == 0
    assert grid.is_file()
    assert main(["export", str(run_dir), "--out", str(tmp_path / "x" / "export")]) == 0
    assert (tmp_path / "x" / "export" / "generator.safetensors").is_file()


def test_files_need_free_disk_space(run_dir, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    one_line_exit_2(["sample", str(run_dir), "--files", "--n", "100", "--out", str(tmp_path / "f")], capsys, "free")
    assert not (tmp_path / "f").exists()


# ------------------------------------------------------------------ options

@pytest.mark.parametrize("argv, needle", [
    (["sample", "RUN", "--n", "0"], "--n"),
    (["sample", "RUN", "--n", "100000000"], "--n"),
    (["sample", "RUN", "--n", "5000"], "--files"),  # too many for a grid
    (["sample", "RUN", "--per-class", "0"], "--per-class"),
    (["sample", "RUN", "--per-class", "-3"], "--per-class"),
    (["sample", "RUN", "--seed", "-1"], "--seed"),
    (["sample", "RUN", "--seed", str(2**70)], "--seed"),
    (["sample", "RUN", "--class", "-1"], "--class"),
    (["sample", "RUN", "--device", "bogus"], "--device"),
    (["sample", "RUN", "--device", "meta"], "--device"),
    (["eval", "RUN", "--batch-size", "0"], "--batch-size"),
    (["eval", "RUN", "--batch-size", "-5"], "--batch-size"),
    (["eval", "RUN", "--n", "nan"], "--n"),
    (["eval", "RUN", "--n", "10000000"], "--n"),
    (["eval", "RUN", "--split", "bogus"], "--split"),
    (["eval", "RUN", "--n", "100", "--split", "all"], "64"),  # more than the 64 real images
    (["eval-inpaint", "RUN", "--ratio", "nan"], "--ratio"),
    (["eval-inpaint", "RUN", "--ratio", "inf"], "--ratio"),
    (["eval-inpaint", "RUN", "--ratio", "1.5"], "--ratio"),
    (["eval-inpaint", "RUN", "--n", "0"], "--n"),
])
def test_degenerate_options(argv, needle, run_dir, capsys, stand_in_extractor):
    one_line_exit_2([str(run_dir) if a == "RUN" else a for a in argv], capsys, needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
@pytest.mark.parametrize("command", ["sample", "eval", "eval-inpaint"])
def test_cuda_without_cuda_is_one_line(command, run_dir, capsys, no_work):
    one_line_exit_2([command, str(run_dir), "--device", "cuda"], capsys, "--device")


def test_eval_metric_names_never_claim_more_real_images(tmp_path, stand_in_extractor, monkeypatch):
    from ganforge.metrics.compute import compute_metrics

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    real = tmp_path / "real.npz"
    np.savez(real, images=np.random.default_rng(1).integers(0, 256, (40, 28, 28), dtype=np.uint8))
    fake = lambda b: torch.randint(0, 256, (b, 1, 28, 28), dtype=torch.uint8)  # noqa: E731
    res = compute_metrics(fake, str(real), "all", ("fid",), n=100)
    assert "fid100_all40" in res and res["n_real"] == 40 and res["n_fake"] == 100
    res = compute_metrics(fake, str(real), "all", ("fid",), n=40)
    assert "fid40_all" in res
    with pytest.raises(ConfigError, match="40 images"):
        compute_metrics(fake, str(real), "all", ("fid",), n=100, require_n_real=True)
    with pytest.raises(ConfigError):
        compute_metrics(fake, str(real), "all", ("fid",), n=10, batch_size=0)


# ------------------------------------------------------------------ config values and model sizes

@pytest.mark.parametrize("override", ["optim.lr_d=.inf", "optim.grad_clip=.nan", "loss.r1_weight=nan",
                                      "model.dropout=1.5", "data.image_size=100000", "model.g_width=1e6",
                                      "model.z_dim=1e13"])
def test_train_refuses_bad_values_before_training(override, tmp_path, capsys):
    one_line_exit_2(["train", "--run-dir", str(tmp_path / "r"), override], capsys, override.split("=")[0])
    assert not (tmp_path / "r").exists()


def test_unsafe_pickle_message_names_a_real_way(tmp_path):
    from ganforge.weights import read_state_file

    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError) as err:
        read_state_file(path)
    assert "unsafe_pickle=True" in str(err.value) and "--unsafe-pickle" not in str(err.value)


def test_main_returns_argparse_exit_codes(capsys):
    assert main(["sample", "--bogus"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["--version"]) == 0


def test_billion_laughs_config_in_a_real_process(tmp_path):
    import subprocess
    import sys

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\ntrain: {steps: *a8}\n")
    src = pathlib.Path(__file__).parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([sys.executable, "-m", "ganforge", "train", "--config", str(path), "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
