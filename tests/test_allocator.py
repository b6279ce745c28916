"""CPU training keeps freed memory mapped, so a step does not fault its activations in again."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")

# Like a training step's activations: allocate and touch 24 blocks of 6 MiB (36,864 pages), free them,
# and do it again; print the page faults of the second round.
PROBE = """
import resource, sys, torch
from homework import allocator
if sys.argv[1] == "tuned":
    allocator.keep_freed_memory()
def round_():
    blocks = [torch.empty(6 * 2**20 // 4).fill_(1.0) for _ in range(24)]
    del blocks
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, allocator._applied)
"""


def second_round_faults(tuned: bool) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", PROBE, "tuned" if tuned else "default"], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), out[1]


def test_freed_activation_memory_is_reused_without_page_faults():
    """A ratio within one run, each side the fewest faults of three probes: load only ever adds faults
    (a fixed bound of 4,000 tuned faults failed 2 runs in 33 on a loaded machine: 4,608)."""
    default = [second_round_faults(tuned=False) for _ in range(3)]
    tuned = [second_round_faults(tuned=True) for _ in range(3)]
    assert {applied for _, applied in default} == {"None"}
    assert {applied for _, applied in tuned} == {"True"}  # glibc accepted every setting
    default_faults, tuned_faults = min(f for f, _ in default), min(f for f, _ in tuned)
    # measured: default ~36,900 (every page faulted in again), tuned 1 to ~1,536, 4,608 at worst under load
    assert default_faults > 20_000, default_faults
    assert tuned_faults < default_faults / 4, (tuned_faults, default_faults)


def test_settings_are_applied_once_per_process(monkeypatch):
    from homework import allocator

    calls = []
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_apply", lambda: calls.append(1) or True)
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert calls == [1]
