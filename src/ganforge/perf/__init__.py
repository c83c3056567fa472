"""The throughput benchmark: training, sampling and Inception extraction, every execution mode side by side.

For each model preset and each execution mode the harness times full training
iterations (all D steps and the G step, optimizer included) after warm-up, on
synthetic in-memory data of the preset's shape, and reports images/s,
ms/iteration, FLOPs per iteration (``torch.utils.flop_counter``), the achieved
GFLOP/s, its ratio to the matrix-multiply peak this machine measured for the
mode's dtype, and peak memory. Modes run interleaved, round after round, so a
noisy machine slows all of them alike; each mode is also given as a ratio to
the reference path (plain eager float32). Prints a table and progress lines;
``--json`` writes every number with what ran, where, and how.

Entry points: ``ganforge bench`` and ``benchmarks/train_throughput.py`` (:func:`main`).

Modules: :mod:`~ganforge.perf.bench_presets` (presets, synthetic data),
:mod:`~ganforge.perf.exec_modes` (execution modes, defaults per machine,
:func:`describe` of what ran), :mod:`~ganforge.perf.machine` (native
dtypes, matmul peaks), :mod:`~ganforge.perf.memory`,
:mod:`~ganforge.perf.training` (build, FLOPs, timed rounds, rows),
:mod:`~ganforge.perf.throughput` (sampling, Inception),
:mod:`~ganforge.perf.summary` (table, JSON), :mod:`~ganforge.perf.harness`
(options, the run).
"""

from ganforge.perf.harness import DESCRIPTION, add_arguments, bench, main, run
from ganforge.perf.machine import measure_peaks, native_dtypes
from ganforge.perf.exec_modes import DEFAULT_MODES, DEFAULT_MODES_NO_BF16, MODES, REFERENCE, default_modes, describe
from ganforge.perf.bench_presets import DEFAULT_PRESETS, PRESETS

__all__ = [
    "DEFAULT_MODES",
    "DEFAULT_MODES_NO_BF16",
    "DEFAULT_PRESETS",
    "DESCRIPTION",
    "MODES",
    "PRESETS",
    "REFERENCE",
    "add_arguments",
    "bench",
    "default_modes",
    "describe",
    "main",
    "measure_peaks",
    "native_dtypes",
    "run",
]
