"""The training loop: updates, logging, samples, and exact resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge.train.runlog import Stopwatch
from ganforge.train.trainer import Trainer


@pytest.mark.parametrize("arch, loss", [("dcgan", "ns"), ("dcgan", "minimax"), ("mlp", "ns")])
def test_train_step_changes_parameters_and_keeps_losses_finite(tmp_path, arch, loss):
    cfg = tiny_config(tmp_path, f"model.arch={arch}", f"loss.name={loss}")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    g0 = [p.detach().clone() for p in t.G.parameters()]
    d0 = [p.detach().clone() for p in t.D.parameters()]
    logs = t.train_step()
    assert all(torch.isfinite(torch.tensor(logs[k])) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    assert 0 <= logs["d_real"] <= 1 and 0 <= logs["d_fake"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(g0, t.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, t.D.parameters()))


def test_n_dis_consumes_that_many_real_batches(tmp_path):
    cfg = tiny_config(tmp_path, "optim.n_dis=3")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    t.train_step()
    assert t.counters.images_seen == 3 * 16
    assert t.opt_d.state[next(iter(t.D.parameters()))]["step"].item() == 3
    assert t.opt_g.state[next(iter(t.G.parameters()))]["step"].item() == 1


def test_run_directory_contents(tmp_path):
    cfg = tiny_config(tmp_path)
    summary = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset()).train()
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_s"} <= set(records[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    assert summary["step"] == 6 and summary["checkpoint"].endswith("step_00000006")


def _final_weights(t):
    return {f"{n}.{k}": v.clone() for n, m in t.modules().items() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("extra", [[], ["model.arch=mlp", "model.dropout=0.3", "train.ema_decay=0.9",
                                        "train.ema_bn_batches=2",
                                        "train.augment=translation,cutout,color", "optim.n_dis=2"]])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, extra):
    cfg = tiny_config(tmp_path, "train.steps=8", "train.ckpt_every=100", *extra)
    ds = tiny_dataset(n=40)  # several epochs in 8 steps: the data position must resume too
    full = Trainer(cfg, tmp_path / "full", dataset=ds)
    full.train()
    part = Trainer(cfg, tmp_path / "part", dataset=ds)
    summary = part.train(stop_after=3)  # as if interrupted after step 3
    assert summary["stopped_early"] and summary["step"] == 3
    del part
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    assert resumed.step == 3
    resumed.train()
    a, b = _final_weights(full), _final_weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for oa, ob in ((full.opt_g, resumed.opt_g), (full.opt_d, resumed.opt_d)):
        pa = [p for g in oa.param_groups for p in g["params"]]
        pb = [p for g in ob.param_groups for p in g["params"]]
        for a_, b_ in zip(pa, pb):
            assert torch.equal(oa.state[a_]["exp_avg_sq"], ob.state[b_]["exp_avg_sq"])


def test_wgan_clips_critic_weights(tmp_path):
    cfg = tiny_config(tmp_path, "loss.name=wgan", "loss.weight_clip=0.005", "model.d_batchnorm=false")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    t.train_step()
    assert max(p.abs().max().item() for p in t.D.parameters()) <= 0.005 + 1e-9


def test_stopwatch_counts_only_running_time():
    now = [100.0]
    watch = Stopwatch(5.0, clock=lambda: now[0])
    now[0] = 103.0  # not started: nothing counted
    watch.start()
    now[0] = 104.5
    assert watch.total == pytest.approx(6.5)
    watch.pause()
    now[0] = 200.0  # paused (evaluating): nothing counted
    assert watch.total == pytest.approx(6.5)
    watch.start()
    watch.start()  # a second start does not reset the running interval
    now[0] = 201.0
    assert watch.total == pytest.approx(7.5)


def test_train_seconds_exclude_evaluation_and_survive_resume(tmp_path, monkeypatch):
    import time

    def slow_evaluation(self):
        time.sleep(1.5)  # far longer than two tiny training steps
        self.metrics.write({"step": self.step, "event": "eval", "train_seconds": self.clock.total})

    monkeypatch.setattr(Trainer, "evaluate", slow_evaluation)
    cfg = tiny_config(tmp_path, "train.steps=6", "train.log_every=1", "train.eval_every=2", "train.ckpt_every=100")
    ds = tiny_dataset()
    t = Trainer(cfg, tmp_path / "run", dataset=ds)
    t.train(stop_after=4)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    clock = [r["train_seconds"] for r in records if "d_loss" in r]
    assert len(clock) == 4 and all(b > a for a, b in zip(clock, clock[1:]))
    assert clock[-1] < 1.5, "evaluation time leaked into train_seconds"
    saved = json.loads(next((tmp_path / "run" / "checkpoints").glob("step_00000004/state.json")).read_text())
    assert saved["train_seconds"] == pytest.approx(t.clock.total, abs=0.05)
    resumed = Trainer.resume(tmp_path / "run", dataset=ds)
    assert resumed.clock.total == pytest.approx(saved["train_seconds"])
    resumed.train()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    clock = [r["train_seconds"] for r in records if "d_loss" in r]
    assert len(clock) == 6 and clock[4] > saved["train_seconds"]


def test_optimizer_moments_of_another_shape_are_refused(tmp_path):
    from ganforge import checkpoint as ckpt
    from ganforge.errors import CheckpointError

    t = Trainer(tiny_config(tmp_path), tmp_path / "run", dataset=tiny_dataset())
    t.train_step()
    c = ckpt.load_checkpoint(t.save())
    key = next(k for k in c.train_tensors if k.startswith("opt_g.") and k.endswith("exp_avg"))
    c.train_tensors[key] = torch.zeros(3, 1)
    with pytest.raises(CheckpointError, match="exp_avg has shape"):
        t.load_state(c)


def test_time_budget_stops_with_checkpoint_and_grid_and_resumes(tmp_path, one_second_steps):
    cfg = tiny_config(tmp_path, "train.steps=10", "train.max_seconds=3.5", "train.sample_every=100",
                      "train.ckpt_every=100")
    ds = tiny_dataset()
    t = Trainer(cfg, tmp_path / "run", dataset=ds)
    t.counters.clock = one_second_steps()
    summary = t.train()
    # Steps 1-4 start before the 3.5 s budget is spent; the check before step 5 stops the run.
    assert summary["step"] == 4 and summary["out_of_time"] and summary["stopped_early"]
    assert (tmp_path / "run" / "checkpoints" / "step_00000004").is_dir()
    assert summary["samples"].endswith("step_00000004.png")
    saved = json.loads((tmp_path / "run" / "checkpoints" / "step_00000004" / "state.json").read_text())
    assert saved["train_seconds"] == pytest.approx(4.0)
    # The budget counts the whole run: resuming under the same budget trains nothing more,
    # a larger one continues from where the run stopped.
    again = Trainer.resume(tmp_path / "run", dataset=ds)
    again.counters.clock = one_second_steps(saved["train_seconds"])
    assert again.train()["step"] == 4
    cfg_more = tiny_config(tmp_path, "train.steps=10", "train.max_seconds=6.5", "train.sample_every=100",
                           "train.ckpt_every=100")
    more = Trainer.resume(tmp_path / "run", cfg_more, dataset=ds)
    more.counters.clock = one_second_steps(saved["train_seconds"])
    assert more.train()["step"] == 7


_IMPORTS_DURING_TRAINING = """
import sys
from pathlib import Path
from conftest import PooledFeatures, tiny_config, tiny_dataset
from ganforge.train.trainer import Trainer

tmp = Path(sys.argv[1])
cfg = tiny_config(tmp, "train.eval_every=3", "train.eval_n=32", "train.eval_metrics=[fid,kid]")
trainer = Trainer(cfg, tmp / "run", dataset=tiny_dataset())
before = {m for m in sys.modules if m.startswith("ganforge")}
import ganforge.metrics.evaluator as evaluator
evaluator.InceptionFeatures = PooledFeatures  # the plumbing, not the 299-px network
trainer.train()
assert (tmp / "run" / "checkpoints" / "best").is_dir()  # evaluated, checkpointed, kept a best
print(sorted({m for m in sys.modules if m.startswith("ganforge")} - before))
"""


def test_training_imports_nothing_after_it_starts(tmp_path):
    """Checkpoints and periodic evaluation use only modules imported when the trainer was built.

    A package upgraded or edited under a running training cannot then mix old and
    new modules at the first evaluation, hours in. A fresh interpreter, because
    this one has imported everything already.
    """
    tests = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", _IMPORTS_DURING_TRAINING, str(tmp_path)], cwd=tests,
                         env={**os.environ, "OMP_NUM_THREADS": "1",
                              "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")]))},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
