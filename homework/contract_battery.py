"""The SFT contract battery. The plugin (homework.pytest_plugin) adds this module to the run when a project
opts in; every check runs on the project's own pieces, through homework.contract."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homework import contract as sft

pytestmark = pytest.mark.sft_contract


def _examples(contract):
    if not contract.examples:
        raise sft.ContractViolation("the contract has no examples", 2)
    return list(contract.examples)


def _with_new_numbers(text: str, numbers: list[int]) -> str:
    """`text` with its integers replaced (the same format, other digits for the tokenizer to split)."""
    it = iter(numbers)
    return re.sub(r"\d+", lambda m: str(next(it, m.group(0))), text)


def test_every_example_supervises_its_answer_and_eos(sft_contract):
    for question, answer in _examples(sft_contract):
        sft.check_row(sft_contract, question, answer)


def _for_examples_with_other_numbers(contract, settings, check) -> None:
    """check(question, answer) over the examples with their integers redrawn (Hypothesis)."""
    examples = _examples(contract)

    @settings
    @given(st.sampled_from(examples), st.lists(st.integers(0, 10**6), max_size=6))
    def prop(example, numbers):
        check(*(_with_new_numbers(text, numbers) for text in example))

    prop()


def test_masking_holds_for_other_numbers(sft_contract, sft_contract_settings):
    _for_examples_with_other_numbers(sft_contract, sft_contract_settings,
                                     lambda q, a: sft.check_row(sft_contract, q, a))


def test_collation_keeps_every_rows_labels_and_eos(sft_contract, sft_contract_settings):
    rows = [sft_contract.tokenize(q, a) for q, a in _examples(sft_contract)]

    @sft_contract_settings
    @given(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=8))
    def prop(picks):
        sft.check_batch(sft_contract, [rows[i] for i in picks])

    prop()


def test_inference_prompt_is_the_training_prompt(sft_contract, sft_contract_settings):
    _for_examples_with_other_numbers(sft_contract, sft_contract_settings,
                                     lambda q, a: sft.check_prompt_identity(sft_contract, q, a))


def test_batched_generation_equals_one_by_one(sft_contract):
    sft.check_batched_generation(sft_contract, sft_contract.make_model(), sft.varied_lengths(sft_contract, 4))


_trained = {}  # the model the first-steps check trained, reused by the save/reload check


def test_first_optimizer_steps_are_healthy(sft_contract, request):
    from homework.pytest_plugin import record_steps

    records, _trained[id(sft_contract)] = sft.check_first_steps(sft_contract)
    record_steps(request.config, request.node.nodeid, records)


def test_save_and_reload_gives_the_trained_logits(sft_contract):
    trained = _trained.pop(id(sft_contract), None)  # None if that check failed or did not run: train afresh
    sft.check_save_and_reload(sft_contract, _examples(sft_contract)[0][0], trained)
