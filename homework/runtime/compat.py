"""The one place that branches on the transformers major version (4.x vs 5.x)."""

from __future__ import annotations

import transformers

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def dtype_kwarg(dtype) -> dict:
    """`torch_dtype=` became `dtype=` in transformers 5."""
    return {"dtype": dtype} if TRANSFORMERS_MAJOR >= 5 else {"torch_dtype": dtype}


def checkpointing_args(enabled: bool) -> dict:
    """TrainingArguments for gradient checkpointing (non-reentrant). Named only when on: transformers 5
    deprecates the argument's name, and off is the default anyway."""
    if not enabled:
        return {}
    return {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
