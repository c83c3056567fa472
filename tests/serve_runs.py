"""Two tiny runs for the web-app tests: a conditional DCGAN and an inpainting run (2 steps each, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.cli import main


def make_runs(tmp: Path) -> Path:
    """``tmp/cgan`` (3 classes, 1 channel) and ``tmp/inpaint`` (1 channel), trained for 2 steps; returns ``tmp``."""
    rng = np.random.default_rng(0)
    photos = tmp / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(photos / f"{i:03d}.png")
    npz = tmp / "tiny.npz"
    np.savez(npz, images=rng.integers(0, 256, (32, 28, 28), dtype=np.uint8), labels=rng.integers(0, 3, 32))
    common = ["model.g_width=4", "model.d_width=4", "train.batch_size=8", "train.steps=2", "train.log_every=1",
              "train.sample_every=2", "train.ckpt_every=2"]
    assert main(["train", "--run-dir", str(tmp / "cgan"), f"data.dataset={npz}", "data.channels=1",
                 "model.arch=dcgan", "model.num_classes=3", "model.z_dim=8"] + common) == 0
    assert main(["train", "--run-dir", str(tmp / "inpaint"), f"data.dataset={photos}", "data.channels=1",
                 "model.arch=inpaint", "loss.name=hinge", "model.res_blocks=1"] + common) == 0
    return tmp


def wait_until_serving(proc, url: str, log, ready_s: float, fetch=None) -> None:
    """Wait until ``url`` answers 200, failing the test (with the server's log) if ``proc`` exits or
    ``ready_s`` seconds pass. ``fetch(url, timeout=...)``: ``urllib.request.urlopen`` by default."""
    import time
    import urllib.request

    import pytest

    fetch = fetch or urllib.request.urlopen
    deadline = time.monotonic() + ready_s
    while True:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"ganforge serve exited with {proc.returncode}:\n{log.read()}")
        try:
            with fetch(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(f"ganforge serve not ready after {ready_s} s:\n{log.read()}")
        time.sleep(0.3)
