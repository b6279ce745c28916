"""The one recipe: a TrainConfig becomes a model with its adapter, tokenized rows, a collator and a trainer.

`train_model`, `doctor`, the benchmark, `smoke.run_steps` and this project's SFT contract (the pytest
plugin's battery) all build through here, and TrainingArguments are made in one function, so what the
fast tier proves about a few steps is what the shipped training does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from . import faults
from .config import TrainConfig


def use_gradient_checkpointing(cfg: TrainConfig, placement) -> bool:
    if cfg.gradient_checkpointing in ("on", "true", True):
        return True
    if cfg.gradient_checkpointing in ("off", "false", False):
        return False
    # Activations of a 135M model at these lengths are tiny; checkpointing only costs a recompute.
    # Turn it on only on a GPU with under 8 GiB.
    if placement.device.type == "cuda":
        import torch

        return torch.cuda.get_device_properties(placement.device).total_memory < 8 * 2**30
    return False


def training_arguments(cfg: TrainConfig, output_dir: str | Path, placement, use_checkpointing: bool = False):
    """The only place this project builds TrainingArguments."""
    from transformers import TrainingArguments

    from ..runtime.compat import checkpointing_args

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        logging_steps=1,
        logging_nan_inf_filter=False,  # never hide a NaN behind a running mean (catalog row 1)
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=placement.bf16,
        use_cpu=placement.device.type == "cpu",
        report_to="none",
        disable_tqdm=not cfg.progress,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # Several processes (torchrun / accelerate launch): normalise the loss by the supervised tokens of
        # every process, so the run equals one process with the same global batch; every adapter weight
        # gets a gradient, so DDP need not search for unused parameters each step.
        average_tokens_across_devices=True,
        ddp_find_unused_parameters=False,
        **checkpointing_args(use_checkpointing),
    )


def build_trainer(model, args, dataset, collator, *, guard, callbacks=(), plain: bool = False,
                  group_by_length: bool = False, packing: bool = False):
    """This project's SupervisedTrainer (supervised-position logits, token accounting, length grouping,
    checkpoint markers), or with plain=True the stock transformers Trainer (the seed recipe's).
    packing=True: the batches are homework.training.packing's padding-free rows (SupervisedTrainer reads them)."""
    if plain and packing:  # model(**batch) would let attention cross the packed rows
        raise ValueError("the stock Trainer cannot train packed batches: use packing with plain=False")
    if plain:
        from transformers import Trainer

        return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                       callbacks=[guard, *callbacks])
    from .trainer import SupervisedTrainer

    return SupervisedTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                             callbacks=[guard, *callbacks], health_guard=guard, group_by_length=group_by_length)


def few_steps_trainer(model, dataset, collator, output_dir: str | Path, steps: int, *, guard, learning_rate: float,
                      batch_size: int, grad_accum: int = 1, seed: int = 0, warmup_steps: int = 0, bf16: bool = False,
                      gradient_checkpointing: bool = False, plain: bool = False, group_by_length: bool = False,
                      packing: bool = False):
    """A trainer for `steps` optimizer steps of an already-adapted model at a constant learning rate (after an
    optional warm-up), on the model's device: for smoke.run_steps and the SFT contract's default trainer."""
    import torch

    from ..runtime.device import Placement

    cfg = TrainConfig(batch_size=batch_size, grad_accum=grad_accum, seed=seed, warmup_steps=warmup_steps,
                      lr_scheduler="constant_with_warmup" if warmup_steps else "constant", max_steps=steps, save_steps=0,
                      progress=False)
    # set after validation: the guard's own tests and the contract's seeded bugs train at a learning rate of 0
    cfg.learning_rate = learning_rate
    placement = Placement(next(model.parameters()).device, torch.bfloat16 if bf16 else torch.float32)
    args = training_arguments(cfg, output_dir, placement, gradient_checkpointing)
    return build_trainer(model, args, dataset, collator, guard=guard, plain=plain, group_by_length=group_by_length,
                         packing=packing)


