"""The course grader's calling convention (homework.tools.grader_check): a fresh interpreter, a copy of the package
laid out as a submission, `importlib.import_module("homework")` and attribute access only.

The fast tier submits a tiny untrained adapter and asks for two questions per case: it proves the names the
grader reads exist and return the right types. The slow tier submits the default training's adapter
(tests/test_sft_accuracy.py) and grades it as the course would.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from homework.tools import grader_check


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, hw_base_model):
    """An untrained LoRA r=1 adapter on two projections of the embedded model, saved as train_model saves one."""
    import copy

    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("tiny") / "adapter"
    cfg = LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"], r=1, lora_alpha=2)
    get_peft_model(copy.deepcopy(hw_base_model), cfg).save_pretrained(out)
    return out


def test_submission_copy_holds_the_package_data_and_adapter_only(tmp_path, tiny_adapter):
    sub = grader_check.lay_out_submission(tmp_path / "sub", tiny_adapter)
    assert (sub / "homework" / "__init__.py").is_file() and (sub / "data" / "valid.json").is_file()
    assert (sub / "homework" / "sft_model" / "adapter_config.json").is_file()
    assert not list(sub.rglob("__pycache__"))


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_grader_convention_on_a_tiny_adapter(tmp_path, tiny_adapter):
    sub = grader_check.lay_out_submission(tmp_path / "sub", tiny_adapter)
    results = grader_check.run_cases(sub, questions=2, bench_questions=2)
    # the package the grader imported is the submission's, not this checkout's
    assert Path(results["package_file"]).resolve() == (sub / "homework" / "__init__.py").resolve()
    for case in ("generate", "batched"):
        outputs = results[case]["outputs"]
        assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
        assert math.isfinite(results[case]["loss"]) and results[case]["loss"] > 0
    sft = results["sft"]
    assert 100_000_000 < sft["parameters"] <= grader_check.MAX_PARAMETERS
    assert sft["questions"] == 2 and 0.0 <= sft["accuracy"] <= 1.0 and 0.0 <= sft["answer_rate"] <= 1.0
    rows = grader_check.score(results)
    assert set(rows) == {"generate", "batched", "sft"} and all(0.0 <= r["share"] <= 1.0 for r in rows.values())


@pytest.mark.integration  # a fresh interpreter on a copy of the package: seconds, and outside mutation runs
def test_a_broken_submission_fails_loudly_with_the_graders_error(tmp_path, tiny_adapter):
    """The convention reads `homework.data` without importing it: a package that never binds it fails."""
    sub = grader_check.lay_out_submission(tmp_path / "sub", tiny_adapter)
    init = sub / "homework" / "__init__.py"
    # the package as it was when the grader scored 0: `data` unbound, only the listed names resolved lazily
    init.write_text(init.read_text() + "\ndel data\n\n\ndef __getattr__(name):\n    if name in _LAZY:\n"
                    "        return getattr(importlib.import_module('.' + _LAZY[name], __name__), name)\n"
                    "    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')\n")
    with pytest.raises(RuntimeError, match="has no attribute 'data'"):
        grader_check.run_cases(sub, questions=1, bench_questions=1, timeout=120)


@pytest.mark.parametrize(("loss", "share"), [(6.2, 1.0), (5.0, 1.0), (7.1, 0.5), (8.0, 0.0), (9.5, 0.0)])
def test_loss_rule(loss, share):
    assert grader_check.loss_fraction(loss) == pytest.approx(share)


@pytest.mark.parametrize(("accuracy", "share"), [(0.3, 0.0), (0.4, 0.0), (0.5, 0.5), (0.6, 1.0), (0.95, 1.0)])
def test_accuracy_rule(accuracy, share):
    assert grader_check.accuracy_fraction(accuracy) == pytest.approx(share)


def test_a_case_over_its_limit_scores_nothing():
    results = {"generate": {"seconds": 41.0, "loss": 5.0}, "batched": {"seconds": 1.0, "loss": 5.0},
               "sft": {"seconds": 10.0, "accuracy": 0.9, "parameters": 400_000_000}}
    rows = grader_check.score(results)
    assert rows["generate"]["share"] == 0.0 and rows["batched"]["share"] == 1.0
    assert rows["sft"]["share"] == 0.0  # over the parameter limit
