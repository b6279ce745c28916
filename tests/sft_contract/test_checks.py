"""sft_contract.contract's checks and sft_contract.checks' battery, on stand-ins and on the tiny foreign
project (tests/foreign_project/sftproj.py); the plugin around them is tested in test_plugin.py."""

import dataclasses
import importlib.util

import pytest
import torch

import sft_contract
from sft_contract.contract import (
    DEFAULT_TOLERANCES,
    ContractViolation,
    SFTContract,
    Tolerance,
    check_batch,
    check_first_steps,
    check_rows_stay_apart,
    first_divergence,
    varied_lengths,
)
from tests.conftest import REPO


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


def test_tolerances_come_from_the_contract_else_from_the_dtype():
    assert _contract(None).tolerance_for(torch.float32) == DEFAULT_TOLERANCES["float32"]
    assert _contract(None).tolerance_for(torch.bfloat16) == DEFAULT_TOLERANCES["half"]
    own = Tolerance(logits_atol=1.0, greedy_margin=2.0, loss_rel=3.0)
    assert dataclasses.replace(_contract(None), tolerance=own).tolerance_for(torch.float32) is own


ROWS = [{"input_ids": [5, 6, 0], "attention_mask": [1, 1, 1], "labels": [-100, 6, 0]},
        {"input_ids": [7, 8, 9, 0], "attention_mask": [1, 1, 1, 1], "labels": [-100, -100, 9, 0]}]


def _padded(rows, mask_by_id=False, rewrite=False):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
    if mask_by_id:
        labels[ids == 0] = -100
    if rewrite:
        labels = ids.clone()
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _packed(rows, cut=False):
    ids = sum((r["input_ids"] for r in rows), [])
    labels = sum((r["labels"] for r in rows), [])
    if cut:  # a fixed-length chunk that ends inside the last row
        ids, labels = ids[:-2], labels[:-2]
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "labels": torch.tensor([labels])}


@pytest.mark.parametrize("collate, row, words", [
    (lambda rows: _padded(rows), None, None),
    (lambda rows: _packed(rows), None, None),  # rows packed whole: collation is fine (attention is another check)
    (lambda rows: _padded(rows, rewrite=True), 6, "rewrote the labels"),
    (lambda rows: _padded(rows, mask_by_id=True), 5, "masked the row's EOS label"),
    (lambda rows: _packed(rows, cut=True), 17, "row 1 is not in it whole"),
], ids=["padded", "packed", "rewrites", "masks-eos-by-id", "packs-and-cuts"])
def test_check_batch_names_each_collator_fault(collate, row, words):
    if row is None:
        check_batch(_contract(collate), ROWS)
        return
    with pytest.raises(ContractViolation, match=words) as err:
        check_batch(_contract(collate), ROWS)
    assert err.value.catalog_row == row


@pytest.fixture(scope="module")
def sftproj():
    spec = importlib.util.spec_from_file_location("sftproj_checks", REPO / "tests" / "foreign_project" / "sftproj.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pack_leaky(rows):
    """Rows in one sequence, attention all ones, positions running on: each row sees the ones before it."""
    return _packed(rows)


def _pack_apart(rows):
    """Rows in one sequence, positions restarting at each row and no attention mask: transformers builds a
    block-diagonal mask from the positions, as for TRL's padding-free packing."""
    batch = _packed(rows)
    del batch["attention_mask"]
    batch["position_ids"] = torch.tensor([sum((list(range(len(r["input_ids"]))) for r in rows), [])])
    return batch


def test_rows_stay_apart_names_a_packing_that_leaks(sftproj):
    """Catalog row 17: the same rows, padded, packed with row boundaries, and packed without them."""
    c = sftproj.contract()
    rows = [c.tokenize(q, a) for q, a in c.examples[:3]]
    model = c.make_model()
    for collate in (c.collate, _pack_apart):
        check_rows_stay_apart(dataclasses.replace(c, collate=collate), model, rows)
    with pytest.raises(ContractViolation, match="rows in one sequence attend to each other") as err:
        check_rows_stay_apart(dataclasses.replace(c, collate=_pack_leaky), model, rows)
    assert err.value.catalog_row == 17


def test_parametrize_with_checks_gives_one_test_per_check():
    mark = sft_contract.parametrize_with_checks(lambda: None)
    names, params = mark.args
    assert names == "contract, check" and [p.id for p in params] == [c.name for c in sft_contract.CHECKS]
    assert len({id(p.values[0]) for p in params}) == 1  # one contract source: the factory runs once
    few = sft_contract.parametrize_with_checks(lambda: None, checks=["masking_holds_for_other_numbers"])
    assert [p.id for p in few.args[1]] == ["masking_holds_for_other_numbers"]
    with pytest.raises(ValueError, match="unknown checks"):
        sft_contract.parametrize_with_checks(lambda: None, checks=["no_such_check"])


@pytest.mark.integration
def test_a_contract_without_a_trainer_trains_with_a_stock_trainer(sftproj):
    """make_trainer left out: a stock transformers Trainer at the contract's constant learning rate runs the
    steps, and the kit's recorder logs every step even where the project's arguments log rarely."""
    from transformers import Trainer, TrainingArguments

    c = sftproj.contract()
    records, _ = check_first_steps(dataclasses.replace(c, make_trainer=None, learning_rate=1e-2))
    assert [r.step for r in records] == [1, 2, 3] and all(r.learning_rate == 1e-2 for r in records)

    def rarely_logging(model, dataset, output_dir, steps):
        args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=4,
                                 learning_rate=1e-2, logging_steps=50, report_to="none", use_cpu=True,
                                 save_strategy="no", remove_unused_columns=False, disable_tqdm=True, max_grad_norm=0)
        return Trainer(model=model, args=args, train_dataset=dataset, data_collator=c.collate)

    records, _ = check_first_steps(dataclasses.replace(c, make_trainer=rarely_logging))
    assert [r.step for r in records] == [1, 2, 3] and all(r.grad_norm > 0 for r in records)  # no clipping: measured
