"""Deliberate faults, for proving that the guard, the scan and `doctor` catch them.

Set HOMEWORK_FAULT=<name> (comma-separated for several). Production runs never set it; the tests
and `doctor --inject` do. Each fault reproduces a row of the failure catalog. In a run of several
processes, HOMEWORK_FAULT_RANK=<rank> confines the faults to that process (the others stay healthy).
"""

from __future__ import annotations

import os

import torch

from ..text.tokenization import IGNORE_INDEX

FAULT_ENV = "HOMEWORK_FAULT"
FAULT_RANK_ENV = "HOMEWORK_FAULT_RANK"
FAULTS = {
    "labels_all_masked": "every label -100 (catalog row 2)",
    "nan_loss": "a NaN in an adapter weight, so the first loss is NaN (catalog row 1)",
    "half_precision": "the wrong half precision for the device: bf16 on a CPU that emulates it, else fp16 (catalog row 9)",
    "frozen_adapter": "no trainable parameter (catalog row 15)",
    "zero_lr": "learning rate 0 (catalog row 15)",
    "truncated_answer": "max_length too short for the answers (catalog row 3)",
    "eos_masked": "the EOS label masked as if it were padding (catalog row 5)",
}


def active() -> set[str]:
    names = {n.strip() for n in os.environ.get(FAULT_ENV, "").split(",") if n.strip()}
    unknown = names - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown {FAULT_ENV} value(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
    only_rank = os.environ.get(FAULT_RANK_ENV, "").strip()
    if only_rank:
        from ..runtime.distributed import rank

        if int(only_rank) != rank():
            return set()
    return names


def apply_to_rows(rows: list[dict], eos_id: int) -> None:
    faults = active()
    for row in rows:
        if "labels_all_masked" in faults:
            row["labels"] = [IGNORE_INDEX] * len(row["labels"])
        if "eos_masked" in faults:
            row["labels"] = [IGNORE_INDEX if t == eos_id else t for t in row["labels"]]


def apply_to_model(model) -> None:
    faults = active()
    if "nan_loss" in faults:
        for name, p in model.named_parameters():
            if "lora_B" in name:
                with torch.no_grad():
                    p.fill_(float("nan"))
                break
    if "frozen_adapter" in faults:
        for p in model.parameters():
            p.requires_grad_(False)
    if "half_precision" in faults:
        from ..runtime.device import wrong_half_precision

        model.to(wrong_half_precision(next(model.parameters()).device))


def apply_to_config(cfg) -> None:
    faults = active()
    if "zero_lr" in faults:
        cfg.learning_rate = 0.0
        cfg.warmup_steps = 0
    if "truncated_answer" in faults:
        cfg.max_length = 12
