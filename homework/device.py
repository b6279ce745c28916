"""The one place that decides device and dtype.

CPU always trains in fp32: on the 2-core AVX2 machines this project targets, bf16 matmul is
~400x slower than fp32 (../shared/cpu-figures.md), and fp16 on CPU is slower still or unsupported.
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


def resolve_placement(device: str | None = None) -> Placement:
    """Pick the device (argument > $HOMEWORK_DEVICE > CUDA if present > CPU) and its dtype."""
    name = (device or os.environ.get(DEVICE_ENV) or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HomeworkError(f"device {name!r} was requested but CUDA is not available; use --device cpu")
        dev = torch.device(name)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return Placement(dev, dtype)
    if name == "cpu":
        return Placement(torch.device("cpu"), torch.float32)
    raise HomeworkError(f"unknown device {name!r}: use auto, cpu or cuda[:N]")


def check_precision(placement_device: torch.device, dtype: torch.dtype) -> None:
    """Refuse half precision on CPU (catalog row 9)."""
    if placement_device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        raise HomeworkError(
            f"half precision ({dtype}) on CPU refused: it is 40-500x slower than fp32 on this CPU and fp16 "
            "overflows to NaN (failure catalog row 9). Train in fp32 on CPU."
        )
