"""Fixtures of the tools' tests."""

import pytest

from tests.conftest import random_llama


@pytest.fixture(scope="session")
def tiny_model_dir(hw_tokenizer, tmp_path_factory):
    """A randomly initialised Llama with the real tokenizer, saved as a model directory: every check of the
    doctor runs on it in seconds. 16 layers, because the shipped recipe adapts the last 15."""
    model = random_llama(len(hw_tokenizer), layers=16, hidden=16, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=hw_tokenizer.bos_token_id,
                         eos_token_id=hw_tokenizer.eos_token_id, pad_token_id=hw_tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    hw_tokenizer.save_pretrained(path)
    return path
