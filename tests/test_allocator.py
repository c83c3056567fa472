"""glibc keeps freed memory for CPU training runs, unless the user chose their own allocator settings."""

import subprocess
import sys

import pytest
import torch

from ganforge import allocator
from ganforge.errors import ConfigError
from test_plan import _plan

glibc = pytest.mark.skipif(allocator.glibc_version() is None, reason="glibc only")

# Twenty cycles of twenty 4 MiB tensors allocated and freed: with glibc's defaults the heap's
# top goes back to the system after each cycle and is faulted in again on the next one.
_FAULTS = """
import resource, sys, torch
from ganforge import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
def cycle():
    xs = [torch.ones(1 << 20) for _ in range(20)]
    del xs
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@glibc
def test_kept_memory_is_not_faulted_in_again():
    # The fewest of three processes each: other work on the machine only adds faults.
    default = min(_page_faults("default") for _ in range(3))
    kept = min(_page_faults("keep") for _ in range(3))
    assert kept * 2 < default, (kept, default)


@glibc
@pytest.mark.parametrize("name", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"])
def test_the_users_own_settings_are_left_alone(monkeypatch, name):
    for other in allocator._USER_SETTINGS:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "1048576")
    keep, why = allocator.decide()
    assert not keep and name in why


@glibc
def test_a_preloaded_allocator_is_left_alone(monkeypatch):
    for other in allocator._USER_SETTINGS:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    keep, why = allocator.decide()
    assert not keep and "jemalloc" in why


def test_other_systems_keep_their_defaults(monkeypatch):
    monkeypatch.delenv(allocator.OPT_OUT, raising=False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.glibc_version() is None
    assert allocator.decide() == (False, "not glibc: the system allocator's defaults")
    assert allocator.keep_freed_memory() is False


@glibc
def test_cpu_runs_keep_freed_memory_and_cuda_runs_do_not(tmp_path, monkeypatch):
    for other in (*allocator._USER_SETTINGS, "LD_PRELOAD", allocator.OPT_OUT):
        monkeypatch.delenv(other, raising=False)
    cpu = _plan(tmp_path)
    assert cpu.keep_freed_memory and "glibc" in cpu.allocator_reason
    assert cpu.as_dict()["keep_freed_memory"] == {"value": True, "reason": cpu.allocator_reason}
    cuda = _plan(tmp_path, device=torch.device("cuda"))
    assert not cuda.keep_freed_memory and "not a CPU run" in cuda.allocator_reason


@pytest.mark.parametrize("value", ["0", "off"])
def test_an_environment_switch_keeps_the_defaults(monkeypatch, value):
    monkeypatch.setenv(allocator.OPT_OUT, value)
    keep, why = allocator.decide()
    assert not keep and allocator.OPT_OUT in why


def test_an_unknown_switch_value_is_refused(monkeypatch):
    monkeypatch.setenv(allocator.OPT_OUT, "maybe")
    with pytest.raises(ConfigError, match="GANFORGE_KEEP_FREED_MEMORY.*'maybe'"):
        allocator.decide()


def test_a_refused_setting_is_recorded_as_off(tmp_path, monkeypatch):
    # What execution.json says must be what ran: if mallopt refuses, the plan says off and why.
    for other in (*allocator._USER_SETTINGS, "LD_PRELOAD", allocator.OPT_OUT):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setattr(allocator, "glibc_version", lambda: "glibc 2.36")
    plan = _plan(tmp_path)
    assert plan.keep_freed_memory
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: False)
    threads = torch.get_num_threads()  # the plan also sets PyTorch's threads
    try:
        applied = plan.apply_backend_flags()
        assert not applied.keep_freed_memory and "refused" in applied.allocator_reason
        assert applied.as_dict()["keep_freed_memory"]["value"] is False
        monkeypatch.setattr(allocator, "keep_freed_memory", lambda: True)
        assert plan.apply_backend_flags() is plan
    finally:
        torch.set_num_threads(threads)
