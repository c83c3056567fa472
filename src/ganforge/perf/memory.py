"""Peak memory of one stretch of work: the CUDA allocator's peak, or the process's resident high-water mark."""

from __future__ import annotations

import resource
from pathlib import Path

from ganforge.perf.machine import sync


class MemoryMeter:
    """``start()`` before the work, ``peak_mib()`` after it.

    On CPU the figure is the resident-set high-water mark (``VmHWM``), reset at
    ``start()`` where Linux allows it; elsewhere it covers the whole process, so
    ``delta`` is an approximation there.
    """

    def __init__(self, device):
        self.device = device
        self.base = 0

    def start(self) -> None:
        import torch

        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:  # resets VmHWM (Linux); without it the high-water mark covers the whole process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.base = rss_kib("VmRSS") * 1024

    def peak_mib(self) -> dict[str, float]:
        """``peak`` of the process/allocator and ``delta`` above the level at :meth:`start`, in MiB."""
        import torch

        if self.device.type == "cuda":
            sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = max(rss_kib("VmHWM"), 0) * 1024 or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak": peak / 2**20, "delta": (peak - self.base) / 2**20}


def rss_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; 0 where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
