"""Comparison tolerances per compute dtype."""

import torch

from homework.runtime.numerics import TOLERANCES, tolerance_for


def test_fp32_and_bf16_have_their_own_bounds():
    assert tolerance_for(torch.float32) is TOLERANCES[torch.float32]
    assert tolerance_for(torch.bfloat16) is TOLERANCES[torch.bfloat16]
    assert tolerance_for(torch.float32).loss_rel < tolerance_for(torch.bfloat16).loss_rel


def test_fp16_shares_the_bf16_bounds():
    assert tolerance_for(torch.float16) is TOLERANCES[torch.bfloat16]
