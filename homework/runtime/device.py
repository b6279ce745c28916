"""The one place that decides device and dtype.

CPU always trains in fp32: on the 2-core AVX2 machines this project targets, bf16 matmul is
~400x slower than fp32 (docs/speed.md), and fp16 on CPU is slower still or unsupported.
CUDA uses bf16 where the card supports it, else fp32 (fp16 overflows bf16-trained weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import HomeworkError

DEVICE_ENV = "HOMEWORK_DEVICE"


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype

    @property
    def bf16(self) -> bool:
        return self.dtype == torch.bfloat16

    def describe(self) -> str:
        return f"{self.device.type}/{str(self.dtype).removeprefix('torch.')}"

    @property
    def groups_by_length(self) -> bool:
        """The default for length-grouped batches on this device class, by measurement: on 2 CPU cores
        grouping gained 1.22x (padding is compute there); on an H100 the same change measured 0.71x
        (docs/speed.md, the H100 run: the step is launch-bound and padding nearly free)."""
        return self.device.type == "cpu"


def resolve_placement(device: str | None = None) -> Placement:
    """Pick the device (argument > $HOMEWORK_DEVICE > CUDA if present > CPU) and its dtype. Under torchrun or
    accelerate launch, plain "cuda" means this process's GPU, cuda:$LOCAL_RANK."""
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
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return Placement(dev, dtype)
    if name == "cpu":
        return Placement(torch.device("cpu"), torch.float32)
    raise HomeworkError(f"unknown device {name!r}: use auto, cpu or cuda[:N]")


def check_precision(placement_device: torch.device, dtype: torch.dtype) -> None:
    """Refuse the precisions that break training here (catalog row 9): any half precision on CPU, and
    fp16 anywhere (SmolLM2's bf16-trained weights overflow it). bf16 on CUDA is the intended path."""
    if placement_device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        raise HomeworkError(
            f"half precision ({dtype}) on CPU refused: it is 40-500x slower than fp32 on this CPU and fp16 "
            "overflows to NaN (failure catalog row 9). Train in fp32 on CPU."
        )
    if dtype == torch.float16:
        raise HomeworkError(
            f"fp16 on {placement_device.type} refused: bf16-trained weights overflow fp16's range and the loss "
            "turns NaN (failure catalog row 9). Use bf16 where the card supports it, else fp32."
        )


def wrong_half_precision(device: torch.device) -> torch.dtype:
    """The half precision that is wrong on `device` (what the half_precision fault injects): bf16 on CPU
    (slow), fp16 on CUDA (overflow)."""
    return torch.bfloat16 if device.type == "cpu" else torch.float16
