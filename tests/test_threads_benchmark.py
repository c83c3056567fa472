"""benchmarks/threads.py runs end to end, tiny (one choice, idle, a few steps); the busy loop starts and stops."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_threads_benchmark_tiny(tmp_path):
    out = tmp_path / "threads.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "threads.py"), "--quick", "--steps", "4",
                           "--choices", "1", "--loads", "idle", "--batch", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    row = result["summary"]["idle"]["1"]
    assert row["images_per_s"] > 0 and row["vs_default"] is None  # no default run to compare with
    assert result["runs"][0]["threads"] == 1 and result["runs"][0]["reason"] == "train.threads=1"


def test_busy_loop_is_pinned_and_stops():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import threads as bench

    proc = bench.start_busy(0)
    try:
        assert proc.poll() is None
    finally:
        bench.stop_busy(proc)
    assert proc.returncode is not None


def test_bad_choice_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "threads.py"), "--choices", "3"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
