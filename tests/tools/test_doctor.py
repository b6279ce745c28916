"""`python -m homework.sft doctor` passes on a correct checkout and names the cause of each injected fault; how it
runs a check and prints the table is tested fast, on a model that cannot load."""

import io
import re
import time

import pytest

from homework.runtime.errors import HomeworkError
from homework.tools.doctor import Check, _timed, run_doctor
from homework.training.faults import FAULTS


def test_a_check_passes_with_its_detail_and_time():
    checks = []
    assert _timed("wait", lambda: time.sleep(0.02) or "slept", checks) is True
    assert _timed("quiet", lambda: None, checks) is True
    (wait, quiet) = checks
    assert (wait.name, wait.ok, wait.detail) == ("wait", True, "slept") and 0.02 <= wait.seconds < 5
    assert quiet == Check("quiet", True, quiet.seconds, "")


@pytest.mark.parametrize("exc", [HomeworkError("no model"), AssertionError("no model"), ValueError("no model"),
                                 RuntimeError("no model")])
def test_a_check_that_raises_a_finding_fails_naming_it(exc):
    def find():
        time.sleep(0.02)
        raise exc

    checks = []
    assert _timed("load", find, checks) is False
    (check,) = checks
    assert (check.name, check.ok, check.detail) == ("load", False, f"{type(exc).__name__}: no model")
    assert 0.02 <= check.seconds < 5


def test_a_bug_in_a_check_is_not_reported_as_a_finding():
    with pytest.raises(KeyError):
        _timed("tokenize", lambda: {}["llm"], [])


def test_a_model_that_cannot_load_fails_the_first_check_and_skips_the_rest(monkeypatch):
    monkeypatch.delenv("HOMEWORK_FAULT", raising=False)
    out = io.StringIO()
    assert run_doctor(model="./no/such/model", steps=5, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "check                   result  seconds  detail"
    assert re.fullmatch(r"load model              FAIL +\d+\.\d  ModelResolutionError: model './no/such/model' is "
                        r"neither .*", lines[1])
    skipped = ["tokenize data", "pre-flight scan", "5-step smoke run", "adapter save/reload", "train/inference prompt"]
    assert lines[2:-1] == [f"{name:<22}  SKIP        0.0  skipped: an earlier check failed" for name in skipped]
    total = re.fullmatch(r"doctor: FAILED in (\d+\.\d) s", lines[-1])
    assert total and float(total[1]) < 60 and len(lines) == 8


def test_a_check_after_a_passing_one_runs_and_the_first_failure_skips_the_rest(monkeypatch):
    import types

    from homework import base_llm

    asked = []

    class Loaded:  # stands in for loading the model, the one heavy step before the data is read
        def __init__(self, model, device, precision=None, training=False):
            asked.append((model, device))
            assert training  # the doctor trains: the training precision
            self.model_spec = types.SimpleNamespace(describe=lambda: "tiny")
            self.placement = types.SimpleNamespace(describe=lambda: "cpu (float32)")
            self.tokenizer = None

    monkeypatch.delenv("HOMEWORK_FAULT", raising=False)
    monkeypatch.setattr(base_llm, "BaseLLM", Loaded)
    out = io.StringIO()
    assert run_doctor(model="tiny", device="cpu", train_file="./no/such/rows.json", out=out) == 1
    assert asked == [("tiny", "cpu")]
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"load model              PASS +\d+\.\d  tiny on cpu \(float32\)", lines[1])
    assert re.fullmatch(r"tokenize data           FAIL +\d+\.\d  DataError: .*rows\.json: file not found.*", lines[2])
    assert len(lines) == 8 and lines[-1].startswith("doctor: FAILED")
    assert all(" SKIP " in line and line.endswith("skipped: an earlier check failed") for line in lines[3:-1])


@pytest.mark.integration
@pytest.mark.timeout(600)
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


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("fault", [
    pytest.param(f, marks=() if f == "zero_lr" else pytest.mark.slow) for f in sorted(FAULTS)
])
def test_doctor_fails_naming_the_cause(monkeypatch, fault):
    monkeypatch.setenv("HOMEWORK_FAULT", fault)
    out = io.StringIO()
    assert run_doctor(out=out) == 1
    assert EXPECTED[fault] in out.getvalue() and "FAILED" in out.getvalue()


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_doctor_cli_exit_status():
    from tests.conftest import run_cli

    # what the CLI adds is the exit status and the table: a model that cannot load fails the first check
    proc = run_cli("-m", "homework.sft", "doctor", "--model", "./no/such/model")
    assert proc.returncode == 1 and "FAIL" in proc.stdout and "neither an existing directory" in proc.stdout
    assert "SKIP" in proc.stdout and "doctor: FAILED" in proc.stdout


def _rows(text: str) -> dict[str, tuple[str, str]]:
    """The table as {check: (result, detail)}; a detail may run over several lines."""
    lines = text.splitlines()
    width = lines[0].index("result")
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[1:-1]:
        result = line[width:width + 6].rstrip()
        if result in ("PASS", "FAIL", "SKIP"):
            name = line[:width].rstrip()
            rows[name] = (result, line[width + 17:])
        else:
            rows[name] = (rows[name][0], rows[name][1] + "\n" + line)
    return rows


