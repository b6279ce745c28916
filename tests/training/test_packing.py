"""Padding-free packing (homework/training/packing.py): the collator and the mask against naive oracles, then the
decisive check on the real model -- a packed batch and the same rows dynamically padded give the same loss
and the same gradients -- and the same through the trainer, step by step."""

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from homework.runtime.errors import TrainingHealthError
from homework.runtime.numerics import tolerance_for
from homework.training.collate import IGNORE_INDEX, DynamicPaddingCollator
from homework.training.packing import (
    PackingCollator,
    packed_attention_mask,
    row_index,
    unsupervised_rows,
)
from tests.conftest import on_device_of


@st.composite
def rows(draw, min_rows=1, max_rows=6):
    """Ragged rows of ids and labels (a label is -100 or any id), some with trailing padding masked out."""
    out = []
    for _ in range(draw(st.integers(min_rows, max_rows))):
        n = draw(st.integers(1, 10))
        ids = draw(st.lists(st.integers(0, 500), min_size=n, max_size=n))
        labels = [draw(st.one_of(st.just(IGNORE_INDEX), st.integers(0, 500))) for _ in range(n)]
        row = {"input_ids": ids, "labels": labels}
        pad = draw(st.integers(0, 3))
        if pad or draw(st.booleans()):
            row = {"input_ids": ids + [7] * pad, "labels": labels + [IGNORE_INDEX] * pad,
                   "attention_mask": [1] * n + [0] * pad}
        out.append(row)
    return out


def naive_pack(features):
    """The oracle, one token at a time: real tokens in order, positions counting from 0 in each row, the
    first label of each row masked."""
    ids, labels, positions = [], [], []
    for feat in features:
        mask = feat.get("attention_mask", [1] * len(feat["input_ids"]))
        real = [(t, lab) for t, lab, m in zip(feat["input_ids"], feat["labels"], mask) if m]
        for i, (t, lab) in enumerate(real):
            ids.append(t)
            labels.append(IGNORE_INDEX if i == 0 else lab)
            positions.append(i)
    return ids, labels, positions


@given(rows())
def test_collator_matches_the_naive_oracle(features):
    batch = PackingCollator(refuse_unsupervised=False)(features)
    ids, labels, positions = naive_pack(features)
    assert set(batch) == {"input_ids", "labels", "position_ids"}  # no 2D mask to mistake it for a padded batch
    for key in batch:
        assert batch[key].dtype == torch.long and batch[key].shape == (1, len(ids)), key
    assert batch["input_ids"][0].tolist() == ids  # every real token, in order, nothing added
    assert batch["position_ids"][0].tolist() == positions
    assert batch["labels"][0].tolist() == labels
    starts = [i for i, p in enumerate(positions) if p == 0]
    assert len(starts) == len(features) and all(labels[i] == IGNORE_INDEX for i in starts)  # row boundaries


@given(rows())
def test_unsupervised_rows_are_counted_or_refused(features):
    """A row that trains nothing (no supervised label after its first token) is refused (catalog row 2), or,
    with refusal off (several processes), counted for the guard, which sees only one packed row."""
    expected = sum(all(lab == IGNORE_INDEX for lab in naive_pack([f])[1]) for f in features)
    assert unsupervised_rows(PackingCollator(refuse_unsupervised=False)(features)) == expected
    if expected:
        with pytest.raises(TrainingHealthError) as info:
            PackingCollator()(features)
        assert info.value.catalog_row == 2
    else:
        PackingCollator()(features)


@given(st.lists(st.integers(1, 9), min_size=1, max_size=6))
def test_mask_lets_a_token_see_only_itself_and_earlier_tokens_of_its_row(lengths):
    position_ids = torch.tensor([[p for n in lengths for p in range(n)]])
    row = [r for r, n in enumerate(lengths) for _ in range(n)]
    assert row_index(position_ids)[0].tolist() == row
    mask = packed_attention_mask(position_ids, torch.float32)
    assert mask.shape == (1, 1, len(row), len(row))
    blocked = torch.finfo(torch.float32).min
    for q in range(len(row)):
        for k in range(len(row)):
            allowed = row[q] == row[k] and k <= q
            assert mask[0, 0, q, k].item() == (0.0 if allowed else blocked), (q, k)


def test_an_empty_batch_or_row_is_refused():
    with pytest.raises(ValueError, match="empty batch"):
        PackingCollator()([])
    with pytest.raises(ValueError, match="no token"):
        PackingCollator()([{"input_ids": [3], "labels": [3], "attention_mask": [0]}])


