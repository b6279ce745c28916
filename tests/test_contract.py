"""homework.contract's pure pieces, without a model (the battery itself is tested in test_pytest_plugin.py)."""

import pytest

from homework.contract import ContractViolation, SFTContract, check_batch, first_divergence, varied_lengths


class CharTokenizer:
    """One id per character (ord), EOS = 0."""

    eos_token_id = pad_token_id = 0

    def decode(self, ids, skip_special_tokens=False):
        return "".join("" if (i == 0 and skip_special_tokens) else chr(i) if i else "</s>" for i in ids)

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


@pytest.mark.parametrize("batched, single, step", [
    ("abc", "abc", None),
    ("abc", "abc\0", None),  # both stopped: EOS ends the one-by-one run where the batched text ends
    ("abX", "abc", 2),  # left at step 2
    ("abcdef", "abc\0", 3),  # went on where the one-by-one run stopped: diverged at the EOS step
    ("ab", "abc", 2),  # stopped early
])
def test_first_divergence(batched, single, step):
    tok = CharTokenizer()
    assert first_divergence(batched, [ord(c) for c in single], tok) == step


def _contract(collate):
    tok = CharTokenizer()
    return SFTContract(tokenizer=tok, examples=[("a?", "1"), ("bbbb?", "22"), ("cc?", "3")], make_model=None,
                       format_prompt=lambda q: q + "\n", tokenize=None, collate=collate)


def test_varied_lengths_puts_the_extremes_first():
    assert varied_lengths(_contract(None), 2) == ["a?", "bbbb?"]


def test_check_batch_names_a_collator_that_rewrites_labels():
    import torch

    def rewriting(rows):
        ids = torch.tensor([r["input_ids"] for r in rows])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    rows = [{"input_ids": [5, 6, 0], "attention_mask": [1, 1, 1], "labels": [-100, 6, 0]}]
    with pytest.raises(ContractViolation, match="rewrote the labels") as err:
        check_batch(_contract(rewriting), rows)
    assert err.value.catalog_row == 6


@pytest.mark.integration
def test_a_contract_without_a_trainer_trains_with_the_default_one():
    """make_trainer left out: a stock transformers Trainer with this project's TrainingArguments runs the steps."""
    import dataclasses
    import importlib.util

    from homework.contract import check_first_steps
    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("sftproj_default", REPO / "tests" / "foreign_project" / "sftproj.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    contract = dataclasses.replace(module.contract(), make_trainer=None, learning_rate=1e-2)
    records, _ = check_first_steps(contract)
    assert [r.step for r in records] == [1, 2, 3] and all(r.learning_rate == 1e-2 for r in records)
