"""The ganforge command end to end on tiny data: train, resume, sample, datasets, and bad input -> exit 2."""

import numpy as np
import pytest
from PIL import Image

from conftest import write_gray_npz
from ganforge.cli import main

TINY = ["model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=16", "train.log_every=2",
        "train.sample_every=2", "train.ckpt_every=2", "train.sample_grid=16"]


@pytest.fixture
def npz_data(tmp_path):
    return write_gray_npz(tmp_path / "tiny.npz", labels=True)


def _train(tmp_path, npz_data, run="run", steps=4, extra=()):
    run_dir = tmp_path / run
    code = main(["train", "--config", "configs/dcgan-fashion-mnist.yaml", "--run-dir", str(run_dir),
                 f"data.dataset={npz_data}", f"train.steps={steps}", *TINY, *extra])
    return code, run_dir


def test_train_sample_and_resume(tmp_path, npz_data, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    code, run_dir = _train(tmp_path, npz_data)
    assert code == 0
    out = capsys.readouterr().out
    assert "sample grid:" in out and "checkpoint:" in out and str(run_dir) in out
    assert (run_dir / "checkpoints" / "step_00000004" / "manifest.json").is_file()

    grid = tmp_path / "grid.png"
    assert main(["sample", str(run_dir), "--n", "9", "--out", str(grid), "--seed", "3"]) == 0
    img = np.asarray(Image.open(grid))
    assert img.shape == (3 * 30 + 2, 3 * 30 + 2)  # 3x3 grid of 28px with 2px padding
    again = tmp_path / "again.png"
    main(["sample", str(run_dir), "--n", "9", "--out", str(again), "--seed", "3"])
    assert np.array_equal(img, np.asarray(Image.open(again)))  # seeded

    files = tmp_path / "files"
    assert main(["sample", str(run_dir), "--n", "5", "--files", "--out", str(files)]) == 0
    assert len(list(files.glob("*.png"))) == 5

    # resume continues to a larger step count
    assert main(["train", "--resume", str(run_dir), "train.steps=6"]) == 0
    assert (run_dir / "checkpoints" / "step_00000006").is_dir()


def test_resume_refuses_changed_config(tmp_path, npz_data, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    _, run_dir = _train(tmp_path, npz_data, steps=2)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "optim.lr_g=5e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "optim.lr_g" in err and len(err.splitlines()) == 1
    assert main(["train", "--resume", str(run_dir), "optim.lr_g=5e-4", "train.steps=3",
                 "--allow-config-change"]) == 0


def test_resume_accepts_execution_only_changes(tmp_path, npz_data, monkeypatch):
    """A run moved to another machine may pick another precision and memory layout, without the flag."""
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    _, run_dir = _train(tmp_path, npz_data, steps=2)
    assert main(["train", "--resume", str(run_dir), "train.steps=3", "train.precision=fp32",
                 "train.channels_last=true", "train.fused_optim=false"]) == 0
    assert (run_dir / "checkpoints" / "step_00000003").is_dir()
    assert main(["train", "--resume", str(run_dir), "train.steps=4", "train.reuse_fake=false"]) == 2


def test_resume_finds_the_step_a_killed_save_had_parked(tmp_path, npz_data, capsys, monkeypatch):
    """Killed between the renames of re-saving step 4: resume restores and continues from step 4."""
    from conftest import pid_of_a_finished_process
    from ganforge.atomic import SWAPPED_OUT

    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    _, run_dir = _train(tmp_path, npz_data)
    root, dead = run_dir / "checkpoints", pid_of_a_finished_process()
    (root / "step_00000004").rename(root / f"{SWAPPED_OUT}step_00000004-{dead}")
    (root / f".tmp-step_00000004-{dead}").mkdir()  # the new copy, unfinished
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "train.steps=5"]) == 0
    assert "at step 4" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("step_"))[-2:] == ["step_00000004",
                                                                                         "step_00000005"]
    assert not any(p.name.startswith(".") for p in root.iterdir())


