"""Optimizer-step records and the one definition of a healthy step.

`StepRecord` is what a recorder (sft_contract.recorder, or homework's HealthGuard) keeps per optimizer
step; `step_problem` judges one. The contract's first-steps check, the plugin's "training health"
summary, the `sft_training_health` fixture and homework's live guard all judge a step by it.
Standard library only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from .catalog import explain as _explain


@dataclass
class StepRecord:
    step: int
    loss: float
    grad_norm: float
    learning_rate: float
    supervised_tokens: int | None = None
    tokens: int | None = None
    step_time_s: float | None = None
    epoch: float | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if self.tokens is None or not self.step_time_s:
            return None
        return self.tokens / self.step_time_s

    def as_dict(self) -> dict:
        d = asdict(self)
        d["tokens_per_s"] = self.tokens_per_s
        return d


def step_problem(record: StepRecord, warmup_steps: int = 0) -> tuple[int, str] | None:
    """(failure catalog row, what is wrong) for an unhealthy optimizer step, or None: a finite loss above 0,
    a finite nonzero gradient norm, and a learning rate above 0 once the warm-up is over."""
    if not math.isfinite(record.loss):
        return 1, f"the loss is {record.loss}"
    if record.loss == 0.0:
        return 2, "the loss is exactly 0.0, which a real cross-entropy never is (nothing supervised, or NaN masked)"
    if record.loss < 0:
        return 2, f"the loss is {record.loss}: a cross-entropy is never negative"
    if not math.isfinite(record.grad_norm):
        return 1, f"the gradient norm is {record.grad_norm}"
    if record.grad_norm == 0:
        return 8, "the gradient norm is exactly 0: no trainable parameter received a gradient"
    if not record.learning_rate > 0 and record.step > warmup_steps:
        return 15, f"the learning rate is still {record.learning_rate} after {warmup_steps} warmup steps"
    return None


def assert_steps_healthy(records: list[StepRecord], *, require_progress: bool = False,
                         explain: Callable[[int], str] = _explain) -> None:
    """AssertionError naming the cause and catalog row at the first unhealthy step (and, with
    require_progress, when the loss did not fall from the first step to the last)."""
    if not records:
        raise AssertionError("no training steps were recorded; " + explain(15))
    for r in records:
        problem = step_problem(r)
        if problem:
            row, what = problem
            raise AssertionError(f"step {r.step}: {what}. " + explain(row))
    if require_progress and len(records) > 1 and not records[-1].loss < records[0].loss:
        raise AssertionError(f"loss did not fall: {records[0].loss:.4f} -> {records[-1].loss:.4f}. " + explain(15))


# Whoever wants to see the step records of the checks that run (the plugin, for its summary) listens here.
_listeners: list[list[StepRecord]] = []


@contextlib.contextmanager
def listening() -> Iterator[list[StepRecord]]:
    """Collect the step records that checks publish while the block runs."""
    got: list[StepRecord] = []
    _listeners.append(got)
    try:
        yield got
    finally:
        _listeners.remove(got)


def publish(records: list[StepRecord]) -> None:
    """Hand `records` to the innermost listener (a pytest run inside a test listens inside its parent's)."""
    if _listeners:
        _listeners[-1].extend(records)
