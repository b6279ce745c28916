"""Fixtures of the tools' tests."""

import pytest

from tests.conftest import random_llama_dir


@pytest.fixture(scope="session")
def tiny_model_dir(hw_tokenizer, tmp_path_factory):
    """A randomly initialised Llama with the real tokenizer, saved as a model directory: every check of the
    doctor runs on it in seconds. 16 layers, because the shipped recipe adapts the last 15."""
    return random_llama_dir(hw_tokenizer, tmp_path_factory.mktemp("tiny-model"), layers=16, max_positions=256)
