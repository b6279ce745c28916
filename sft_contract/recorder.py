"""The kit's step recorder: a transformers TrainerCallback that keeps loss, gradient norm and learning rate
per optimizer step, for any Trainer (transformers', TRL's, a project's subclass). It records; it never
stops a run: the contract's checks judge the records afterwards (sft_contract.steps.step_problem)."""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback

from .steps import StepRecord


def autocast_device() -> str | None:
    """The device type whose autocast is on here, or None. Asked at an optimizer step, an answer other than None
    means autocast wraps more than the forward pass (catalog row 18)."""
    for device in ("cpu", "cuda"):
        try:
            on = torch.is_autocast_enabled(device)
        except TypeError:  # a torch without the per-device form
            on = torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled()
        if on:
            return device
    return None


class StepRecorder(TrainerCallback):
    def __init__(self):
        self.records: list[StepRecord] = []
        self.warmup_steps = 0
        self._grad_norm: float | None = None
        self.autocast_steps: list[int] = []  # optimizer steps that ran under autocast (catalog row 18)

    def on_train_begin(self, args, state, control, **kwargs):
        # one log per optimizer step, and a NaN loss logged as NaN rather than as the running mean (catalog row 1)
        args.logging_nan_inf_filter = False
        args.logging_strategy = "steps"
        args.logging_steps = state.logging_steps = 1
        self.warmup_steps = args.get_warmup_steps(state.max_steps) if state.max_steps else 0

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if autocast_device() is not None:
            self.autocast_steps.append(state.global_step + 1)
        # the Trainer logs grad_norm only when it clips; this is the fallback
        if model is not None:
            norms = [float(p.grad.detach().float().norm()) for p in model.parameters()
                     if p.requires_grad and p.grad is not None]
            self._grad_norm = math.sqrt(sum(n * n for n in norms)) if norms else float("nan")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        grad = logs.get("grad_norm", self._grad_norm)
        self.records.append(StepRecord(step=state.global_step, loss=float(logs["loss"]),
                                       grad_norm=float(grad) if grad is not None else float("nan"),
                                       learning_rate=float(logs.get("learning_rate", float("nan"))),
                                       epoch=logs.get("epoch")))
