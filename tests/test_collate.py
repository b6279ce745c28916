"""Property tests for batch collation (failure catalog row 6)."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from homework.collate import IGNORE_INDEX, DynamicPaddingCollator

PAD = 2  # SmolLM2: pad == eos == 2, so padding must be decided by position


@st.composite
def rows(draw):
    n = draw(st.integers(1, 40))
    prompt = draw(st.integers(0, n - 1))
    ids = draw(st.lists(st.integers(0, 49151), min_size=n, max_size=n))
    labels = [IGNORE_INDEX] * prompt + ids[prompt:]
    return {"input_ids": ids, "attention_mask": [1] * n, "labels": labels}


batches = st.lists(rows(), min_size=1, max_size=8)


def naive_pad(row, width):
    n = len(row["input_ids"])
    return (row["input_ids"] + [PAD] * (width - n), [1] * n + [0] * (width - n),
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
    pad_positions = out["attention_mask"] == 0
    assert bool((out["labels"][pad_positions] == IGNORE_INDEX).all())


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


@given(batches, st.integers(1, 16))
def test_pad_to_multiple(batch, multiple):
    out = DynamicPaddingCollator(PAD, pad_to_multiple_of=multiple)(batch)
    assert out["input_ids"].shape[1] % multiple == 0
    assert out["input_ids"].dtype == torch.long
