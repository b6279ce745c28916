"""The one place that branches on the transformers major version (4.x vs 5.x)."""

from __future__ import annotations

import transformers

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def dtype_kwarg(dtype) -> dict:
    """`torch_dtype=` became `dtype=` in transformers 5."""
    return {"dtype": dtype} if TRANSFORMERS_MAJOR >= 5 else {"torch_dtype": dtype}