def test_every_check_passes_on_a_healthy_model_and_says_what_it_saw(tiny_model_dir, monkeypatch):
    monkeypatch.delenv("HOMEWORK_FAULT", raising=False)
    out = io.StringIO()
    assert run_doctor(model=str(tiny_model_dir), device="cpu", rows=8, steps=2, out=out) == 0, out.getvalue()
    text = out.getvalue()
    rows = _rows(text)
    assert list(rows) == ["load model", "tokenize data", "pre-flight scan", "2-step smoke run", "adapter save/reload",
                          "train/inference prompt"]
    assert all(result == "PASS" for result, _ in rows.values()), text
    assert str(tiny_model_dir) in rows["load model"][1] and rows["load model"][1].endswith(" on cpu/float32")
    assert re.fullmatch(r"8 rows tokenized from .*train\.json", rows["tokenize data"][1])
    assert rows["pre-flight scan"][1] == "8 rows clean"
    assert re.fullmatch(r"step 1: loss \d+\.\d{3} grad \d+\.\d{2}, step 2: loss \d+\.\d{3} grad \d+\.\d{2}",
                        rows["2-step smoke run"][1])
    assert re.fullmatch(r"reloaded logits within [\d.e-]+ of the trained model's, which moved off the base",
                        rows["adapter save/reload"][1])
    assert rows["train/inference prompt"][1] == "inference prompt == training prompt on 8 rows"
    assert re.fullmatch(r"doctor: all checks passed in \d+\.\d s", text.splitlines()[-1])


def test_a_fault_in_training_fails_its_check_naming_the_cause_and_skips_the_rest(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HOMEWORK_FAULT", "zero_lr")
    out = io.StringIO()
    assert run_doctor(model=str(tiny_model_dir), device="cpu", rows=8, steps=2, out=out) == 1
    rows = _rows(out.getvalue())
    assert [r for r, _ in rows.values()] == ["PASS", "PASS", "PASS", "FAIL", "SKIP", "SKIP"]
    assert EXPECTED["zero_lr"] in rows["2-step smoke run"][1]


def test_the_doctor_trains_the_shipped_recipe_shortened_and_writes_nothing():
    import dataclasses

    from homework.tools.doctor import doctor_config
    from homework.training.config import TrainConfig

    cfg, shipped = doctor_config("m", "cpu", "valid", 2, 10), TrainConfig()
    changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
               if getattr(cfg, f.name) != getattr(shipped, f.name)}
    assert changed == {"model": "m", "device": "cpu", "train_file": "valid", "max_steps": 2, "limit": 10,
                       "save_steps": 0, "warmup_steps": 0, "evaluate": False, "progress": False}


def test_the_doctor_loads_tokenizes_builds_and_trains_once_and_checks_what_it_trained(tiny_model_dir, monkeypatch,
                                                                                     tmp_path):
    """One model load, one tokenization, one contract, one training run: the contract's checks reuse the doctor's
    trained model on the doctor's own rows, and the loaded base model is not the one the adapter went on."""
    import sft_contract.contract as kit
    from homework import base_llm
    from homework.tools import project_contract
    from homework.training import recipe

    monkeypatch.delenv("HOMEWORK_FAULT", raising=False)
    calls: dict[str, list] = {"load": [], "tokenize": [], "contract": [], "retrain": [], "reload": [], "prompt": []}

    def spy(owner, name, key, check=None):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            calls[key].append(check(*args, **kwargs) if check else result)
            return result
        monkeypatch.setattr(owner, name, wrapper)

    spy(base_llm.BaseLLM, "__init__", "load")
    spy(recipe, "tokenized_rows", "tokenize")
    spy(project_contract, "contract",
        "contract", lambda llm: not any("lora" in n for n, _ in llm.model.named_modules()))
    spy(kit, "train_a_few_steps", "retrain")
    spy(kit, "check_save_and_reload", "reload", lambda c, question, trained_model: (question, trained_model))
    spy(kit, "check_prompt_identity", "prompt", lambda c, question, answer: (question, answer))
    real_preflight = recipe.run_preflight
    monkeypatch.setattr(recipe, "run_preflight", lambda r: real_preflight(r) + ["w1", "w2"])

    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert run_doctor(model=str(tiny_model_dir), device="cpu", out=out) == 0, out.getvalue()
    assert list(tmp_path.iterdir()) == [], "the doctor wrote into the working directory"
    rows = _rows(out.getvalue())
    assert "3-step smoke run" in rows
    assert re.fullmatch(r"64 rows tokenized from .*train\.json", rows["tokenize data"][1])
    assert rows["pre-flight scan"][1] == "64 rows clean, 2 warning(s)"
    assert len(calls["load"]) == len(calls["tokenize"]) == 1 and calls["retrain"] == []
    assert calls["contract"] == [True], "the contract got the base model with the doctor's adapter on it"
    tokenized = calls["tokenize"][0]  # the rows the doctor trained on
    (question, trained), = calls["reload"]
    assert question == tokenized.questions[0] and trained is not None
    assert any("lora" in n for n, _ in trained.named_modules())
    assert calls["prompt"] == list(zip(tokenized.questions, tokenized.answers))[:16]
    assert rows["train/inference prompt"][1] == "inference prompt == training prompt on 16 rows"
