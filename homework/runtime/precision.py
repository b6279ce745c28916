"""Which precision a CPU trains and generates in: bf16 mixed precision where the processor computes bf16
natively and a short probe measures it faster, fp32 everywhere else.

A CPU without AMX or AVX512-BF16 emulates bf16 arithmetic (a matmul measured ~400x slower than fp32 on an
AVX2 machine), so capability is read from the processor's flags first; where it is present, a probe times
one matmul of the recipe's shape in both precisions, and the answer is cached per machine (CPU model, flags,
torch version, threads) so later runs decide instantly.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PRECISION_ENV = "HOMEWORK_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
PROBE_FILE = "cpu-precision.json"
# bf16 must beat fp32 by this much to be chosen: the step is not matmul alone, and a tie is not worth the
# rounding.
MIN_SPEEDUP = 1.2
# one projection of the recipe: (batch x tokens) rows through a 576 -> 1536 layer
PROBE_SHAPE = (512, 576, 1536)


@dataclass(frozen=True)
class CpuIdentity:
    model: str
    native_bf16: tuple[str, ...]  # the flags of NATIVE_BF16_FLAGS this processor reports
    torch: str
    threads: int

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_identity(cpuinfo: str | None = None) -> CpuIdentity:
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return CpuIdentity(model=fields.get("model name") or platform.processor() or platform.machine(),
                       native_bf16=tuple(f for f in NATIVE_BF16_FLAGS if f in flags),
                       torch=torch.__version__, threads=torch.get_num_threads())


@dataclass(frozen=True)
class Probe:
    fp32_s: float  # one probe matmul, best of several
    bf16_s: float

    @property
    def speedup(self) -> float:
        """fp32 time over bf16 time: above 1, bf16 is faster."""
        return self.fp32_s / self.bf16_s if self.bf16_s > 0 else 0.0


def _timed(a: torch.Tensor, b: torch.Tensor) -> float:
    start = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - start


def measure(shape: tuple[int, int, int] = PROBE_SHAPE, rounds: int = 6) -> Probe:
    """Time one matmul in fp32 and in bf16: a warm-up call of each, then rounds that alternate the two (so both
    see the same load from whatever else runs), keeping each one's best time."""
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    fp32, bf16 = _timed(a, b), _timed(a16, b16)  # warm-up: the first calls allocate and pick kernels
    fp32 = _timed(a, b)
    if bf16 > 20 * fp32:  # emulated bf16 (~100x slower): one call says so, without spending seconds on more
        return Probe(fp32, bf16)
    bf16 = _timed(a16, b16)
    for _ in range(rounds - 1):
        fp32, bf16 = min(fp32, _timed(a, b)), min(bf16, _timed(a16, b16))
    return Probe(fp32, bf16)


def cached_probe(cache_dir: Path | None, identity: CpuIdentity, run=None) -> Probe:
    """The probe for this machine: read from `cache_dir`/cpu-precision.json when it was measured on the same
    CPU, torch and thread count; else measured now and recorded (a failed write only loses the cache)."""
    path = cache_dir / PROBE_FILE if cache_dir is not None else None
    known = {}
    if path is not None:
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
    entry = known.get(identity.key) if isinstance(known, dict) else None
    if isinstance(entry, dict) and {"fp32_s", "bf16_s"} <= entry.keys():
        return Probe(float(entry["fp32_s"]), float(entry["bf16_s"]))
    probe = (run or measure)()
    if path is not None:
        from .atomic import atomic_write_json

        known = known if isinstance(known, dict) else {}
        known[identity.key] = {**asdict(probe), "cpu": asdict(identity)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, known)
        except OSError:
            pass
    return probe


@dataclass(frozen=True)
class CpuChoice:
    dtype: torch.dtype
    reason: str


def requested_precision(precision: str | None) -> str:
    """The precision asked for: the argument, else $HOMEWORK_PRECISION, else auto; anything else is refused."""
    from .errors import HomeworkError

    name = (precision or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if name == "fp16":
        raise HomeworkError("precision 'fp16' refused: SmolLM2's bf16-trained weights overflow fp16's range and the "
                            "loss turns NaN (failure catalog row 9); accepted: auto, fp32, bf16")
    if name not in PRECISIONS:
        raise HomeworkError(f"unknown precision {name!r} (--precision or ${PRECISION_ENV}): accepted: "
                            + ", ".join(PRECISIONS))
    return name


def choose_cpu_precision(precision: str, identity: CpuIdentity, probe) -> CpuChoice:
    """fp32 or bf16 for a CPU. `probe()` returns this machine's Probe (called only when it decides)."""
    from .errors import HomeworkError

    if precision == "fp32":
        return CpuChoice(torch.float32, "fp32 as asked")
    where = identity.model
    if not identity.native_bf16:
        if precision == "bf16":
            measured = probe()
            raise HomeworkError(
                f"bf16 on this CPU refused: {where} has neither {' nor '.join(NATIVE_BF16_FLAGS)}, so bf16 is "
                f"emulated; a matmul measured {1 / max(measured.speedup, 1e-9):.0f}x slower than fp32 here "
                "(failure catalog row 9). Use --precision fp32 (or auto).")
        return CpuChoice(torch.float32, f"fp32: {where} has no native bf16 ({'/'.join(NATIVE_BF16_FLAGS)})")
    measured = probe()
    flags = "+".join(identity.native_bf16)
    if precision == "bf16":
        return CpuChoice(torch.bfloat16, f"bf16 mixed precision as asked ({flags}; probe {measured.speedup:.1f}x)")
    if measured.speedup >= MIN_SPEEDUP:
        return CpuChoice(torch.bfloat16, f"bf16 mixed precision: {flags}, a matmul measured {measured.speedup:.1f}x "
                                         "faster than fp32")
    return CpuChoice(torch.float32, f"fp32: {flags} present but bf16 measured only {measured.speedup:.2f}x fp32's "
                                    f"speed (under {MIN_SPEEDUP}x)")
