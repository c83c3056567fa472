"""glibc's malloc told to keep freed memory, so that a CPU training step reuses its buffers.

glibc serves a block above its mmap threshold (128 KiB at start, raised as such
blocks are freed, up to 32 MiB on 64-bit systems) with a fresh mapping, and gives
free memory at the top of its heap back to the system once it exceeds the trim
threshold (twice the mmap threshold). A training step on the CPU allocates and
frees tens of megabytes of activations and gradients, so with the defaults many of
its pages go back to the system and are faulted in again, zero-filled by the kernel,
on the next step. Fixing the mmap threshold at its ceiling and the trim threshold
at 1 GiB keeps them in the process: 200 steps of ``resnet-fashion-mnist`` on one
thread took 7% less wall time and an eighth of the system time, at the same peak
memory (BENCHMARKS.md, "The allocator"). The cost: up to 1 GiB of freed memory may
stay with the process instead of returning to the system.

Applied to CPU training runs by the execution plan (:mod:`ganforge.train.plan`) and
recorded in ``RUN/execution.json``. A user's own ``MALLOC_*`` settings, another
allocator preloaded (jemalloc, tcmalloc, mimalloc), or ``GANFORGE_KEEP_FREED_MEMORY=0``
in the environment leave glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

from ganforge.errors import ConfigError

MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

OPT_OUT = "GANFORGE_KEEP_FREED_MEMORY"
_OFF, _ON = ("0", "false", "no", "off"), ("", "1", "true", "yes", "on")


def glibc_version() -> str | None:
    """The C library's version string where it is glibc (``"glibc 2.36"``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    return version if version and version.startswith("glibc") else None


def decide() -> tuple[bool, str]:
    """Whether to keep freed memory in this process, and why (the reason goes to ``execution.json``).

    Raises:
        ConfigError: naming ``GANFORGE_KEEP_FREED_MEMORY`` when it is neither on nor off.
    """
    switch = os.environ.get(OPT_OUT, "").strip().lower()
    if switch in _OFF:
        return False, f"{OPT_OUT}={os.environ[OPT_OUT]}: the system allocator's defaults"
    if switch not in _ON:
        raise ConfigError(OPT_OUT, f"must be 0 or 1 (off or on), got {os.environ[OPT_OUT]!r}")
    version = glibc_version()
    if version is None:
        return False, "not glibc: the system allocator's defaults"
    for name in _USER_SETTINGS:
        if os.environ.get(name):
            return False, f"{name} is set: the user's allocator settings"
    preload = os.environ.get("LD_PRELOAD", "")
    for name in _OTHER_ALLOCATORS:
        if name in preload:
            return False, f"{name} is preloaded (LD_PRELOAD)"
    return True, (f"{version}: freed memory kept for reuse (mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
                  f"trim threshold {TRIM_THRESHOLD >> 30} GiB), not faulted in again every step")


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where glibc refuses or is absent."""
    if glibc_version() is None:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
