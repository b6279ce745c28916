"""The kit on a project built on TRL (tests/foreign_trl_project/trlproj.py): SFTTrainer and SFTConfig,
prompt/completion data, completion-only loss, its own collator, LoRA r=4 on the embedded model.

It passes the battery, run the way a TRL user would from their own test file (parametrize_with_checks);
each misconfiguration TRL users report, seeded by TRLPROJ_BUG and run through the plugin's option, fails
it naming the cause and the catalog row. The project imports nothing of homework: the model directory
reaches it in TRLPROJ_MODEL. Skipped without trl (the `trl` extra, part of `dev`).
"""

import importlib.util
import os
import sys

import pytest

import sft_contract
from tests.conftest import REPO

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("trl") is None,
                                 reason="trl is not installed: pip install -e '.[trl]'")]

WITH_PLUGIN = ("-p", "no:sft_contract", "-p", "sft_contract.plugin")
PROJECT = REPO / "tests" / "foreign_trl_project" / "trlproj.py"


@pytest.fixture(scope="module", autouse=True)
def trlproj(hw_model_spec):
    """The project, imported once as `trlproj` with TRLPROJ_MODEL set: the battery below and the plugin's
    in-process runs find it in sys.modules, so trl is imported and the model loaded once for all of them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRLPROJ_MODEL", str(hw_model_spec.location))
        mp.delenv("TRLPROJ_BUG", raising=False)
        spec = importlib.util.spec_from_file_location("trlproj", PROJECT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        mp.setitem(sys.modules, "trlproj", module)
        yield module
        module.base_model.cache_clear()


def trl_contract():
    return sys.modules["trlproj"].contract()


@sft_contract.parametrize_with_checks(trl_contract, steps=2)
def test_the_trl_project_passes_the_battery(contract, check):
    """SFTTrainer trains 2 steps on the project's rows (it builds their labels itself and the project checks
    they are its own), then the adapter is saved and reloaded."""
    check(contract)


CHEAP = ["every_example_supervises_its_answer_and_eos", "masking_holds_for_other_numbers",
         "collation_keeps_every_rows_labels_and_eos", "inference_prompt_is_the_training_prompt"]


@pytest.mark.parametrize("bug, failing, cause", [
    ("prompt_supervised", "every_example_supervises_its_answer_and_eos",
     "*decode to 'Question: What is 2 + 3?\\nAnswer: 5': the prompt is supervised along with the answer*catalog row 16)"),
    ("eos_masked", "collation_keeps_every_rows_labels_and_eos",
     "*the collator masked the row's EOS label (padding masked by token id, and pad == EOS)*catalog row 5)"),
    ("chat_template", "inference_prompt_is_the_training_prompt",
     "*the inference prompt's ids are not the training row's prompt*catalog row 11)"),
    ("packing_wrapped", "rows_in_a_batch_train_as_if_alone",
     "*token losses change when it is collated with others*rows in one sequence attend to each other*catalog row 17)"),
])
def test_each_seeded_trl_misconfiguration_fails_with_its_cause(pytester, monkeypatch, bug, failing, cause):
    """The checks that need no training (plus the packing check for packing): the seeded one fails, naming
    the cause and its catalog row; the rest pass, where the bug leaves them nothing to find."""
    monkeypatch.setenv("TRLPROJ_BUG", bug)
    selected = CHEAP + ([failing] if failing not in CHEAP else [])
    result = pytester.runpytest(*WITH_PLUGIN, "--sft-contract=trlproj:contract", "--sft-contract-examples=5",
                                "-p", "no:cacheprovider", "-k", " or ".join(selected))
    assert result.parseoutcomes().get("failed", 0) >= 1, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines([f"FAILED  {failing}: {cause}"])
    untouched = {"prompt_supervised": ["collation_keeps_every_rows_labels_and_eos"],
                 "eos_masked": ["every_example_supervises_its_answer_and_eos", "inference_prompt_is_the_training_prompt"],
                 "chat_template": ["every_example_supervises_its_answer_and_eos",
                                   "collation_keeps_every_rows_labels_and_eos"],
                 "packing_wrapped": CHEAP}[bug]
    for name in untouched:
        result.stdout.fnmatch_lines([f"PASSED  {name}"])
    assert os.environ["TRLPROJ_MODEL"]  # the project got the model from the environment, not from homework
