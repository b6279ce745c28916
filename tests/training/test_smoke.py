"""A few real optimizer steps (homework/training/smoke.py), on a tiny random Llama with a LoRA adapter."""

from types import SimpleNamespace

import pytest

from homework.runtime.errors import TrainingHealthError
from homework.text.tokenization import IGNORE_INDEX
from homework.training import recipe
from homework.training.smoke import run_steps
from tests.conftest import random_llama

TOKENIZER = SimpleNamespace(pad_token_id=0)


def _rows(n=8):
    rows = []
    for i in range(n):
        ids = [1 + (i + j) % 30 for j in range(5 + i % 3)]
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * 3 + ids[3:]})
    return rows


@pytest.fixture(autouse=True)
def _no_full_collection(monkeypatch):
    # accelerate frees memory after train() with gc.collect(), a second in a test process full of objects
    import accelerate.utils.memory

    # a speed-up only: where a newer accelerate no longer has the function, nothing is patched
    monkeypatch.setattr(accelerate.utils.memory, "clear_device_cache", lambda garbage_collection=False: None,
                        raising=False)


@pytest.fixture
def tiny_lora():
    from peft import LoraConfig, get_peft_model

    return get_peft_model(random_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))


@pytest.fixture
def trainers(monkeypatch):
    """The trainers run_steps builds (and the options it built them with)."""
    built = []
    real = recipe.few_steps_trainer

    def spy(*args, **kwargs):
        built.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe, "few_steps_trainer", spy)
    return built


def test_run_steps_trains_the_steps_asked_for_at_the_rate_asked_for(tiny_lora, trainers):
    rows = _rows()
    records = run_steps(tiny_lora, TOKENIZER, rows, 2, learning_rate=1e-3, batch_size=2, grad_accum=2, seed=3)
    assert [r.step for r in records] == [1, 2] and all(r.learning_rate == 1e-3 for r in records)
    assert all(r.loss > 0 for r in records)
    [(args, kwargs)] = trainers
    assert args[0] is tiny_lora and args[1] is rows and args[3] != "" and args[4] == 2
    assert (kwargs["learning_rate"], kwargs["batch_size"], kwargs["grad_accum"], kwargs["seed"]) == (1e-3, 2, 2, 3)
    assert (kwargs["warmup_steps"], kwargs["bf16"], kwargs["gradient_checkpointing"], kwargs["plain"]) == \
        (0, False, False, False)
    assert (kwargs["group_by_length"], kwargs["packing"]) == (False, False)
    assert type(args[2]).__name__ == "DynamicPaddingCollator" and args[2].pad_token_id == 0
    assert kwargs["guard"].stop is True and kwargs["guard"].records == records


def test_run_steps_is_seeded(tiny_lora):
    import copy

    again = copy.deepcopy(tiny_lora)
    assert [r.loss for r in run_steps(tiny_lora, TOKENIZER, _rows(), 2, seed=5)] == \
        [r.loss for r in run_steps(again, TOKENIZER, _rows(), 2, seed=5)]


def test_an_unhealthy_step_stops_the_run_unless_the_guard_is_off(tiny_lora):
    with pytest.raises(TrainingHealthError, match="learning rate"):
        run_steps(tiny_lora, TOKENIZER, _rows(), 2, learning_rate=0.0)
    records = run_steps(tiny_lora, TOKENIZER, _rows(), 2, learning_rate=0.0, guard=False)
    assert [r.learning_rate for r in records] == [0.0, 0.0]


def test_run_steps_passes_its_switches_to_the_trainer(tiny_lora, trainers, tmp_path):
    run_steps(tiny_lora, TOKENIZER, _rows(), 1, warmup_steps=1, packing=True, group_by_length=True,
              output_dir=str(tmp_path), gradient_checkpointing=True)
    run_steps(tiny_lora, TOKENIZER, _rows(), 1, plain_trainer=True, guard=False)
    (args, kwargs), (plain_args, plain_kwargs) = trainers
    assert type(args[2]).__name__ == "PackingCollator" and args[3] == str(tmp_path)
    assert (kwargs["warmup_steps"], kwargs["packing"], kwargs["group_by_length"], kwargs["gradient_checkpointing"]) == \
        (1, True, True, True)
    assert tiny_lora.get_base_model().get_input_embeddings()._forward_hooks  # inputs require grad (catalog row 8)
    assert plain_kwargs["plain"] is True and plain_kwargs["guard"].stop is False


def test_by_default_three_steps_of_four_rows_at_2e_4(tiny_lora, trainers):
    records = run_steps(tiny_lora, TOKENIZER, _rows(16))
    assert [r.learning_rate for r in records] == [2e-4] * 3
    [(args, kwargs)] = trainers
    assert (args[4], kwargs["batch_size"], kwargs["grad_accum"], kwargs["seed"]) == (3, 4, 1, 0)
