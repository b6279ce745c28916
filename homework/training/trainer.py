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
from .packing import is_packed, packed_model_kwargs, unsupervised_rows


def _unwrap(model):
    model = getattr(model, "module", model)  # DDP / accelerate wrappers
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supervised_loss(model, batch: dict, num_items_in_batch=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token cross-entropy over supervised positions / normaliser; and each row's supervised count.

    Normalised by `num_items_in_batch` (the supervised count of the whole accumulated batch) when
    given, so batch 4 x accumulation 1 and batch 2 x accumulation 2 give the same loss (catalog row 10).
    The model is called through its wrappers (DDP's forward is what arms the gradient all-reduce); a
    pre-hook on the output head hands it only the supervised positions' hidden states.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    base = _unwrap(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    selected_early = []

    def select_supervised(module, args):
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[:2] != labels.shape:  # not the per-position head call
            return None
        selected_early.append(True)
        return (hidden[:, :-1][keep], *args[1:])

    if is_packed(batch):  # padding-free rows (homework.training.packing): their positions and a block-diagonal mask
        attention = packed_model_kwargs(model, batch["position_ids"])
    else:
        attention = {"attention_mask": batch["attention_mask"]}
    handle = head.register_forward_pre_hook(select_supervised) if isinstance(head, torch.nn.Module) else None
    try:
        logits = model(input_ids=batch["input_ids"], use_cache=False, **attention).logits
    finally:
        if handle is not None:
            handle.remove()
    selected = logits if selected_early else logits[:, :-1][keep]  # unusual architecture: full logits
    loss_sum = F.cross_entropy(selected.float(), targets[keep], reduction="sum")
    per_row = keep.sum(dim=1)
    denom = num_items_in_batch if num_items_in_batch is not None else per_row.sum()
    if isinstance(denom, torch.Tensor):
        denom = denom.to(loss_sum.device)
    return loss_sum / denom, per_row


class SupervisedTrainer(Trainer):
    """Trainer with supervised-position-only logits and per-batch token accounting for the guard."""

    def __init__(self, *args, health_guard=None, group_by_length: bool = False, run_id: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.health_guard = health_guard
        self.run_id = run_id  # written into each checkpoint's completion marker (checkpoints.py)
        self.group_by_length = group_by_length

    def _get_train_sampler(self, *args, **kwargs):
        dataset = self.train_dataset
        if not self.group_by_length or dataset is None or not hasattr(dataset, "__getitem__"):
            return super()._get_train_sampler(*args, **kwargs)
        from .sampling import LengthGroupedSampler

        lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
        batch = self.args.per_device_train_batch_size
        return LengthGroupedSampler(lengths, batch, seed=self.args.data_seed or self.args.seed,
                                    num_replicas=self.args.world_size, rank=self.args.process_index)

    def get_train_dataloader(self):
        loader = super().get_train_dataloader()
        # accelerate wraps the batches in a BatchSamplerShard that deals whole batches out to the processes
        # in turn. The length-grouped sampler already yields this process's share of each global batch, so
        # the wrapper must pass them through (as transformers does for its own rank-aware sampler), including
        # the last, partial batch, which it would otherwise fill up with rows from the start of the epoch.
        shard = getattr(loader, "batch_sampler", None)
        inner = getattr(shard, "batch_sampler", None)
        from .sampling import LengthGroupedSampler

        if isinstance(getattr(inner, "sampler", None), LengthGroupedSampler) and getattr(shard, "num_processes", 1) > 1:
            shard.num_processes, shard.process_index, shard.even_batches = 1, 0, False
        return loader

    def _load_optimizer_and_scheduler(self, checkpoint):
        # transformers 4.x maps the optimizer state to args.device when several processes train; on CPU that is
        # torch.device("cpu", 0), which torch.load cannot restore to ("tagged with cpu:0") -- resume failed there.
        device = self.args.device
        if checkpoint is None or device.type != "cpu" or device.index is None:
            return super()._load_optimizer_and_scheduler(checkpoint)
        from unittest import mock

        real_load = torch.load

        def load_to_cpu(*args, **kwargs):
            if kwargs.get("map_location") is not None:
                kwargs["map_location"] = "cpu"
            return real_load(*args, **kwargs)

        with mock.patch.object(torch, "load", load_to_cpu):
            return super()._load_optimizer_and_scheduler(checkpoint)

    def _save_checkpoint(self, model, trial, *args, **kwargs):
        # The Trainer writes a checkpoint file by file; a marker written last (atomically) tells a
        # resume which checkpoints are whole. A kill mid-save leaves one without it, which is skipped.
        # Every process writes its part (its RNG state; the main one the weights and optimizer), so the
        # marker waits for all of them and is written once, by the process that writes files.
        # A checkpoint written again into an existing directory (Ctrl-C right after a periodic save) loses its
        # marker first: while its files are being replaced it is not whole.
        from pathlib import Path

        from .checkpoints import clear_mark, mark_complete

        ckpt = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save and ckpt.is_dir():
            clear_mark(ckpt)
        super()._save_checkpoint(model, trial, *args, **kwargs)
        self.accelerator.wait_for_everyone()
        if self.args.should_save and ckpt.is_dir():
            mark_complete(ckpt, self.run_id)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:  # evaluation paths that need outputs: fall back to the model's own loss
            return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        loss, per_row = supervised_loss(model, inputs, num_items_in_batch)
        if self.health_guard is not None and model.training:
            if is_packed(inputs):  # one batch row holds several rows, and no position is padding
                real, unsupervised = inputs["input_ids"].numel(), unsupervised_rows(inputs)
            else:
                real, unsupervised = int(inputs["attention_mask"].sum()), int((per_row == 0).sum())
            self.health_guard.note_batch(int(per_row.sum()), real, unsupervised_rows=unsupervised)
        # When normalised by the accumulated count the loss is already scaled for accumulation.
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        if num_items_in_batch is not None and getattr(self.args, "average_tokens_across_devices", False):
            # num_items_in_batch counts the supervised tokens of every process; the gradient all-reduce
            # then averages over processes, so each process's share is scaled back up by their number
            # (as the stock Trainer does): N processes x batch B == one process x batch N*B.
            loss = loss * self.accelerator.num_processes
        return loss
