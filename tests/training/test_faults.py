"""The deliberate faults (homework/training/faults.py): which are active, and what each does to rows, model and config."""

import pytest
import torch

from homework.text.tokenization import IGNORE_INDEX
from homework.training import faults
from homework.training.config import TrainConfig

EOS = 2


def _rows():
    return [{"input_ids": [5, 6, 7, EOS], "labels": [IGNORE_INDEX, 6, 7, EOS]},
            {"input_ids": [8, EOS, 9], "labels": [IGNORE_INDEX, EOS, 9]}]


class _Adapted(torch.nn.Module):
    """Two layers with a LoRA pair each, named as peft names them."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleDict({"base": torch.nn.Linear(3, 3), "lora_A": torch.nn.Linear(3, 2),
                                 "lora_B": torch.nn.Linear(2, 3)}) for _ in range(2))


def test_no_fault_is_active_unless_named(monkeypatch):
    assert faults.active() == set()
    monkeypatch.setenv(faults.FAULT_ENV, " , ")
    assert faults.active() == set()


def test_several_faults_are_named_comma_separated(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, " nan_loss, zero_lr ,,")
    assert faults.active() == {"nan_loss", "zero_lr"}


def test_an_unknown_fault_is_refused_naming_the_known_ones(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "nan_loss,typo,other")
    with pytest.raises(ValueError) as err:
        faults.active()
    assert str(err.value) == (f"unknown HOMEWORK_FAULT value(s) ['other', 'typo']; known: {sorted(faults.FAULTS)}")


def test_a_fault_confined_to_one_rank_spares_the_others(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "nan_loss")
    monkeypatch.setenv(faults.FAULT_RANK_ENV, " 1 ")
    monkeypatch.setenv("RANK", "0")
    assert faults.active() == set()
    monkeypatch.setenv("RANK", "1")
    assert faults.active() == {"nan_loss"}
    monkeypatch.setenv(faults.FAULT_RANK_ENV, " ")  # blank: every rank
    monkeypatch.setenv("RANK", "0")
    assert faults.active() == {"nan_loss"}


def test_rows_are_untouched_without_a_fault():
    rows = _rows()
    faults.apply_to_rows(rows, EOS)
    assert rows == _rows()


def test_labels_all_masked_masks_every_label_of_every_row(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "labels_all_masked")
    rows = _rows()
    faults.apply_to_rows(rows, EOS)
    assert [r["labels"] for r in rows] == [[IGNORE_INDEX] * 4, [IGNORE_INDEX] * 3]
    assert [r["input_ids"] for r in rows] == [r["input_ids"] for r in _rows()]


def test_eos_masked_masks_only_the_eos_labels(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "eos_masked")
    rows = _rows()
    faults.apply_to_rows(rows, EOS)
    assert [r["labels"] for r in rows] == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 9]]


def test_the_model_is_untouched_without_a_fault():
    model = _Adapted()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    faults.apply_to_model(model)
    assert all(torch.equal(before[n], p) and p.requires_grad for n, p in model.named_parameters())
    assert next(model.parameters()).dtype == torch.float32


def test_nan_loss_puts_nan_in_the_first_lora_b_weight_only(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "nan_loss")
    model = _Adapted()
    faults.apply_to_model(model)
    nan = {n for n, p in model.named_parameters() if torch.isnan(p).any()}
    assert nan == {"layers.0.lora_B.weight"}
    assert torch.isnan(model.layers[0].lora_B.weight).all()
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_adapter_leaves_nothing_trainable(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "frozen_adapter")
    model = _Adapted()
    faults.apply_to_model(model)
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(torch.isnan(p).any() for p in model.parameters())


def test_half_precision_casts_the_model_to_the_wrong_half_for_its_device(monkeypatch, cpu_without_bf16):
    monkeypatch.setenv(faults.FAULT_ENV, "half_precision")
    model = _Adapted()
    faults.apply_to_model(model)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # on a CPU that emulates bf16: bf16


def test_zero_lr_and_truncated_answer_change_the_config(monkeypatch):
    cfg = TrainConfig()
    faults.apply_to_config(cfg)
    assert cfg == TrainConfig()
    monkeypatch.setenv(faults.FAULT_ENV, "zero_lr")
    faults.apply_to_config(cfg)
    assert (cfg.learning_rate, cfg.warmup_steps, cfg.max_length) == (0.0, 0, TrainConfig().max_length)
    cfg = TrainConfig()
    monkeypatch.setenv(faults.FAULT_ENV, "truncated_answer")
    faults.apply_to_config(cfg)
    assert cfg.max_length == 12 and cfg.learning_rate == TrainConfig().learning_rate


def test_faults_combine(monkeypatch, cpu_without_bf16):
    monkeypatch.setenv(faults.FAULT_ENV, "nan_loss,frozen_adapter,half_precision")
    model = _Adapted()
    faults.apply_to_model(model)
    assert torch.isnan(model.layers[0].lora_B.weight).all()
    assert not any(p.requires_grad for p in model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
