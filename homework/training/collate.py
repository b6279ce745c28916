"""Batch collation that pads to the longest row and never touches label values."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runtime.errors import TrainingHealthError
from ..text.tokenization import IGNORE_INDEX


@dataclass
class DynamicPaddingCollator:
    """Right-pads each batch to its longest row.

    input_ids are padded with `pad_token_id`, attention_mask with 0 and labels with -100. Padding is
    decided by position, never by token id: SmolLM2's pad token *is* its EOS, and masking by id
    would also mask the real EOS the model must learn to emit (catalog row 5). Unlike
    DataCollatorForLanguageModeling it never rebuilds labels from input_ids (catalog row 6), and it refuses
    a row with no supervised label (catalog row 2) instead of passing on a batch that trains nothing.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    # Off in a run of several processes: one process raising here (in its data loader) would leave the
    # others in the next all-reduce. There the trainer reports such rows to the health guard, and every
    # process stops at the same step.
    refuse_unsupervised: bool = True

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        lengths = [len(f["input_ids"]) for f in features]
        width = max(lengths)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        for row, feat in enumerate(features):
            if self.refuse_unsupervised and all(label == IGNORE_INDEX for label in feat["labels"]):
                raise TrainingHealthError(
                    f"batch row {row} has no supervised label (every label is {IGNORE_INDEX}): it would add 0/0 to the "
                    "loss. Failure catalog row 2: drop or fix the row before training (the pre-flight scan lists them).",
                    catalog_row=2)
        n = len(features)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        for row, (feat, length) in enumerate(zip(features, lengths)):
            input_ids[row, :length] = torch.as_tensor(feat["input_ids"], dtype=torch.long)
            attention[row, :length] = torch.as_tensor(feat.get("attention_mask", [1] * length), dtype=torch.long)
            labels[row, :length] = torch.as_tensor(feat["labels"], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
