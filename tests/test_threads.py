"""CPU threads: the auto rule, --threads on every computing command, the plan's record, the slow-down warning, the ETA."""

import io
import json

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge import threads
from ganforge.cli import build_parser
from ganforge.train.runlog import Progress, ThroughputWatch
from ganforge.train.trainer import Trainer


@pytest.fixture(autouse=True)
def _keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("busy, cores, affinity, want", [
    (0.0, 2, 2, 2), (0.3, 2, 2, 2), (1.0, 2, 2, 1), (0.8, 2, 2, 1), (5.0, 2, 2, 1),
    (0.0, 8, 2, 2),  # never more than the affinity mask
    (0.0, 4, 8, 4),  # hyper-threads do not count as cores
    (2.0, 8, 8, 6),
])
def test_auto_rule_counts_the_free_cores(busy, cores, affinity, want):
    choice = threads.auto_threads(busy=busy, cores=cores, affinity=affinity)
    assert choice.threads == want
    assert "kept busy by other processes" in choice.reason


def _stat(busy, idle):
    return f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\nintr 1 2 3\n"  # no per-CPU lines: the all-CPU line counts


def _self(user, system):
    return "123 (python3 (x)) R " + " ".join(["0"] * 10) + f" {user} {system} 0 0\n"


def test_busy_cores_subtract_this_process():
    # Two CPUs, a 100-jiffy window (200 jiffies in all): 150 busy of which 50 are ours -> 1 core busy elsewhere.
    reads = iter([_stat(1000, 1000), _self(10, 0), _stat(1150, 1050), _self(60, 0)])
    busy = threads.busy_cores_of_others(read=lambda path: next(reads), sleep=lambda s: None)
    assert busy == pytest.approx(1.0 * (torch.multiprocessing.cpu_count() / 2))


def _stat_per_cpu(*cpus):
    """``/proc/stat`` with an all-CPU line and one line per ``(busy, idle)``."""
    lines = [f"cpu  {sum(b for b, _ in cpus)} 0 0 {sum(i for _, i in cpus)} 0 0 0 0 0 0"]
    lines += [f"cpu{k} {b} 0 0 {i} 0 0 0 0 0 0" for k, (b, i) in enumerate(cpus)]
    return "\n".join(lines) + "\nintr 1 2 3\n"


def test_busy_cores_count_only_the_affinity_mask():
    # CPU 1 is fully busy with another process over the 100-jiffy window; CPU 0 is idle.
    before = _stat_per_cpu((500, 500), (500, 500))
    after = _stat_per_cpu((500, 600), (600, 500))
    def busy(cpus):
        reads = iter([before, _self(10, 0), after, _self(10, 0)])
        return threads.busy_cores_of_others(read=lambda path: next(reads), sleep=lambda s: None, cpus=cpus)
    assert busy({0}) == pytest.approx(0.0)  # pinned to the idle CPU: nothing taken from us
    assert busy({1}) == pytest.approx(1.0)
    assert busy({0, 1}) == pytest.approx(1.0)


def test_unreadable_proc_is_none():
    def fail(path):
        raise OSError("no /proc")
    assert threads.busy_cores_of_others(read=fail, sleep=lambda s: None) is None


def test_explicit_counts_and_environment(monkeypatch):
    assert threads.choose_threads(1, environ={}).threads == 1
    capped = threads.choose_threads(10_000, environ={})
    assert capped.threads == threads.affinity_cpus() and "capped" in capped.reason
    env = threads.choose_threads(0, "train.threads", environ={"OMP_NUM_THREADS": "1"})
    assert env.threads == 1 and env.reason == "OMP_NUM_THREADS=1"
    monkeypatch.setattr(threads, "busy_cores_of_others", lambda: 0.0)
    auto = threads.choose_threads(0, environ={})
    assert auto.threads >= 1 and auto.reason.startswith("auto:")


@pytest.mark.parametrize("command", ["train", "sample", "eval", "eval-inpaint", "inpaint", "bench"])
def test_every_computing_command_takes_threads(command):
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    option = sub.choices[command]._option_string_actions["--threads"]
    assert option.type("1") == 1
    with pytest.raises(argparse.ArgumentTypeError):
        option.type("-1")


def test_option_applies_the_count():
    from ganforge.commands._options import use_threads_option

    torch.set_num_threads(2)
    parser = build_parser()
    args, _ = parser.parse_known_args(["sample", "RUN", "--threads", "1"])
    assert use_threads_option(args).threads == 1 and torch.get_num_threads() == 1


def test_plan_applies_and_records_threads(tmp_path):
    torch.set_num_threads(2)
    cfg = tiny_config(tmp_path, "train.steps=1", "train.threads=1")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    assert torch.get_num_threads() == 1 and t.plan.threads == 1
    t.train()
    saved = json.loads((tmp_path / "run" / "execution.json").read_text())
    assert saved["threads"] == {"value": 1, "reason": "train.threads=1"}
    assert "threads" in t.plan.describe() and "threads=1" in t.plan.summary()


def test_train_threads_option_becomes_the_config_key(capsys):
    from ganforge.cli import main

    assert main(["train", "--config", "configs/dcgan-fashion-mnist.yaml", "--threads", "1", "--dry-run"]) == 0
    assert "threads: 1" in capsys.readouterr().out


def test_throughput_warning_once():
    watch = ThroughputWatch(threads=2)
    assert watch.check(2000.0) is None  # the first window sets the reference
    assert watch.check(1000.0) is None  # half: not far below
    text = watch.check(100.0)
    assert "--threads 1" in text and "100 images/s" in text and "2000" in text
    assert watch.check(50.0) is None  # once
    one = ThroughputWatch(threads=1)
    one.check(100.0)
    assert "--threads 1" not in one.check(1.0)


def test_eta_respects_the_time_budget():
    clock = {"s": 140.0}
    p = Progress(total=10_000, start=0, every=1, stream=io.StringIO(), budget=150.0, seconds=lambda: clock["s"])
    p.t0 -= 10.0  # 10 s for 5 steps: 19,990 s by step count
    assert p.eta(5) == pytest.approx(10.0, abs=0.5)
    p.update(5, {})
    assert "eta 10s" in p.stream.getvalue()
    unbounded = Progress(total=10_000, start=0, every=1, stream=io.StringIO())
    unbounded.t0 -= 10.0
    assert unbounded.eta(5) > 10_000
