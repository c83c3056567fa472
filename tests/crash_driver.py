"""Helper process for test_crash.py: kill -9 checkpoint writers at random moments, then verify.

Run as ``python crash_driver.py WORKDIR TRIALS SEED``; prints one JSON line of results.
Children are forked after torch is imported (single-threaded), so each trial costs
milliseconds instead of an interpreter start.
"""

import json
import os
import random
import signal
import sys
import time

import torch

torch.set_num_threads(1)

from conftest import tiny_config, tiny_dataset  # noqa: E402
from ganforge import checkpoint as ckpt  # noqa: E402
from ganforge.train.trainer import Trainer  # noqa: E402


def main() -> None:
    work, trials, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    cfg = tiny_config(work, "train.keep_last=2")
    trainer = Trainer(cfg, os.path.join(work, "run"), dataset=tiny_dataset())
    trainer.train_step()
    trainer.save()  # there is always a previous checkpoint
    results = {"trials": 0, "loaded": 0, "killed_mid_save": 0, "stale_cleaned": 0, "steps_seen": set()}
    root = os.path.join(work, "run", "checkpoints")
    for _ in range(trials):
        pid = os.fork()
        if pid == 0:  # child: save forever, advancing the step counter
            try:
                while True:
                    trainer.counters.step += 1
                    trainer.save()
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        results["trials"] += 1
        if any(name.startswith(".tmp-") for name in os.listdir(root)):
            results["killed_mid_save"] += 1
        latest = ckpt.find_latest(os.path.join(work, "run"))  # verifies the manifest hashes
        if latest is not None:
            results["loaded"] += 1
            results["steps_seen"].add(latest.step)
            trainer.counters.step = max(trainer.step, latest.step)  # next child continues past it
        results["stale_cleaned"] += ckpt.clean_stale(root)
    results["steps_seen"] = len(results["steps_seen"])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
