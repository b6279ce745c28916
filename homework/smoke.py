"""A few real optimizer steps with the guard: shared by `doctor`, the pytest plugin and the benchmark."""

from __future__ import annotations

import tempfile

from .collate import DynamicPaddingCollator
from .health import HealthGuard, StepRecord


def run_steps(model, tokenizer, dataset, steps: int = 3, *, learning_rate: float = 2e-4, batch_size: int = 4,
              grad_accum: int = 1, gradient_checkpointing: bool = False, seed: int = 0, warmup_steps: int = 0,
              guard: bool = True, collator=None, plain_trainer: bool = False, output_dir: str | None = None,
              bf16: bool = False, group_by_length: bool = False) -> list[StepRecord]:
    """Train `steps` optimizer steps of `model` (already LoRA-wrapped) on `dataset`; return per-step records.

    The guard raises TrainingHealthError at the first unhealthy step unless guard=False.
    """
    from transformers import Trainer, TrainingArguments, set_seed

    from .compat import checkpointing_args
    from .trainer import SupervisedTrainer

    set_seed(seed)
    if gradient_checkpointing:
        model.enable_input_require_grads()
    health = HealthGuard(stop=guard)
    with tempfile.TemporaryDirectory(prefix="homework-steps-") as tmp:
        args = TrainingArguments(
            output_dir=output_dir or tmp, max_steps=steps, per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=grad_accum, learning_rate=learning_rate, warmup_steps=warmup_steps,
            lr_scheduler_type="constant_with_warmup" if warmup_steps else "constant",
            logging_steps=1, logging_nan_inf_filter=False, save_strategy="no", report_to="none", seed=seed,
            data_seed=seed, use_cpu=next(model.parameters()).device.type == "cpu", disable_tqdm=True,
            bf16=bf16, remove_unused_columns=False, dataloader_num_workers=0,
            **checkpointing_args(gradient_checkpointing),
        )
        collator = collator or DynamicPaddingCollator(tokenizer.pad_token_id)
        if plain_trainer:
            trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                              callbacks=[health])
        else:
            trainer = SupervisedTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                                        callbacks=[health], health_guard=health, group_by_length=group_by_length)
        trainer.train()
    return health.records
