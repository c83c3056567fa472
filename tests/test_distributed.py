"""Data-parallel training under torchrun: 2 CPU processes on Gloo train one model and write one run."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path

    import numpy as np
    import torch

    from ganforge.config import load_config
    from ganforge.data import ImageDataset
    from ganforge.train.distributed import exit_process, shutdown
    from ganforge.train.trainer import Trainer

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    flags = [a for a in sys.argv[2:] if a.startswith("--")]
    extra = [a for a in sys.argv[2:] if not a.startswith("--")]
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, 64)).long()
    ds = ImageDataset(images=images, labels=labels, num_classes=10, name="tiny")
    cfg = load_config(None, [f"out_dir={out}", "model.g_width=8", "model.d_width=8", "model.z_dim=16",
                             "train.batch_size=16", "train.steps=4", "train.log_every=1",
                             "train.sample_every=2", "train.ckpt_every=2", "train.sample_grid=16",
                             "train.device=cpu", *extra])
    if "--resume" in flags:
        trainer = Trainer.resume(out / "run", cfg, dataset=ds)
    else:
        trainer = Trainer(cfg, out / "run", dataset=ds)
    stop = [int(a.split("=")[1]) for a in flags if a.startswith("--stop-after=")]
    summary = trainer.train(stop_after=stop[0] if stop else None)
    rank = trainer.dist.rank
    torch.save({k: v.detach().clone() for k, v in trainer.modules()["G"].named_parameters()},
               out / f"g_rank{rank}.pt")
    (out / f"summary_rank{rank}.json").write_text(
        __import__("json").dumps({"step": summary["step"], "local_batch": trainer.local_batch,
                                  "images_seen": trainer.counters.images_seen, "world": trainer.dist.world_size}))
    shutdown(wait_for_peers=True)  # as `ganforge train` ends a run under torchrun
    exit_process(0)
""")


def _launch(tmp_path, *extra, nproc=2):
    script = tmp_path.parent / f"{tmp_path.name}-worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(script), str(tmp_path), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
@pytest.mark.parametrize("extra", [
    [], ["model.arch=mlp", "model.num_classes=10", "loss.name=hinge"],
    # double backward through DDP: the gradient penalty and lazy R1
    ["loss.name=wgan-gp", "model.d_batchnorm=false", "optim.n_dis=2"],
    ["model.arch=mlp", "loss.r1_weight=1.0", "loss.r1_every=2"],
    # a decay under a time budget: every rank must use rank 0's clock, or the updates would differ
    ["optim.lr_warmup=2", "optim.lr_decay=linear", "train.max_seconds=3600"]])
def test_two_processes_train_one_model_and_write_one_run(tmp_path, extra):
    _launch(tmp_path, *extra)
    g0 = torch.load(tmp_path / "g_rank0.pt")
    g1 = torch.load(tmp_path / "g_rank1.pt")
    assert g0.keys() == g1.keys()
    for k in g0:  # gradients are averaged over ranks, so every update is the same everywhere
        assert torch.equal(g0[k], g1[k]), k
    s0 = json.loads((tmp_path / "summary_rank0.json").read_text())
    assert s0["world"] == 2 and s0["local_batch"] == 8 and s0["step"] == 4
    n_dis = 2 if "optim.n_dis=2" in extra else 1
    assert s0["images_seen"] == 4 * 16 * n_dis  # global images: each rank trained on its half of every batch
    # Only rank 0 wrote: one run directory, one checkpoint set, one metrics line per step.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run"]
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step_")) == [
        "step_00000000", "step_00000002", "step_00000004"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000002.png", "step_00000004.png"]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_cli_under_torchrun_prints_one_summary(tmp_path):
    from conftest import write_gray_npz

    data = write_gray_npz(tmp_path / "d.npz")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ganforge",
           "train", "--run-dir", str(tmp_path / "run"), f"data.dataset={data}", "data.split=all",
           "model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=16", "train.steps=2",
           "train.device=cpu", "train.sample_grid=16"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1, proc.stdout
    assert (tmp_path / "run" / "checkpoints" / "step_00000002").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_interrupted_and_resumed_equals_uninterrupted_on_every_rank(tmp_path):
    """Each rank restores its own random streams (noise, dropout), so a resumed run is bit-identical."""
    extra = ["model.arch=mlp", "model.dropout=0.3", "train.ckpt_every=100"]  # dropout: per-rank global RNG
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    _launch(full, *extra)
    _launch(part, *extra, "--stop-after=2")
    assert (part / "run" / "checkpoints" / "step_00000002").is_dir()
    _launch(part, *extra, "--resume")
    for rank in (0, 1):
        a, b = torch.load(full / f"g_rank{rank}.pt"), torch.load(part / f"g_rank{rank}.pt")
        for k in a:
            assert torch.equal(a[k], b[k]), (rank, k)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_resume_with_another_process_count_continues(tmp_path):
    """A run saved by 2 processes resumes on 1: no per-rank streams to restore, training goes on."""
    extra = ["train.ckpt_every=100"]
    _launch(tmp_path, *extra, "--stop-after=2")
    _launch(tmp_path, *extra, "--resume", nproc=1)
    assert json.loads((tmp_path / "summary_rank0.json").read_text())["step"] == 4
