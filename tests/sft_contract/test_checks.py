"""sft_contract.contract's checks and sft_contract.checks' battery, on stand-ins and on the tiny foreign
project (tests/foreign_project/sftproj.py); the plugin around them is tested in test_plugin.py."""

import dataclasses

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
from tests.conftest import load_foreign_project


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
    return load_foreign_project("sftproj_checks")


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


def test_a_check_runs_on_a_sources_contract_with_its_examples_unless_given():
    from sft_contract.checks import Check, ContractSource

    seen = []
    check = Check("probe", lambda contract, examples: seen.append((contract, examples)))
    source = ContractSource(lambda: "the contract", examples=7)
    check(source)
    check(source, examples=3)
    check("a contract")
    check("a contract", examples=2)
    assert seen == [("the contract", 7), ("the contract", 3), ("a contract", 20), ("a contract", 2)]
    assert repr(check) == "probe"


def test_a_contract_source_builds_once_and_sets_the_steps_if_given():
    from sft_contract.checks import ContractSource

    built = []

    def factory():
        built.append(1)
        return _contract(None)

    source = ContractSource(factory, steps=5)
    assert source.get() is source.get() and source.get().steps == 5 and len(built) == 1
    assert ContractSource(lambda: _contract(None)).get().steps == 3  # the contract's own


def test_a_contract_source_is_named_by_its_factory():
    import functools

    from sft_contract.checks import ContractSource

    assert repr(ContractSource(_contract)) == f"{__name__}._contract"
    partial = functools.partial(_contract, None)  # no __qualname__
    assert repr(ContractSource(partial)) == repr(partial)


def test_a_contract_without_examples_is_a_violation():
    from sft_contract.checks import _examples

    with pytest.raises(ContractViolation, match="^the contract has no examples\n") as err:
        _examples(dataclasses.replace(_contract(None), examples=[]))
    assert err.value.catalog_row == 2
    assert _examples(_contract(None)) == [("a?", "1"), ("bbbb?", "22"), ("cc?", "3")]


def test_the_batterys_properties_are_derandomized_untimed_and_unshrunk():
    from hypothesis import HealthCheck, Phase, settings

    from sft_contract.checks import hypothesis_settings

    current = settings.get_current_profile_name()
    settings.load_profile("default")  # what a project's run without a profile of its own gets
    try:
        s = hypothesis_settings(7)
    finally:
        settings.load_profile(current)
    assert (s.max_examples, s.derandomize, s.deadline, s.database) == (7, True, None, None)
    assert set(s.suppress_health_check) == set(HealthCheck) and tuple(s.phases) == (Phase.explicit, Phase.generate)


def test_new_numbers_replace_the_integers_in_order_and_run_out_gracefully():
    from sft_contract.checks import _with_new_numbers

    assert _with_new_numbers("12 apples and 3 pears cost 45", [7, 800]) == "7 apples and 800 pears cost 45"
    assert _with_new_numbers("no digits", [1]) == "no digits"


def test_an_untrained_model_is_kept_for_the_next_check_that_asks():
    from sft_contract import checks

    made = []
    c = dataclasses.replace(_contract(None), make_model=lambda: made.append(object()) or made[-1])
    other = dataclasses.replace(_contract(None), make_model=lambda: "other's")
    try:
        first = checks._untrained_model(c, keep=True)
        assert checks._untrained_model(other, keep=False) == "other's"  # one per contract
        assert checks._untrained_model(c, keep=False) is first and len(made) == 1  # handed on, then dropped
        assert checks._untrained_model(c, keep=False) is not first and len(made) == 2
    finally:
        checks.release()


def test_the_parametrized_checks_share_one_source_with_the_settings_given():
    def factory():
        return None

    mark = sft_contract.parametrize_with_checks(factory, steps=4, examples=6)
    source = mark.args[1][0].values[0]
    assert (source.factory, source.steps, source.examples) == (factory, 4, 6)
    assert [p.values[1] for p in mark.args[1]] == sft_contract.CHECKS
