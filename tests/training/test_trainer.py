"""SupervisedTrainer's accounting: the tokens a step record reports are real (not padding) and summed over every
process; what the guard and metrics.json show comes from here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.mark.integration
def test_step_records_count_real_tokens_summed_over_every_process(lora_model, hw_train_rows, hw_tokenizer, monkeypatch):
    from homework.runtime import distributed
    from homework.training.collate import IGNORE_INDEX, DynamicPaddingCollator
    from homework.training.health import HealthGuard
    from homework.training.trainer import SupervisedTrainer
    from tests.conftest import on_device_of

    rows = [hw_train_rows[i] for i in range(4)]
    batch = on_device_of(lora_model, DynamicPaddingCollator(hw_tokenizer.pad_token_id)(rows))
    real = sum(len(r["input_ids"]) for r in rows)
    supervised = sum(sum(t != IGNORE_INDEX for t in r["labels"]) for r in rows)
    assert batch["input_ids"].numel() > real  # the rows are ragged: the batch holds padding

    guard = HealthGuard()
    trainer = SupervisedTrainer.__new__(SupervisedTrainer)
    trainer.health_guard, trainer.args = guard, SimpleNamespace(average_tokens_across_devices=False)
    lora_model.train()
    trainer.compute_loss(lora_model, batch)
    assert guard._pending_tokens == [supervised, real]

    # a second process with the same counts, through a fake collective: the record holds the global sums
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "sum_across_ranks", lambda values: [2 * v for v in values])
    monkeypatch.setattr(distributed, "agree_on_failure", lambda problem: problem)
    guard.on_pre_optimizer_step(SimpleNamespace(), SimpleNamespace(global_step=0), None)
    guard.on_log(SimpleNamespace(), SimpleNamespace(global_step=1), None,
                 logs={"loss": 1.5, "grad_norm": 0.5, "learning_rate": 1e-3})
    record = guard.records[-1]
    assert (record.supervised_tokens, record.tokens) == (2 * supervised, 2 * real)
