"""Property tests for batch collation (failure catalog rows 2, 5, 6).

Token ids come from a small alphabet that contains the pad id, which is also the EOS id (as in
SmolLM2), so "mask by id" bugs meet real EOS labels in nearly every example; rows end their labels
in EOS, some arrive already padded (attention 0, label -100), and some supervise nothing.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from homework.runtime.errors import TrainingHealthError
from homework.training.collate import IGNORE_INDEX, DynamicPaddingCollator

PAD = EOS = 2  # SmolLM2: pad == eos == 2, so padding must be decided by position
ALPHABET = st.sampled_from([0, 1, PAD, 3, 4, 49151])


@st.composite
def rows(draw):
    """A tokenized row: prompt (masked) + answer ending in EOS (supervised) + optional trailing padding."""
    prompt = draw(st.lists(ALPHABET, min_size=0, max_size=20))
    answer = draw(st.lists(ALPHABET, min_size=0, max_size=12)) + [EOS]
    padding = draw(st.integers(0, 6))
    ids = prompt + answer + [PAD] * padding
    labels = [IGNORE_INDEX] * len(prompt) + answer + [IGNORE_INDEX] * padding
    mask = [1] * (len(prompt) + len(answer)) + [0] * padding
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


batches = st.lists(rows(), min_size=1, max_size=8)


def naive_pad(row, width):
    """The oracle: append pad ids, zero attention and -100 labels up to `width`, one list at a time."""
    n = len(row["input_ids"])
    return (row["input_ids"] + [PAD] * (width - n), row["attention_mask"] + [0] * (width - n),
            row["labels"] + [IGNORE_INDEX] * (width - n))


@given(batches)
def test_collation_pads_to_the_longest_row_and_keeps_labels(batch):
    """Catalog rows 5, 6: labels keep their values, right-padded with -100 by position (pad id == EOS id)."""
    out = DynamicPaddingCollator(PAD)(batch)
    width = max(len(r["input_ids"]) for r in batch)
    assert out["input_ids"].shape == out["labels"].shape == out["attention_mask"].shape == (len(batch), width)
    for i, row in enumerate(batch):
        ids, mask, labels = naive_pad(row, width)
        assert out["input_ids"][i].tolist() == ids
        assert out["attention_mask"][i].tolist() == mask
        assert out["labels"][i].tolist() == labels


@given(batches)
def test_invariants_every_label_is_ignored_or_its_input_id_and_padding_is_ignored(batch):
    out = DynamicPaddingCollator(PAD)(batch)
    labels, ids, mask = out["labels"], out["input_ids"], out["attention_mask"]
    assert bool(((labels == IGNORE_INDEX) | (labels == ids)).all())
    assert bool((labels[mask == 0] == IGNORE_INDEX).all())
    for i in range(len(batch)):  # each row's last supervised label is the EOS it must learn to emit
        supervised = labels[i][labels[i] != IGNORE_INDEX]
        assert supervised.numel() > 0 and int(supervised[-1]) == EOS


@given(batches, st.randoms(use_true_random=False))
def test_batch_order_and_composition_do_not_change_a_rows_labels(batch, rnd):
    collate = DynamicPaddingCollator(PAD)
    alone = [collate([r])["labels"][0].tolist() for r in batch]
    shuffled = list(range(len(batch)))
    rnd.shuffle(shuffled)
    out = collate([batch[i] for i in shuffled])
    for pos, i in enumerate(shuffled):
        n = len(batch[i]["labels"])
        row = out["labels"][pos].tolist()
        assert row[:n] == alone[i][:n] == batch[i]["labels"]
        assert set(row[n:]) <= {IGNORE_INDEX}


@given(batches, st.integers(0, 7), st.lists(ALPHABET, min_size=1, max_size=10))
def test_a_row_with_no_supervised_token_is_refused(batch, where, ids):
    """Catalog row 2: a row whose labels are all -100 would add 0/0; the collator names it instead."""
    where = where % (len(batch) + 1)
    bad = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE_INDEX] * len(ids)}
    with pytest.raises(TrainingHealthError, match=f"batch row {where} has no supervised label") as err:
        DynamicPaddingCollator(PAD)(batch[:where] + [bad] + batch[where:])
    assert err.value.catalog_row == 2 and str(err.value) == (
        f"batch row {where} has no supervised label (every label is -100): it would add 0/0 to the loss. Failure "
        "catalog row 2: drop or fix the row before training (the pre-flight scan lists them).")
    # In a run of several processes the guard reports it instead, at the same step on every process.
    out = DynamicPaddingCollator(PAD, refuse_unsupervised=False)(batch[:where] + [bad] + batch[where:])
    assert (out["labels"][where] == IGNORE_INDEX).all()


@given(st.lists(st.lists(ALPHABET, min_size=1, max_size=12), min_size=1, max_size=6))
def test_rows_without_an_attention_mask_attend_to_every_real_token(ids_per_row):
    """The mask defaults to 1 over each row's own tokens and 0 over its padding; every output is int64."""
    batch = [{"input_ids": ids, "labels": ids} for ids in ids_per_row]
    out = DynamicPaddingCollator(PAD)(batch)
    for row, ids in enumerate(ids_per_row):
        assert out["attention_mask"][row].tolist() == [1] * len(ids) + [0] * (out["input_ids"].shape[1] - len(ids))
    assert {t.dtype for t in out.values()} == {torch.long}


@given(batches, st.integers(1, 16))
def test_pad_to_multiple(batch, multiple):
    out = DynamicPaddingCollator(PAD, pad_to_multiple_of=multiple)(batch)
    assert out["input_ids"].shape[1] % multiple == 0
    assert out["input_ids"].dtype == torch.long
    assert out["input_ids"].shape[1] - max(len(r["input_ids"]) for r in batch) < multiple


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="^cannot collate an empty batch$"):
        DynamicPaddingCollator(PAD)([])
