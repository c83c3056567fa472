"""`ganforge report` on hostile and damaged runs: outputs never written through links or over other
files, bad --out refused before any work, unreadable inputs skipped by name in bounded time and memory."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ganforge
from ganforge.cli import main

pytest.importorskip("matplotlib")
posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and permissions are POSIX")

ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(Path(ganforge.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
DRIVER = """
import resource, sys, time
import ganforge.cli
t0 = time.perf_counter()
rc = ganforge.cli.main(sys.argv[1:])
from ganforge.perf.memory import rss_kib
# VmHWM is this process's own peak; ru_maxrss of a child started by vfork also counts the
# parent's (pytest's) peak at exec time, so it grows with whatever tests ran before.
fallback = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
peak = rss_kib("VmHWM") * 1024 or fallback  # VmHWM: Linux only
print(f"rc={rc} seconds={time.perf_counter() - t0:.1f} peak={peak}")
"""


def _record(step, **extra):
    return {"step": step, "d_loss": 1.0, "g_loss": 2.0, "train_seconds": float(step), **extra}


def _run(tmp_path, lines=None, grids=2):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "config.yaml").write_text("train:\n  steps: 10\n")
    lines = lines if lines is not None else [json.dumps(_record(s)) for s in (2, 4)]
    (run / "metrics.jsonl").write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    for s in range(1, grids + 1):
        Image.fromarray(np.full((20, 20), 40 * s, np.uint8)).save(run / "samples" / f"step_{s:06d}.png")
    return run


def _report(capsys, *args):
    rc = main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, err.strip().splitlines()


def _in_subprocess(*args, timeout=180):
    proc = subprocess.run([sys.executable, "-c", DRIVER, "report", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    stats = dict(kv.split("=") for kv in proc.stdout.split()[-3:])
    return proc, stats


# ------------------------------------------------------------------ A: outputs


@posix_only
def test_links_in_the_report_folder_are_replaced_not_written_through(tmp_path, capsys):
    run = _run(tmp_path)
    outside = {name: tmp_path / f"victim-{name}" for name in ("overview.png", "samples.gif", "samples.png")}
    (run / "report").mkdir()
    for name, victim in outside.items():
        victim.write_text("keep me")
        (run / "report" / name).symlink_to(victim)
    (run / "report" / "index.html").write_text("<title>old: ganforge report</title>")
    rc, err = _report(capsys, run)
    assert rc == 0 and err == []
    for name, victim in outside.items():
        assert victim.read_text() == "keep me"
        assert not (run / "report" / name).is_symlink() and (run / "report" / name).stat().st_size > 100
    assert not [p for p in (run / "report").iterdir() if ".tmp-" in p.name]


@posix_only
@pytest.mark.parametrize("case", ["proc", "regular file", "dev null", "under a file", "foreign folder",
                                  "read-only run", "default is a link"])
def test_bad_outputs_are_refused_before_any_work(tmp_path, capsys, monkeypatch, case):
    run = _run(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    words = {"proc": "cannot", "regular file": "not a directory", "dev null": "not a directory",
             "under a file": "is a file", "foreign folder": "holds other files", "read-only run": "cannot write",
             "default is a link": "symbolic link"}[case]
    args = [run]
    if case == "proc":
        args += ["--out", "/proc/ganforge-report"]
    elif case == "regular file":
        args += ["--out", run / "config.yaml"]
    elif case == "dev null":
        args += ["--out", "/dev/null"]
    elif case == "under a file":
        args += ["--out", run / "config.yaml" / "report"]
    elif case == "foreign folder":
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "index.html").write_text("my home page")
        before.append(str(tmp_path / "site"))
        before = sorted(before + [str(tmp_path / "site" / "index.html")])
        args += ["--out", tmp_path / "site"]
    elif case == "read-only run":
        run.chmod(0o555)
        if os.geteuid() == 0:  # root writes into read-only folders: as on a read-only mount instead
            import ganforge.commands._paths as paths

            real = paths.tempfile.mkstemp

            def read_only(*args, dir=None, **kwargs):
                if dir is not None and Path(dir).resolve() == run.resolve():
                    raise OSError(30, "Read-only file system")
                return real(*args, dir=dir, **kwargs)

            monkeypatch.setattr(paths.tempfile, "mkstemp", read_only)
    else:
        (tmp_path / "elsewhere").mkdir()
        (run / "report").symlink_to(tmp_path / "elsewhere")
        before = sorted(before + [str(tmp_path / "elsewhere"), str(run / "report")])
    try:
        rc, err = _report(capsys, *args)
    finally:
        run.chmod(0o755)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --out") and words in err[0], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written
    if case == "foreign folder":
        assert (tmp_path / "site" / "index.html").read_text() == "my home page"


def test_an_earlier_report_folder_is_rewritten(tmp_path, capsys):
    run = _run(tmp_path)
    assert _report(capsys, run, "--out", tmp_path / "r")[0] == 0
    assert _report(capsys, run, "--out", tmp_path / "r")[0] == 0  # its own page: not a foreign folder
    assert _report(capsys, run)[0] == 0 and _report(capsys, run)[0] == 0


def test_a_failed_write_is_one_line_naming_the_file_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    run = _run(tmp_path)

    def full_disk(self, f, **kwargs):
        f.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    rc, err = _report(capsys, run)
    assert rc == 2 and len(err) == 1 and "overview.png" in err[0] and "No space left" in err[0]
    assert [p.name for p in (run / "report").iterdir()] == []
    monkeypatch.undo()
    (run / "report" / "overview.png").write_bytes(b"from a report that failed before its page")
    assert _report(capsys, run)[0] == 0  # the folder is still the run's report folder
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "overview.png").write_bytes(b"someone's picture")
    rc, err = _report(capsys, run, "--out", tmp_path / "pictures")
    assert rc == 2 and "holds other files" in err[0]
    assert (tmp_path / "pictures" / "overview.png").read_bytes() == b"someone's picture"


# ------------------------------------------------------------------ B: inputs


def _png_header(w, h):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@posix_only
def test_a_damaged_run_still_gets_a_report_naming_what_was_skipped(tmp_path):
    big = 10 ** 400
    lines = [json.dumps(_record(2)),
             '{"step": 4, "d_loss": 1.5, "train_seconds": Infinity}',
             '{"step": 6, "d_loss": 1.25, "train_seconds": NaN}',
             f'{{"step": {big}, "d_loss": 1.0}}',
             f'{{"step": 8, "d_loss": {big}, "g_loss": 1e999}}',
             json.dumps(_record(10, **{"$x^$": 1.0, "\\frac{": 2.0})),
             "[" * 200_000,
             b'{"step": 12, "d_loss": 1.0, "note": "\xff"}',
             json.dumps(_record(14))]
    run = _run(tmp_path, lines, grids=3)
    (run / "config.yaml").unlink()
    os.mkfifo(run / "config.yaml")
    (run / "execution.json").symlink_to("/dev/zero")
    (run / "checkpoints" / "best").mkdir(parents=True)
    (run / "checkpoints" / "best" / "best.json").symlink_to(tmp_path / "outside.json")
    (tmp_path / "outside.json").write_text('{"step": 1}')
    os.mkfifo(run / "samples" / "step_000005.png")
    (run / "samples" / "step_000006.png").write_bytes(_png_header(50_000, 50_000))
    proc, stats = _in_subprocess(run, timeout=120)
    assert proc.returncode == 0 and stats["rc"] == "0", proc.stderr[-2000:]
    warnings = proc.stderr.strip().splitlines()
    assert all(w.startswith("warning: skipped ") for w in warnings), warnings
    named = {Path(w.split()[2].rstrip(":")).name: w for w in warnings}
    assert set(named) == {"config.yaml", "execution.json", "best.json", "step_000005.png", "step_000006.png"}
    assert "not a regular file" in named["config.yaml"] and "outside the run" in named["best.json"]
    assert "/dev/zero, outside the run" in named["execution.json"]
    assert "not a regular file" in named["step_000005.png"] and "2500000000 pixels" in named["step_000006.png"]
    html = (run / "report" / "index.html").read_text()
    assert "2 unreadable line(s)" in html  # the 200,000 "[" and the invalid UTF-8; the 401-digit step has none
    assert (run / "report" / "other.png").is_file()  # the odd names were drawn as text
    assert float(stats["seconds"]) < 60


def test_thousands_of_metric_names_are_capped_in_time_and_memory(tmp_path):
    names = [f"metric_{i}" for i in range(2000)]
    lines = [json.dumps(_record(s, **{n: float(s + i) for i, n in enumerate(names)})) for s in (2, 4, 6)]
    lines.append(json.dumps({"step": 6, "event": "eval", **{f"fid_{i}": 1.0 for i in range(300)}}))
    run = _run(tmp_path, lines, grids=0)
    proc, stats = _in_subprocess(run, "--no-animation", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(stats["seconds"]) < 60 and int(stats["peak"]) < 1.5 * 2**30, stats
    html = (run / "report" / "index.html").read_text()
    assert "are not: metric_24" in html and "2252 metric name(s)" in html
