"""Padding-free batches: the rows of a batch concatenated into one row, attention kept inside each row.

A dynamically padded batch of B rows costs B x longest-row positions; a packed one costs exactly the sum of
the row lengths, so no position is padding. Three things make the packed row train the same as the rows:

  * position_ids restart at 0 at every row (RoPE sees each row at its own positions);
  * the first label of every row is -100, so the last token of one row is never asked to predict the
    first token of the next;
  * attention cannot cross rows: a block-diagonal causal mask, passed explicitly as a 4D additive mask.

Why explicit: transformers >= 4.53 infers packed rows from position_ids (masking_utils'
find_packed_sequence_indices), but only when no attention mask is passed *and* no cache exists. The model
makes a cache unless use_cache=False reaches it (the stock Trainer's model(**inputs) leaves it at the config's
True), and 4.52, inside this project's supported range, has no such inference for sdpa/eager at all. A
4D additive mask in the model's dtype is taken as-is by 4.52 and 5.x alike, for sdpa and eager attention.

The cost: the mask is T x T for T packed tokens, and sdpa with an explicit mask computes every block of
it, masked or not. On 2 CPU cores at batch 32 that made packed steps half as fast as padded ones (0.50x,
`python -m homework.tools.bench --variants head,packed`, 2026-11-30), so packing is off by default; on a GPU
it is not measured yet. A varlen kernel (flash-attention) would skip the masked blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runtime.errors import TrainingHealthError
from .collate import IGNORE_INDEX


@dataclass
class PackingCollator:
    """Concatenates a batch's rows into one row of shape (1, T), T = the sum of the rows' real lengths.

    Returns input_ids, labels and position_ids (no attention_mask: a consumer that would read a 2D padding
    mask must not take this batch for an ordinary one; trainer.supervised_loss passes the packed mask).
    Positions where a row's own attention_mask is 0 (padding) are dropped. Like DynamicPaddingCollator it
    never rebuilds labels from input_ids, and refuses a row with no supervised label (catalog row 2) unless
    refuse_unsupervised is off (several processes: the guard stops every process together instead).
    """

    refuse_unsupervised: bool = True

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for row, feat in enumerate(features):
            row_ids, row_labels = list(feat["input_ids"]), list(feat["labels"])
            if len(row_labels) != len(row_ids):
                raise ValueError(f"batch row {row}: {len(row_ids)} input_ids but {len(row_labels)} labels")
            mask = feat.get("attention_mask")
            if mask is not None:
                keep = [i for i, m in enumerate(mask) if m]
                row_ids, row_labels = [row_ids[i] for i in keep], [row_labels[i] for i in keep]
            if not row_ids:
                raise ValueError(f"batch row {row} has no token")
            if self.refuse_unsupervised and all(label == IGNORE_INDEX for label in row_labels[1:]):
                raise TrainingHealthError(
                    f"batch row {row} has no supervised label (every label is {IGNORE_INDEX}): it would train "
                    "nothing. Failure catalog row 2: drop or fix the row before training (the pre-flight scan "
                    "lists them).", catalog_row=2)
            row_labels[0] = IGNORE_INDEX  # the row boundary: nothing predicts a row's first token
            ids += row_ids
            labels += row_labels
            positions += range(len(row_ids))
        as_row = lambda values: torch.tensor([values], dtype=torch.long)  # noqa: E731
        return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(positions)}


def is_packed(batch: dict) -> bool:
    return "position_ids" in batch and "attention_mask" not in batch


def row_index(position_ids: torch.Tensor) -> torch.Tensor:
    """Which packed row each token belongs to (0, 1, ...): a new row starts wherever the position is 0."""
    return (position_ids == 0).cumsum(-1) - 1


def packed_attention_mask(position_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, T, T) additive mask: 0 where query i may attend key j (same row, j <= i), dtype's minimum elsewhere."""
    rows = row_index(position_ids)
    length = position_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (rows[:, :, None] == rows[:, None, :]) & causal
    mask = torch.zeros(allowed.shape, dtype=dtype, device=position_ids.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def _compute_dtype(model) -> torch.dtype:
    inner = getattr(model, "module", model)  # DDP / accelerate wrappers
    embeddings = inner.get_input_embeddings() if hasattr(inner, "get_input_embeddings") else None
    if embeddings is not None:
        return embeddings.weight.dtype
    return next(p.dtype for p in inner.parameters() if p.is_floating_point())


def packed_model_kwargs(model, position_ids: torch.Tensor) -> dict:
    """What a call of `model` on a packed batch needs besides input_ids: its positions and its mask."""
    return {"attention_mask": packed_attention_mask(position_ids, _compute_dtype(model)), "position_ids": position_ids}


def unsupervised_rows(batch: dict) -> int:
    """Rows of a packed batch with no supervised label (the guard's per-row check, which sees one row)."""
    labels, rows = batch["labels"], row_index(batch["position_ids"])
    counts = rows.max(dim=-1).values + 1  # packed rows per batch row
    rows = rows + (counts.cumsum(0) - counts)[:, None]  # numbered across the whole batch
    supervised = torch.zeros(int(counts.sum()), dtype=torch.long, device=labels.device)
    supervised.index_add_(0, rows.flatten(), (labels != IGNORE_INDEX).long().flatten())
    return int((supervised == 0).sum())
