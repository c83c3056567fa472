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


# Runs `ganforge ARGS` in this interpreter with the meter started after the imports, and prints the
# exit code, the peak resident size above that point (bytes) and the command's seconds on its last line.
_CLI_DRIVER = """
import sys, time
import torch
import ganforge.cli, ganforge.commands.inpaint, ganforge.inpaint.pipeline
from ganforge.perf.memory import MemoryMeter

meter = MemoryMeter(torch.device("cpu"))
meter.start()
t0 = time.perf_counter()
rc = ganforge.cli.main(sys.argv[1:])
seconds = time.perf_counter() - t0
print(f"rc={rc} extra_bytes={int(meter.peak_mib()['delta'] * 2**20)} seconds={seconds:.3f}")
"""


def cli_peak_memory(args: list[str], env: dict | None = None, timeout: float = 600):
    """``ganforge ARGS`` in a fresh process: ``(completed process, exit code, peak bytes above the imports,
    seconds of the command after the imports)``.

    Exact on Linux (the high-water mark is reset once the imports are done, so their
    transient peak cannot hide the command's buffers); the exit code, bytes and
    seconds are None when the command did not get as far as reporting them.
    """
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _CLI_DRIVER, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    fields = dict(kv.split("=", 1) for kv in (proc.stdout.strip().splitlines() or [""])[-1].split() if "=" in kv)
    rc = int(fields["rc"]) if "rc" in fields else None
    extra = int(fields["extra_bytes"]) if "extra_bytes" in fields else None
    seconds = float(fields["seconds"]) if "seconds" in fields else None
    return proc, rc, extra, seconds
