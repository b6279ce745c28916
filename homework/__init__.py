"""SFT of small causal LMs on unit-conversion questions, with a health guard and a pytest plugin.

The course's grader imports this package and then only reads attributes: `homework.BaseLLM`,
`homework.load_sft`, `homework.data.Dataset` / `homework.data.benchmark`. `data` is imported here (it
needs no torch); the torch-heavy names and every other submodule load on first attribute access
(PEP 562), so `import homework` stays quick and free of torch until a model is asked for.
"""

import importlib
import importlib.util

from . import data

_LAZY = {"BaseLLM": "base_llm", "Dataset": "data", "benchmark": "data", "is_answer_valid": "data"}


def load_sft(path=None):
    """The trained SFT model (course entry point): BaseLLM with the adapter from homework/sft_model."""
    from .sft import DEFAULT_OUTPUT_DIR, load

    return load(path or DEFAULT_OUTPUT_DIR)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    # `homework.sft`, `homework.base_llm`, ...: a submodule read as an attribute before anything imported it
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["BaseLLM", "Dataset", "benchmark", "data", "is_answer_valid", "load_sft"]