def test_refusals_say_which_row_and_why():
    with pytest.raises(ValueError, match=r"^cannot collate an empty batch$"):
        PackingCollator()([])
    with pytest.raises(ValueError, match=r"^batch row 1: 2 input_ids but 3 labels$"):
        PackingCollator()([{"input_ids": [3, 4], "labels": [3, 4]}, {"input_ids": [3, 4], "labels": [3, 4, 5]}])
    with pytest.raises(TrainingHealthError) as info:
        PackingCollator()([{"input_ids": [3, 4], "labels": [3, 4]}, {"input_ids": [3, 4], "labels": [3, IGNORE_INDEX]}])
    assert str(info.value).startswith(
        "batch row 1 has no supervised label (every label is -100): it would train nothing. Failure catalog row 2: "
        "drop or fix the row before training (the pre-flight scan lists them).")


def test_the_mask_is_in_the_models_dtype_on_the_positions_device():
    # the meta device stands in for a GPU: a tensor made on the default device instead would not mix with it
    mask = packed_attention_mask(torch.zeros(2, 3, dtype=torch.long, device="meta"), torch.float16)
    assert (mask.device.type, mask.dtype, mask.shape) == ("meta", torch.float16, (2, 1, 3, 3))
    assert packed_attention_mask(torch.tensor([[0, 1, 0]]), torch.bfloat16)[0, 0, 2, 0] == torch.finfo(
        torch.bfloat16).min


def test_packed_model_kwargs_give_the_positions_and_a_mask_in_the_embeddings_dtype():
    from homework.training.packing import packed_model_kwargs

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.other = torch.nn.Linear(2, 2)  # float32, the first parameter: not the one that decides
            self.embed = torch.nn.Embedding(4, 2).to(torch.bfloat16)

        def get_input_embeddings(self):
            return self.embed

    class NoEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.index = torch.nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)
            self.weight = torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))

    positions = torch.tensor([[0, 1, 0, 1]])
    model = Model()
    kwargs = packed_model_kwargs(SimpleNamespace(module=model), positions)  # through a DDP-like wrapper
    assert kwargs["position_ids"] is positions and kwargs["attention_mask"].dtype == torch.bfloat16
    assert torch.equal(kwargs["attention_mask"], packed_attention_mask(positions, torch.bfloat16))
    # no input embeddings: the first floating-point parameter's dtype
    assert packed_model_kwargs(NoEmbeddings(), positions)["attention_mask"].dtype == torch.float16


def test_a_batch_is_packed_when_it_has_positions_and_no_padding_mask():
    from homework.training.packing import is_packed

    ids = torch.zeros(1, 3, dtype=torch.long)
    assert is_packed({"input_ids": ids, "position_ids": ids})
    assert not is_packed({"input_ids": ids, "position_ids": ids, "attention_mask": ids})  # padded, with positions
    assert not is_packed({"input_ids": ids, "attention_mask": ids}) and not is_packed({"input_ids": ids})


def test_unsupervised_rows_are_counted_across_every_batch_row():
    # two batch rows of packed rows: [a a | b b] and [c c c | d]; b and d supervise nothing
    position_ids = torch.tensor([[0, 1, 0, 1], [0, 1, 2, 0]])
    labels = torch.tensor([[IGNORE_INDEX, 5, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 7, IGNORE_INDEX]])
    assert unsupervised_rows({"labels": labels, "position_ids": position_ids}) == 2
    labels[1, 3] = 9
    assert unsupervised_rows({"labels": labels, "position_ids": position_ids}) == 1


def _loss_and_grads(model, loss_fn, batch):
    model.zero_grad(set_to_none=True)
    loss, per_row = loss_fn(model, on_device_of(model, batch))
    loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach().float(), int(per_row.sum()), grads


@pytest.mark.integration
def test_packed_and_padded_batches_give_the_same_loss_and_gradients(lora_model, hw_tokenizer, hw_train_rows,
                                                                    hw_placement):
    """The decisive check, on the real model: attention stays inside each packed row and RoPE sees each row
    at its own positions, so packing changes neither the loss nor any adapter gradient (fp32 tolerance)."""
    from homework.training.trainer import supervised_loss

    # rows of different lengths, so the padded batch really pads
    by_length = {}
    for i in range(len(hw_train_rows)):
        by_length.setdefault(len(hw_train_rows[i]["input_ids"]), i)
    features = [hw_train_rows[i] for i in sorted(by_length.values())[:4]]
    assert len({len(f["input_ids"]) for f in features}) == 4
    # lora_B starts at 0, which leaves every lora_A gradient 0: move it, so every gradient is compared
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in lora_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)

    padded = DynamicPaddingCollator(hw_tokenizer.pad_token_id)(features)
    packed = PackingCollator()(features)
    assert packed["input_ids"].numel() == int(padded["attention_mask"].sum()) < padded["input_ids"].numel()

    loss_a, supervised_a, grads_a = _loss_and_grads(lora_model, supervised_loss, padded)
    loss_b, supervised_b, grads_b = _loss_and_grads(lora_model, supervised_loss, packed)
    tol = tolerance_for(hw_placement.dtype)
    assert supervised_a == supervised_b > 0
    assert float(loss_b) == pytest.approx(float(loss_a), rel=tol.loss_rel)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    for name, g in grads_a.items():
        assert float(g.norm()) > 0, name
        assert float((grads_b[name] - g).norm()) <= tol.grad_rel * float(g.norm()), name

    # and the converse: without the mask the same packed row attends across rows and the loss moves
    with torch.no_grad():
        crossed, _ = supervised_loss(lora_model, on_device_of(lora_model, {
            **packed, "attention_mask": torch.ones_like(packed["input_ids"])}))
    assert abs(float(crossed) - float(loss_a)) > 5 * tol.loss_rel * float(loss_a), (float(crossed), float(loss_a))


