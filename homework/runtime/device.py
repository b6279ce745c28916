"""The one place that decides device and dtype.

A CPU trains in bf16 mixed precision where it computes bf16 natively and a probe measures it faster
(precision.py), else in fp32: without AMX or AVX512-BF16, bf16 is emulated and ~400x slower (docs/speed.md).
CUDA uses bf16 where the card supports it, else fp32. fp16 is refused everywhere (it overflows SmolLM2's
bf16-trained weights). `--precision` / $HOMEWORK_PRECISION (auto, fp32, bf16) overrides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from . import precision as _precision
from .errors import HomeworkError

DEVICE_ENV = "HOMEWORK_DEVICE"


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    reason: str = field(default="", compare=False)  # why this dtype, for the run's first line
    asked: str = field(default="auto", compare=False)  # the precision asked for: auto, fp32 or bf16

    @property
    def bf16(self) -> bool:
        return self.dtype == torch.bfloat16

    def describe(self) -> str:
        return f"{self.device.type}/{str(self.dtype).removeprefix('torch.')}"

    def explain(self) -> str:
        return self.describe() + (f" ({self.reason})" if self.reason else "")

    def for_generation(self) -> Placement:
        """Where generation runs after training here. On a CPU that chose bf16 for training by itself, generation
        goes back to fp32: its small per-token matmuls measured ~1.5x slower in bf16 (docs/speed.md). A bf16
        asked for explicitly is kept."""
        if self.device.type == "cpu" and self.dtype == torch.bfloat16 and self.asked == "auto":
            return Placement(self.device, torch.float32, GENERATION_FP32, self.asked)
        return self

    @property
    def groups_by_length(self) -> bool:
        """The default for length-grouped batches on this device class, by measurement: on 2 CPU cores
        grouping gained 1.22x (padding is compute there); on an H100 the same change measured 0.71x
        (docs/speed.md, the H100 run: the step is launch-bound and padding nearly free)."""
        return self.device.type == "cpu"


def _probe_cache_dir():
    from .model_source import cache_root

    try:
        return cache_root()
    except Exception:  # no usable cache: the probe is measured each time, never an error
        return None


GENERATION_FP32 = "fp32 for generation: bf16 measured slower at its small per-token matmuls"


def cpu_precision(precision: str | None = None) -> _precision.CpuChoice:
    """The CPU's dtype for `precision` (argument > $HOMEWORK_PRECISION > auto), with the reason."""
    asked = _precision.requested_precision(precision)
    identity = _precision.cpu_identity()
    return _precision.choose_cpu_precision(asked, identity,
                                           lambda: _precision.cached_probe(_probe_cache_dir(), identity))


def resolve_placement(device: str | None = None, precision: str | None = None, *, training: bool = False) -> Placement:
    """Pick the device (argument > $HOMEWORK_DEVICE > CUDA if present > CPU) and its dtype (precision: argument >
    $HOMEWORK_PRECISION > auto). Under torchrun or accelerate launch, plain "cuda" means this process's GPU,
    cuda:$LOCAL_RANK. training=False (generation: the grader, load(), test) on a CPU: auto means fp32
    (Placement.for_generation)."""
    name = (device or os.environ.get(DEVICE_ENV) or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HomeworkError(f"device {name!r} was requested but CUDA is not available; use --device cpu")
        visible = torch.cuda.device_count()
        devices = f"{visible} CUDA device{'s are' if visible != 1 else ' is'} visible"
        if name == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun / accelerate launch: one GPU per process
            from .distributed import local_rank

            rank = local_rank()
            if rank >= visible:  # else torch fails later with "invalid device ordinal", far from the cause
                raise HomeworkError(f"LOCAL_RANK={rank} but only {devices}: launch at most {visible} "
                                    "process(es) per machine, or train on CPU with --device cpu (gloo)")
            name = f"cuda:{rank}"
        dev = torch.device(name)
        if dev.index is not None and dev.index >= visible:
            raise HomeworkError(f"device {name!r} was requested but only {devices}")
        asked = _precision.requested_precision(precision)
        if asked == "fp32":
            return Placement(dev, torch.float32, "fp32 as asked", asked)
        if torch.cuda.is_bf16_supported():
            return Placement(dev, torch.bfloat16, "bf16: the card supports it", asked)
        if asked == "bf16":
            raise HomeworkError(f"bf16 was requested but {name} does not support it; use --precision fp32 (or auto)")
        return Placement(dev, torch.float32, "fp32: the card has no bf16", asked)
    if name == "cpu":
        asked = _precision.requested_precision(precision)
        if asked == "auto" and not training:
            return Placement(torch.device("cpu"), torch.float32, GENERATION_FP32, asked)
        choice = cpu_precision(asked)
        return Placement(torch.device("cpu"), choice.dtype, choice.reason, asked)
    raise HomeworkError(f"unknown device {name!r}: use auto, cpu or cuda[:N]")


def check_precision(placement_device: torch.device, dtype: torch.dtype) -> None:
    """Refuse the precisions that break training here (catalog row 9): fp16 anywhere (SmolLM2's bf16-trained
    weights overflow it), and bf16 on a CPU that does not compute it natively (emulated, ~400x slower)."""
    if placement_device.type == "cpu" and dtype == torch.bfloat16 and not _precision.cpu_identity().native_bf16:
        raise HomeworkError(
            f"bf16 on this CPU refused: it has neither {' nor '.join(_precision.NATIVE_BF16_FLAGS)}, so bf16 is "
            "emulated and 40-500x slower than fp32 (failure catalog row 9). Train in fp32 on this CPU."
        )
    if dtype == torch.float16:
        raise HomeworkError(
            f"fp16 on {placement_device.type} refused: bf16-trained weights overflow fp16's range and the loss "
            "turns NaN (failure catalog row 9). Use bf16 where the card supports it, else fp32."
        )


def wrong_half_precision(device: torch.device) -> torch.dtype:
    """The half precision that is wrong on `device` (what the half_precision fault injects): bf16 on a CPU that
    emulates it (slow), fp16 elsewhere (overflow)."""
    if device.type == "cpu" and not _precision.cpu_identity().native_bf16:
        return torch.bfloat16
    return torch.float16
