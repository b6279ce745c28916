"""A few real optimizer steps with the guard, on an already-adapted model: for the benchmark's variants
and for tests that vary one setting (batch, accumulation, checkpointing). Its TrainingArguments and
trainer come from the recipe, like every other run's."""

from __future__ import annotations

import tempfile

from .collate import DynamicPaddingCollator
from .health import HealthGuard, StepRecord


def run_steps(model, tokenizer, dataset, steps: int = 3, *, learning_rate: float = 2e-4, batch_size: int = 4,
              grad_accum: int = 1, gradient_checkpointing: bool = False, seed: int = 0, warmup_steps: int = 0,
              guard: bool = True, collator=None, plain_trainer: bool = False, output_dir: str | None = None,
              bf16: bool = False, group_by_length: bool = False, packing: bool = False) -> list[StepRecord]:
    """Train `steps` optimizer steps of `model` (already LoRA-wrapped) on `dataset`; return per-step records.

    The guard raises TrainingHealthError at the first unhealthy step unless guard=False. packing=True: padding-free
    batches (homework.training.packing; the default collator becomes PackingCollator).
    """
    from transformers import set_seed

    from .recipe import few_steps_trainer

    set_seed(seed)
    if gradient_checkpointing:
        model.enable_input_require_grads()
    health = HealthGuard(stop=guard)
    with tempfile.TemporaryDirectory(prefix="homework-steps-") as tmp:
        if collator is None:
            from .packing import PackingCollator

            collator = PackingCollator() if packing else DynamicPaddingCollator(tokenizer.pad_token_id)
        trainer = few_steps_trainer(model, dataset, collator,
                                    output_dir or tmp, steps, guard=health, learning_rate=learning_rate,
                                    batch_size=batch_size, grad_accum=grad_accum, seed=seed, warmup_steps=warmup_steps,
                                    bf16=bf16, gradient_checkpointing=gradient_checkpointing, plain=plain_trainer,
                                    group_by_length=group_by_length, packing=packing)
        trainer.train()
    return health.records