def test_dry_run_prints_resolved_config(capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    assert main(["train", "--config", "configs/dcgan-fashion-mnist.yaml", "--dry-run", "train.steps=77"]) == 0
    out = capsys.readouterr().out
    assert "steps: 77" in out and "arch: dcgan" in out


def run_cli(argv):
    """Exit code of ``ganforge argv``, whether main returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_overrides_may_follow_options(capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    argv = ["train", "--config", "configs/dcgan-fashion-mnist.yaml", "train.steps=77", "--dry-run", "train.seed=5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "steps: 77" in out and "seed: 5" in out
    # anything else left over is still refused in one line
    assert run_cli(["train", "--config", "configs/dcgan-fashion-mnist.yaml", "train.seed=1", "--dry-run", "stray"]) == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err
    assert run_cli(["sample", "/no/run", "--n", "4", "a=1"]) == 2
    assert "unrecognized arguments: a=1" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["train", "--config", "nope.yaml"], "nope.yaml"),
    (["train", "--config", "configs/dcgan-fashion-mnist.yaml", "optim.lr_g=-1", "--dry-run"], "optim.lr_g"),
    (["train", "--config", "configs/dcgan-fashion-mnist.yaml", "train.bogus=1"], "train.bogus"),
    # an architecture the networks cannot have is refused by --dry-run as by training
    (["train", "--config", "configs/resnet-fashion-mnist.yaml", "model.attention=13", "--dry-run"], "model.attention"),
    (["train", "--config", "configs/dcgan-fashion-mnist.yaml", "data.dataset=/no/such/dir"], "/no/such/dir"),
    (["sample", "/no/such/run"], "/no/such/run"),
    (["train", "--bogus-option"], "--bogus-option"),
    (["sample"], "RUN_DIR"),
    (["train", "--resume", "/no/such/run"], "--resume"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_sample_rejects_bad_class_and_count(tmp_path, npz_data, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent.parent)
    _, run_dir = _train(tmp_path, npz_data, steps=2)
    assert main(["sample", str(run_dir), "--class", "3"]) == 2  # unconditional run
    assert main(["sample", str(run_dir), "--n", "0"]) == 2


def test_datasets_lists_named_datasets(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("fashion-mnist", "mnist", "cifar10", "stacked-fashion-mnist", "photos", "skimage-photos"):
        assert name in out


def test_datasets_names_the_missing_photo_packages(capsys, monkeypatch):
    from ganforge.data import photos

    monkeypatch.setattr(photos, "_missing", lambda ps: [p for p in ps if p.package == "mate-backgrounds"])
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("photos "))
    total = len(photos._select("photos", "all"))
    kept = sum(p.package != "mate-backgrounds" for p in photos._select("photos", "all"))
    assert line.split()[1:4] == [str(kept), "of", str(total)]
    assert "scripts/setup.sh photos (apt: mate-backgrounds)" in out


def test_parser_is_built_without_torch():
    """Help and usage errors come at once: building the parser imports no torch (about 1.5 s)."""
    import subprocess
    import sys

    code = ("import sys; from ganforge.cli import build_parser; p = build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "sub = next(a for a in p._actions if a.choices and 'eval' in a.choices); "
            "print(sub.choices['eval'].format_help())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "comma list of fid,kid,pr,cls" in " ".join(out.split())


def test_eval_help_needs_no_torch():
    """`ganforge eval --help` is instant: its metric names are a list the registry is checked against here."""
    import subprocess
    import sys

    from ganforge.commands.eval import BUILTIN_METRICS
    from ganforge.metrics.catalog import metric_names

    assert BUILTIN_METRICS == metric_names()  # no plug-in is registered in this test process
    code = ("import sys; from ganforge.cli import main; assert main(['eval', '--help']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "cls_fid" in done.stdout
