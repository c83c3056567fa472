"""Whether this CPU computes bfloat16 natively, read from the CPU's own feature flags.

oneDNN's ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is true on any AVX-512
CPU, including Skylake-SP and Cascade Lake, which have no bf16 instructions:
there bf16 is emulated and a DCGAN step under bf16 autocast was measured 1.9x
slower than in fp32. Native bf16 matmul needs the ``avx512_bf16`` extension
(Cooper Lake, Zen 4 and later) or AMX (``amx_bf16``, Sapphire Rapids and later),
which Linux lists in ``/proc/cpuinfo``. Elsewhere (macOS, Windows) the flags are
not read and the answer is no, so ``precision: auto`` stays in fp32.
"""

from __future__ import annotations

import sys
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # either one: bf16 dot products in hardware
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` text (x86 ``flags``, Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def read_cpuinfo() -> str | None:
    """``/proc/cpuinfo`` on Linux; None elsewhere or when it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)  # the first processors are enough
    except OSError:
        return None


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AVX-512 BF16 or AMX-BF16 (``cpuinfo`` text; default: this machine's)."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    if not text:
        return False  # unknown: fp32 is never the slow choice
    return any(flag in cpu_flags(text) for flag in BF16_FLAGS)
