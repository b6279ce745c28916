"""The one branch on the transformers major version."""

import pytest
import torch

from homework.runtime import compat


@pytest.mark.parametrize("major, key", [(4, "torch_dtype"), (5, "dtype"), (6, "dtype")])
def test_the_dtype_argument_is_named_as_the_installed_transformers_names_it(monkeypatch, major, key):
    monkeypatch.setattr(compat, "TRANSFORMERS_MAJOR", major)
    assert compat.dtype_kwarg(torch.bfloat16) == {key: torch.bfloat16}


def test_gradient_checkpointing_is_named_only_when_on_and_is_non_reentrant():
    assert compat.checkpointing_args(False) == {}
    assert compat.checkpointing_args(True) == {"gradient_checkpointing": True,
                                               "gradient_checkpointing_kwargs": {"use_reentrant": False}}