@pytest.mark.integration
def test_packed_training_steps_match_padded_ones(lora_factory, hw_tokenizer, hw_train_rows, hw_placement):
    """Through the trainer (SupervisedTrainer with the packing collator, as --packing builds it): two steps on the
    same rows give the same losses, gradient norms and token counts as dynamic padding."""
    from homework.training.smoke import run_steps

    rows8 = torch.utils.data.Subset(hw_train_rows, range(8))
    common = dict(learning_rate=1e-3, batch_size=4, bf16=hw_placement.bf16)
    padded = run_steps(lora_factory(), hw_tokenizer, rows8, 2, **common)
    packed = run_steps(lora_factory(), hw_tokenizer, rows8, 2, packing=True, **common)
    tol = tolerance_for(hw_placement.dtype)
    assert len(padded) == len(packed) == 2
    for a, b in zip(padded, packed):
        assert (b.supervised_tokens, b.tokens) == (a.supervised_tokens, a.tokens), a.step
        assert b.loss == pytest.approx(a.loss, rel=tol.loss_rel), a.step
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=tol.grad_rel), a.step


@pytest.mark.integration
def test_the_guard_sees_an_unsupervised_row_inside_a_packed_batch(lora_model, hw_tokenizer, hw_train_rows):
    """With refusal off (as in a run of several processes) the packed row as a whole is supervised; the
    trainer still tells the guard about the row inside it that is not, and the guard stops (catalog row 2)."""
    from homework.training.smoke import run_steps

    rows4 = [dict(hw_train_rows[i]) for i in range(4)]
    rows4[1]["labels"] = [IGNORE_INDEX] * len(rows4[1]["labels"])
    with pytest.raises(TrainingHealthError, match=r"1 row\(s\) of this batch have no supervised label") as info:
        run_steps(lora_model, hw_tokenizer, rows4, 1, batch_size=4, packing=True,
                  collator=PackingCollator(refuse_unsupervised=False))
    assert info.value.catalog_row == 2


def _may_attend(mask: torch.Tensor) -> torch.Tensor:
    """(T, T) bool from the mask a model was handed: 4D additive (0 = attend) or 4D boolean (True = attend)."""
    assert mask.dim() == 4 and mask.shape[:2] == (1, 1), f"a 2D padding mask cannot keep packed rows apart: {mask.shape}"
    mask = mask[0, 0]
    return mask if mask.dtype == torch.bool else mask == 0


@pytest.mark.parametrize("path", ["supervised_loss", "trainer"])
def test_the_model_is_handed_a_block_diagonal_mask_for_packed_rows(path):
    """What keeps packed rows apart is OUR mask, not transformers inferring rows from position ids (4.53+ does,
    and only without a cache; 4.52, inside the supported range, does not). A stand-in model records what it is
    called with: every token may attend to itself and the earlier tokens of its own row, and to nothing else."""
    from homework.training.trainer import SupervisedTrainer, supervised_loss
    from tests.conftest import random_llama

    model = random_llama()
    calls = []
    model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    lengths = (3, 5, 1, 4)
    features = [{"input_ids": [(7 * r + k) % 32 for k in range(n)], "labels": [IGNORE_INDEX] + [5] * (n - 1)}
                for r, n in enumerate(lengths)]
    features[2]["labels"] = [5]  # a one-token row: its only label is masked as a row boundary
    batch = PackingCollator(refuse_unsupervised=False)(features)
    if path == "trainer":
        trainer = SupervisedTrainer.__new__(SupervisedTrainer)
        trainer.health_guard, trainer.args = None, SimpleNamespace(average_tokens_across_devices=False)
        trainer.compute_loss(model, batch)
    else:
        supervised_loss(model, batch)
    (kwargs,) = calls
    assert kwargs.get("attention_mask") is not None, "packed rows were left to the library to tell apart"
    row = [r for r, n in enumerate(lengths) for _ in range(n)]
    expected = torch.tensor([[row[i] == row[j] and j <= i for j in range(len(row))] for i in range(len(row))])
    assert torch.equal(_may_attend(kwargs["attention_mask"]), expected)
    assert kwargs["position_ids"].tolist() == [[k for n in lengths for k in range(n)]]
