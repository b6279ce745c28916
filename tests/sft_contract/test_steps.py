"""sft_contract.steps: the one definition of a healthy optimizer step (homework's guard tests judge it too,
tests/training/test_health.py)."""

import pytest

from sft_contract.steps import StepRecord, assert_steps_healthy


def test_a_loss_that_does_not_fall_is_healthy_unless_progress_is_required():
    flat = [StepRecord(1, 2.0, 1.0, 1e-3), StepRecord(2, 2.0, 1.0, 1e-3)]
    assert_steps_healthy(flat)
    with pytest.raises(AssertionError, match=r"^loss did not fall: 2.0000 -> 2.0000\. \[failure catalog row 15\]"):
        assert_steps_healthy(flat, require_progress=True)
