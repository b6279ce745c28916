"""`python -m homework.sft doctor` passes on a correct checkout and names the cause of each injected fault."""

import io

import pytest

from homework.tools.doctor import run_doctor
from homework.training.faults import FAULTS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_doctor_passes_on_a_correct_checkout(monkeypatch):
    monkeypatch.delenv("HOMEWORK_FAULT", raising=False)
    out = io.StringIO()
    assert run_doctor(out=out, rows=16) == 0, out.getvalue()
    text = out.getvalue()
    for check in ("load model", "pre-flight scan", "3-step smoke run", "adapter save/reload", "train/inference prompt"):
        assert check in text
    assert "FAIL" not in text and "all checks passed" in text


EXPECTED = {
    "labels_all_masked": "no supervised token",
    "nan_loss": "failure catalog row 1",
    "half_precision": "precision",
    "frozen_adapter": "no trainable parameters",
    "zero_lr": "learning rate is still 0",
    "truncated_answer": "cannot fit their answer",
    "eos_masked": "last supervised token is not EOS",
}


@pytest.mark.parametrize("fault", [
    pytest.param(f, marks=() if f == "zero_lr" else pytest.mark.slow) for f in sorted(FAULTS)
])
def test_doctor_fails_naming_the_cause(monkeypatch, fault):
    monkeypatch.setenv("HOMEWORK_FAULT", fault)
    out = io.StringIO()
    assert run_doctor(out=out) == 1
    assert EXPECTED[fault] in out.getvalue() and "FAILED" in out.getvalue()


def test_doctor_cli_exit_status():
    from tests.conftest import run_cli

    # what the CLI adds is the exit status and the table: a model that cannot load fails the first check
    proc = run_cli("-m", "homework.sft", "doctor", "--model", "./no/such/model")
    assert proc.returncode == 1 and "FAIL" in proc.stdout and "neither an existing directory" in proc.stdout
    assert "SKIP" in proc.stdout and "doctor: FAILED" in proc.stdout
