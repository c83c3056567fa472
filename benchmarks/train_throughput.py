"""Training, sampling and Inception-extraction throughput of every preset and execution mode.

Times full training iterations (all D steps and the G step, optimizer included)
after warm-up on synthetic in-memory data of each preset's shape; reports
images/s, ms/iteration, FLOPs per iteration, achieved GFLOP/s and its ratio to
the matmul peak this machine measures for the mode's dtype, and peak memory.
Modes are interleaved round by round and compared with the reference path
(plain eager float32) as ratios, because shared machines are noisy.

Usage::

    python benchmarks/train_throughput.py --json bench_cpu.json
    python benchmarks/train_throughput.py --presets dcgan-28 --modes reference,bf16,fast
    python benchmarks/train_throughput.py --device cuda --json bench_gpu.json

Same as ``ganforge bench`` (the harness is :mod:`ganforge.perf`); ``--help`` lists
presets, modes and options.
"""

from __future__ import annotations

import sys

from ganforge.perf import main

if __name__ == "__main__":
    sys.exit(main())
