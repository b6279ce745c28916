"""A Trainer that computes logits only where the loss needs them.

The output head (49,152 x 576, tied to the embedding) is ~42% of SmolLM2-135M's FLOPs per token,
but only the answer positions are supervised (about a third of a row). Running the decoder,
selecting the supervised hidden states and applying the head to those alone gives the same loss
and gradients for a fraction of the head's cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Trainer

from .collate import IGNORE_INDEX


def _unwrap(model):
    model = getattr(model, "module", model)  # DDP / accelerate wrappers
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supervised_loss(model, batch: dict, num_items_in_batch=None) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over supervised positions / normaliser; and the supervised count.

    Normalised by `num_items_in_batch` (the supervised count of the whole accumulated batch) when
    given, so batch 4 x accumulation 1 and batch 2 x accumulation 2 give the same loss (catalog row 10).
    """
    base = _unwrap(model)
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    count = int(keep.sum())
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None:  # unusual architecture: full logits
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        selected = logits[keep]
    else:
        hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        selected = head(hidden[:, :-1][keep])
    loss_sum = F.cross_entropy(selected.float(), targets[keep], reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else count
    if isinstance(denom, torch.Tensor):
        denom = denom.to(loss_sum.device)
    return loss_sum / denom, count


class SupervisedTrainer(Trainer):
    """Trainer with supervised-position-only logits and per-batch token accounting for the guard."""

    def __init__(self, *args, health_guard=None, group_by_length: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.health_guard = health_guard
        self.group_by_length = group_by_length

    def _get_train_sampler(self, *args, **kwargs):
        dataset = self.train_dataset
        if not self.group_by_length or dataset is None or not hasattr(dataset, "__getitem__"):
            return super()._get_train_sampler(*args, **kwargs)
        from .sampling import LengthGroupedSampler

        lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
        batch = self.args.per_device_train_batch_size
        return LengthGroupedSampler(lengths, batch, seed=self.args.data_seed or self.args.seed)

    def _save_checkpoint(self, model, trial, *args, **kwargs):
        # The Trainer writes a checkpoint file by file; a marker written last (atomically) tells a
        # resume which checkpoints are whole. A kill mid-save leaves one without it, which is skipped.
        super()._save_checkpoint(model, trial, *args, **kwargs)
        from pathlib import Path

        from .checkpoints import mark_complete

        ckpt = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        if ckpt.is_dir():
            mark_complete(ckpt)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:  # evaluation paths that need outputs: fall back to the model's own loss
            return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        loss, count = supervised_loss(model, inputs, num_items_in_batch)
        if self.health_guard is not None and model.training:
            self.health_guard.note_batch(count, int(inputs["attention_mask"].sum()))
        # When normalised by the accumulated count the loss is already scaled for accumulation.
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        return loss
