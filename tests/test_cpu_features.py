"""bf16 on CPU is decided from the CPU's flags: AVX-512 alone (Skylake, Cascade Lake) only emulates it."""

import pytest
import torch

from conftest import tiny_config
from ganforge import cpu_features
from ganforge.models import build_models
from ganforge.perf.machine import native_dtypes
from ganforge.regularizers import d_regularization
from ganforge.train.plan import resolve_plan
from ganforge.tasks import task_class

_COMMON = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht"
CPUINFO = {  # the flags line of each CPU's /proc/cpuinfo (abridged), two processors listed
    "zen3": f"{_COMMON} avx f16c rdrand avx2 bmi2 sha_ni vaes vpclmulqdq",
    "skylake-avx512": f"{_COMMON} avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni",
    "zen4": f"{_COMMON} avx avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni",
    "sapphire-rapids": f"{_COMMON} avx avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8",
}
NATIVE = {"zen3": False, "skylake-avx512": False, "zen4": True, "sapphire-rapids": True}


def _text(flags: str) -> str:
    return "".join(f"processor\t: {i}\nvendor_id\t: x\nmodel name\t: cpu\nflags\t\t: {flags}\n\n" for i in range(2))


@pytest.mark.parametrize("cpu", list(CPUINFO))
def test_native_bf16_comes_from_the_flags(cpu):
    assert cpu_features.cpu_has_native_bf16(_text(CPUINFO[cpu])) is NATIVE[cpu]


@pytest.mark.parametrize("cpu", list(CPUINFO))
def test_the_training_plan_and_the_benchmark_agree(tmp_path, monkeypatch, cpu):
    monkeypatch.setattr(cpu_features, "read_cpuinfo", lambda: _text(CPUINFO[cpu]))
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    cfg = tiny_config(tmp_path)  # train.precision: auto
    _, D = build_models(cfg)
    plan = resolve_plan(cfg, torch.device("cpu"), task_class(cfg).capabilities_for(cfg, D), d_regularization(cfg), False)
    assert plan.precision == ("bf16" if NATIVE[cpu] else "fp32")
    assert ("bf16" in native_dtypes(torch.device("cpu"))) is NATIVE[cpu]


def test_other_systems_and_unreadable_cpuinfo_mean_fp32(monkeypatch):
    monkeypatch.setattr(cpu_features.sys, "platform", "darwin")
    assert cpu_features.read_cpuinfo() is None and not cpu_features.cpu_has_native_bf16()
    monkeypatch.setattr(cpu_features.sys, "platform", "linux")
    monkeypatch.setattr(cpu_features, "CPUINFO", cpu_features.Path("/nonexistent/cpuinfo"))
    assert not cpu_features.cpu_has_native_bf16()
    assert not cpu_features.cpu_has_native_bf16("")
