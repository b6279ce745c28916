"""SFT of small causal LMs on unit-conversion questions, with a health guard and a pytest plugin."""

from .base_llm import BaseLLM
from .data import Dataset, benchmark, is_answer_valid


def load_sft(path=None):
    """The trained SFT model (course entry point): BaseLLM with the adapter from homework/sft_model."""
    from .sft import DEFAULT_OUTPUT_DIR, load

    return load(path or DEFAULT_OUTPUT_DIR)


__all__ = ["BaseLLM", "Dataset", "benchmark", "is_answer_valid", "load_sft"]
