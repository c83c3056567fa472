"""How many CPU threads PyTorch's operators use: ``--threads`` / ``train.threads``, with an auto rule.

PyTorch starts one OpenMP thread per logical CPU. When another process keeps a
core busy, every parallel operator waits at its barrier for the thread that
shares a core with that process, and OpenMP's spinning waits make it worse:
measured on a 2-core machine with a competing process, the default two threads
trained the demo preset at 60-130 images/s against about 2,200 with one thread
(20-35x). The auto rule (``0``) therefore counts the cores *free now*:

    threads = max(1, min(physical cores, cores in the affinity mask) - cores kept busy by other processes)

where the busy cores are measured from ``/proc/stat`` over a short window
(:data:`WINDOW_S`) on the CPUs of the affinity mask (a process pinned to other
CPUs takes nothing from this one) minus this process's own CPU time, rounded to the nearest core
(so a background process at 30% of a core does not cost a thread). Where
``/proc`` cannot be read, the 1-minute load average stands in.

``OMP_WAIT_POLICY=PASSIVE`` (sleeping instead of spinning at barriers) can only
be set before OpenMP starts, i.e. before ``import torch``: in the environment of
the ``ganforge`` command, or for subprocesses (``benchmarks/threads.py`` compares
it). :func:`apply_threads` cannot change it in a running process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

WINDOW_S = 0.2  # the /proc/stat window: long enough for 10-ms jiffies on a few cores, short at start-up


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen and why (written to ``RUN/execution.json``)."""

    threads: int
    reason: str


def _affinity_set() -> set[int] | None:
    """The CPU ids of this process's affinity mask; None where it cannot be read (not Linux)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask; a container's cpuset shows here)."""
    cpus = _affinity_set()
    return max(1, len(cpus)) if cpus is not None else max(1, os.cpu_count() or 1)


def physical_cores(sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among the CPUs of the affinity mask (hyper-threads of one core count once)."""
    cpus = _affinity_set()
    if cpus is None:
        return affinity_cpus()
    cores = set()
    for cpu in sorted(cpus):
        try:
            cores.add((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(str(cpu))  # no topology: each CPU its own core
    return max(1, len(cores))


def _cpu_jiffies(stat: str, cpus: set[int] | None = None) -> tuple[int, int, int]:
    """``(busy, total, CPUs counted)`` jiffies from ``/proc/stat``.

    With ``cpus`` (the affinity mask) only those CPUs' ``cpuN`` lines count: a process
    busy on a CPU this one may not use takes no core from it. Without them, or where
    the per-CPU lines are missing, the first (all-CPU) line counts, for every CPU.
    """
    lines = stat.splitlines()
    rows = []
    if cpus is not None:
        rows = [ln for ln in lines[1:] if ln.startswith("cpu") and ln[3:4].isdigit()
                and int(ln.split()[0][3:]) in cpus]
    count = len(rows)
    if not rows:
        rows, count = lines[:1], os.cpu_count() or 1
    busy = total = 0
    for row in rows:
        fields = [int(v) for v in row.split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        t = sum(fields[:8])  # guest time is already counted in user time
        busy, total = busy + t - idle, total + t
    return busy, total, count


def _own_jiffies(stat: str) -> int:
    """This process's user + system jiffies from ``/proc/self/stat`` (all its threads)."""
    after = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    return int(after[11]) + int(after[12])


def busy_cores_of_others(window: float = WINDOW_S, read=None, sleep=time.sleep, cpus=None) -> float | None:
    """Cores of the affinity mask kept busy by other processes over ``window`` seconds.

    None where ``/proc`` is unreadable. ``read(path) -> str`` is the file reader and
    ``cpus`` the CPU ids to count (default: this process's affinity mask); tests pass
    canned ``/proc`` contents and masks.
    """
    read = read or (lambda p: Path(p).read_text())
    cpus = _affinity_set() if cpus is None else set(cpus)
    try:
        b0, t0, n = _cpu_jiffies(read("/proc/stat"), cpus)
        o0 = _own_jiffies(read("/proc/self/stat"))
        sleep(window)
        b1, t1, _ = _cpu_jiffies(read("/proc/stat"), cpus)
        o1 = _own_jiffies(read("/proc/self/stat"))
    except (OSError, ValueError, IndexError):
        return None
    if t1 <= t0:
        return None
    # total jiffies count every CPU counted: (t1 - t0) / n is the window in jiffies of one CPU.
    return max(0.0, ((b1 - b0) - (o1 - o0)) * n / (t1 - t0))


def auto_threads(busy: float | None = None, cores: int | None = None, affinity: int | None = None
                 ) -> ThreadChoice:
    """The auto rule of the module docstring (arguments: measured values, for tests)."""
    affinity = affinity_cpus() if affinity is None else affinity
    cores = physical_cores() if cores is None else cores
    usable = min(cores, affinity)
    source = "measured over %.1f s" % WINDOW_S
    if busy is None:
        busy = busy_cores_of_others()
    if busy is None:
        try:
            busy, source = os.getloadavg()[0], "1-minute load average"
        except (AttributeError, OSError):
            busy, source = 0.0, "unknown"
    taken = int(busy + 0.5)
    n = max(1, usable - taken)
    return ThreadChoice(n, f"auto: {usable} usable core(s) ({cores} physical, {affinity} in the affinity mask), "
                           f"{busy:.1f} kept busy by other processes ({source})")


def choose_threads(requested: int, where: str = "--threads", environ=os.environ) -> ThreadChoice:
    """``requested`` threads when > 0 (never more than the affinity mask allows), else the auto rule.

    Auto respects an explicit ``OMP_NUM_THREADS`` in the environment: whoever set it
    knows the machine's load better than a 0.2-s measurement.
    """
    env = environ.get("OMP_NUM_THREADS", "").strip()
    if requested <= 0 and env.isdigit() and int(env) > 0:
        requested, where = int(env), "OMP_NUM_THREADS"
    if requested > 0:
        affinity = affinity_cpus()
        if requested > affinity:
            return ThreadChoice(affinity, f"{where}={requested}, capped at the {affinity} CPU(s) of the affinity mask")
        return ThreadChoice(requested, f"{where}={requested}")
    return auto_threads()


def apply_threads(choice: ThreadChoice) -> ThreadChoice:
    """Set PyTorch's intra-op thread count to ``choice.threads``; returns ``choice``."""
    import torch

    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice


def use_threads(requested: int | None, where: str = "--threads") -> ThreadChoice | None:
    """Choose and apply; ``None`` (option not given) leaves PyTorch's default alone and returns None."""
    if requested is None:
        return None
    return apply_threads(choose_threads(requested, where))
