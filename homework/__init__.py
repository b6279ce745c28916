"""SFT of small causal LMs on unit-conversion questions, with a health guard and a pytest plugin.

The top-level names load on first use (PEP 562), so importing a submodule -- the pytest plugin does at
every pytest start-up where this package is installed -- does not import torch.
"""

import importlib

_LAZY = {"BaseLLM": "base_llm", "Dataset": "data", "benchmark": "data", "is_answer_valid": "data"}


def load_sft(path=None):
    """The trained SFT model (course entry point): BaseLLM with the adapter from homework/sft_model."""
    from .sft import DEFAULT_OUTPUT_DIR, load

    return load(path or DEFAULT_OUTPUT_DIR)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["BaseLLM", "Dataset", "benchmark", "is_answer_valid", "load_sft"]