@dataclass
class Recipe:
    config: TrainConfig
    llm: object  # BaseLLM: tokenizer, placement, model spec
    model: object  # the PeftModel being trained
    dataset: object  # TokenizedDataset
    collator: object
    trainer: object
    guard: object  # HealthGuard
    use_checkpointing: bool
    group_by_length: bool

    @property
    def placement(self):
        return self.llm.placement

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def describe(self) -> str:
        from ..runtime import distributed

        procs = distributed.world_size()
        batch = (f"{procs} processes x batch {self.config.batch_size}" if procs > 1 else f"batch {self.config.batch_size}")
        batch += f" x accumulation {self.config.grad_accum}" if self.config.grad_accum > 1 else ""
        layers = "every layer" if self.config.lora_layers is None else f"the last {self.config.lora_layers} layers"
        return (f"model {self.llm.model_spec.describe() if self.llm.model_spec else '?'} on {self.placement.explain()}; "
                f"{len(self.dataset)} rows in {batch}; LoRA r={self.config.lora_rank} alpha={self.config.lora_alpha} on {layers}: "
                f"{self.trainable_parameters():,} trainable parameters; gradient checkpointing "
                f"{'on' if self.use_checkpointing else 'off'}; length-grouped batches "
                f"{'on' if self.group_by_length else 'off'}"
                + ("; rows packed without padding" if self.config.packing else ""))


def training_split(cfg: TrainConfig):
    """The training rows (the first cfg.limit), validated: a bad file fails here, before any model loads."""
    from ..data import Dataset

    data = Dataset(cfg.train_file)
    if cfg.limit:
        data.data = data.data[: cfg.limit]
    return data


def tokenized_rows(cfg: TrainConfig, tokenizer, data=None):
    """The training split in cfg.answer_format, ragged for dynamic padding."""
    from ..text.formats import answer_formatter
    from ..text.tokenization import TokenizedDataset

    data = training_split(cfg) if data is None else data
    rows = TokenizedDataset(tokenizer, data, answer_formatter(cfg.answer_format), max_length=cfg.max_length, pad=False)
    faults.apply_to_rows(rows.rows, tokenizer.eos_token_id)
    return rows


def build_recipe(cfg: TrainConfig, output_dir: str | Path, *, llm=None, base_model=None, dataset=None,
                 callbacks=()) -> Recipe:
    """Model with adapter, data, collator and trainer for `cfg`; checkpoints (if any) go to `output_dir`.

    llm: an already-loaded BaseLLM (else loaded from cfg.model / cfg.device); base_model: the module to put
    the adapter on (default llm.model, trained in place -- pass a copy to keep the base); dataset: tokenized
    rows (default: cfg.train_file in cfg.answer_format).
    """
    faults.apply_to_config(cfg)
    split = training_split(cfg) if dataset is None else None  # a bad data file fails before the heavy imports

    from transformers import set_seed

    from ..base_llm import BaseLLM
    from .collate import DynamicPaddingCollator
    from .health import HealthGuard
    from .lora import build_lora_model

    llm = llm or BaseLLM(cfg.model, cfg.device, cfg.precision, training=True)
    placement = llm.placement
    if placement.device.type == "cpu":
        from ..runtime import allocator

        allocator.keep_freed_memory()  # reuse activation memory instead of faulting it in every step
    dataset = tokenized_rows(cfg, llm.tokenizer, split) if dataset is None else dataset
    set_seed(cfg.seed)  # the adapter's initialisation
    model = build_lora_model(llm.model if base_model is None else base_model, cfg)
    faults.apply_to_model(model)
    use_ckpt = use_gradient_checkpointing(cfg, placement)
    if use_ckpt:
        model.enable_input_require_grads()  # catalog row 8
    group = placement.groups_by_length if cfg.group_by_length is None else cfg.group_by_length
    guard = HealthGuard(verbose_epochs=cfg.progress)
    from ..runtime import distributed

    packing = cfg.packing
    refuse = distributed.world_size() == 1
    if packing:
        from .packing import PackingCollator

        collator = PackingCollator(refuse_unsupervised=refuse)
    else:
        collator = DynamicPaddingCollator(llm.tokenizer.pad_token_id, refuse_unsupervised=refuse)
    args = training_arguments(cfg, output_dir, placement, use_ckpt)
    trainer = build_trainer(model, args, dataset, collator, guard=guard, callbacks=callbacks, group_by_length=group,
                            packing=packing)
    return Recipe(cfg, llm, model, dataset, collator, trainer, guard, use_ckpt, group)


def run_preflight(recipe: Recipe) -> list:
    """The pre-flight scan of the recipe's rows and model; raises PreflightError, returns the warnings."""
    from .health import enforce_preflight, format_findings, preflight_scan

    source = str(getattr(recipe.dataset, "source", None) or recipe.config.train_file)
    dtype = next(p.dtype for p in recipe.model.parameters())
    findings = preflight_scan(recipe.llm.tokenizer, recipe.dataset, model=recipe.model, device=recipe.placement.device,
                              dtype=dtype, source=source, questions=getattr(recipe.dataset, "questions", None),
                              answers=getattr(recipe.dataset, "answers", None))
    found = enforce_preflight(findings, source)
    for w in found:
        warnings.warn("pre-flight: " + format_findings([w], source), stacklevel=2)
    return found
