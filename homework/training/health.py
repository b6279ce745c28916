"""The training-health guard (a Trainer callback) and the pre-flight scan.

The guard records every optimizer step and stops the run at the first sign that it is going
nowhere, raising TrainingHealthError with the probable cause from the failure catalog. It works
with a plain `transformers.Trainer` too: `Trainer(..., callbacks=[HealthGuard()])`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from sft_contract.catalog import explain
from sft_contract.recorder import autocast_device
from sft_contract.rows import row_problems
from sft_contract.steps import StepRecord, assert_steps_healthy, step_problem

from ..runtime import distributed, report
from ..runtime.device import check_precision
from ..runtime.errors import HomeworkError, PreflightError, TrainingHealthError
from ..text.prompt import build_prompt, encode

# StepRecord and step_problem (the one definition of a healthy step) live in the SFT contract kit, which
# judges any project's steps by them; the guard, the scan's callers and the tests import them from here too.
__all__ = ["Finding", "HealthGuard", "StepRecord", "assert_training_healthy", "enforce_preflight", "format_findings",
           "preflight_scan", "step_problem", "trainable_grad_norm", "warmup_problem"]


def trainable_grad_norm(model) -> float:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not norms:
        return float("nan")
    return float(torch.linalg.vector_norm(torch.stack(norms)))


class HealthGuard(TrainerCallback):
    """Record per-step loss/grad-norm/lr and stop at the first unhealthy step."""

    def __init__(self, *, stop: bool = True, verbose_epochs: bool = False):
        self.stop = stop
        self.verbose_epochs = verbose_epochs
        self.records: list[StepRecord] = []
        self._pending_tokens = [0, 0]  # (supervised, real) in the current optimizer step
        self._grad_norm = None
        self._step_start = None
        self._warmup_steps = 0
        self._step: int | None = None  # the optimizer step being computed
        self._problem: TrainingHealthError | None = None  # found by this process, not yet agreed on

    # Our trainer reports token counts per micro-batch; a plain Trainer leaves them None.
    def note_batch(self, supervised: int, real: int, unsupervised_rows: int = 0) -> None:
        self._pending_tokens[0] += supervised
        self._pending_tokens[1] += real
        if not self.stop:
            return
        if supervised == 0:
            what = ("no token in this batch is supervised (every label is -100): the loss would be 0/0. "
                    "Run the pre-flight scan (python -m homework.sft doctor) to list the rows, usually questions "
                    "longer than max_length or labels masked by pad id")
        elif unsupervised_rows:
            what = (f"{unsupervised_rows} row(s) of this batch have no supervised label (every label is -100) and "
                    "train nothing. Run the pre-flight scan (python -m homework.sft doctor) to list them")
        else:
            return
        problem = self._error(2, what, step=self._step)
        if distributed.world_size() == 1:
            raise problem
        # Several processes: this one stopping alone would leave the others in the gradient all-reduce.
        # Every process agrees before the optimizer step (on_pre_optimizer_step) and all stop there.
        self._problem = self._problem or problem

    def _error(self, row: int, what: str, step: int | None) -> TrainingHealthError:
        at = f"step {step}: " if step is not None else ""
        return TrainingHealthError(f"training stopped at {at}{what}.\n{explain(row)}", catalog_row=row, step=step)

    def _fail(self, row: int, what: str, step: int | None) -> None:
        if self.stop:
            raise self._error(row, what, step)

    def on_train_begin(self, args, state, control, **kwargs):
        # The default filter replaces a NaN loss in the logs with the running mean (catalog row 1).
        args.logging_nan_inf_filter = False
        if args.logging_steps != 1 or args.logging_strategy != "steps":
            args.logging_strategy, args.logging_steps = "steps", 1
        # The Trainer has copied the interval into its state before this call; on_step_end asks for a log
        # at every step as well, so no setting or version of the Trainer leaves a step unjudged.
        if getattr(state, "logging_steps", None) is not None:
            state.logging_steps = 1
        self._warmup_steps = int(getattr(args, "warmup_steps", 0) or 0)
        ratio = getattr(args, "warmup_ratio", None)
        if ratio and state.max_steps:
            self._warmup_steps = max(self._warmup_steps, math.ceil(ratio * state.max_steps))
        problem = warmup_problem(self._warmup_steps, state.max_steps)
        if problem:
            warnings.warn(f"{problem}. " + explain(15), stacklevel=2)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = time.perf_counter()
        self._step = state.global_step + 1

    def on_step_end(self, args, state, control, **kwargs):
        # Callbacks run after the Trainer's own flow callback, which may have decided not to log this step.
        control.should_log = True

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        problem, self._problem = self._problem, None
        under = autocast_device()
        if problem is None and self.stop and under is not None:
            # the Trainer's own autocast (bf16=True) has closed by now: this one wraps the whole loop
            problem = self._error(18, f"the optimizer step runs under {under} autocast, which wraps the backward and "
                                      "the update as well as the forward", step=state.global_step + 1)
        if model is not None:
            # after the gradient all-reduce: the same norm on every process
            self._grad_norm = trainable_grad_norm(model)
            if problem is None and self.stop and not math.isfinite(self._grad_norm):
                problem = self._error(1, f"the gradient norm is {self._grad_norm}", step=state.global_step + 1)
        if distributed.world_size() > 1:
            # the step's token counts over every process, and one verdict for all of them
            self._pending_tokens = [int(v) for v in distributed.sum_across_ranks(self._pending_tokens)]
            problem = distributed.agree_on_failure(problem)
        if problem is not None:
            raise problem

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        step = state.global_step
        loss = float(logs["loss"])
        grad = logs.get("grad_norm", self._grad_norm)
        grad = float(grad) if grad is not None else float("nan")
        lr = float(logs.get("learning_rate", float("nan")))
        sup, real = self._pending_tokens
        elapsed = time.perf_counter() - self._step_start if self._step_start else None
        rec = StepRecord(step, loss, grad, lr, sup or None, real or None, elapsed, logs.get("epoch"))
        self.records.append(rec)
        self._pending_tokens = [0, 0]
        problem = step_problem(rec, self._warmup_steps)
        if problem:
            self._fail(*problem, step)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.verbose_epochs and self.records:
            epoch = round(state.epoch or 0)
            losses = [r.loss for r in self.records if r.epoch is None or r.epoch > epoch - 1]
            if losses:
                report.info(f"epoch {epoch}: mean loss {sum(losses) / len(losses):.4f} over {len(losses)} steps")


def warmup_problem(warmup_steps: int, total_steps: int | None) -> str | None:
    """Why a schedule cannot reach its peak learning rate well inside the run, or None.

    Peak by the middle of the run at the latest: a warm-up longer than that spends most of a short run
    at a fraction of the learning rate (catalog row 15, in its mild form)."""
    if not total_steps or total_steps <= 0 or warmup_steps <= 0:
        return None
    if warmup_steps >= total_steps:
        return f"the warm-up ({warmup_steps} steps) is not shorter than the run ({total_steps} steps): the learning " \
               "rate never reaches its peak"
    if warmup_steps > total_steps // 2:
        return f"the warm-up ({warmup_steps} steps) takes more than half of the run ({total_steps} steps): the " \
               "learning rate reaches its peak late"
    return None


# --------------------------------------------------------------------------- pre-flight


@dataclass
class Finding:
    severity: str  # "error" | "warning"
    check: str
    detail: str
    rows: list[int]


def _row_label(source, idx: int) -> str:
    return f"{source}:{idx}" if source else str(idx)


# The kit's row checks (sft_contract.rows, shared with the contract's check_row) -> this scan's wording.
_ROW_CHECKS = {
    "length_mismatch": "rows whose input ids and labels differ in length",
    "nothing_supervised": "rows with no supervised token",
    "eos_not_supervised": "rows whose last supervised token is not EOS",
    "answer_truncated": "rows whose answer was cut off",
    "labels_rewritten": "rows whose supervised labels differ from their input ids",
    "prompt_not_prefix": "rows whose prompt is not a token prefix",
    "answer_start_unsupervised": "rows whose prompt is not a token prefix",
    "prompt_supervised": "rows that supervise their prompt",
    "not_one_span": "rows whose supervised tokens are not one span",
    "answer_mismatch": "rows whose supervised tokens are not their answer",
}


def preflight_scan(tokenizer, tokenized, model=None, device=None, dtype=None, source: str | None = None,
                   questions: list[str] | None = None, answers: list[str] | None = None) -> list[Finding]:
    """Scan every tokenized row (and the model setup) for the silent failures in the catalog."""
    findings: list[Finding] = []
    failing: dict[tuple[str, int], list[int]] = {}  # (the kit's check, catalog row) -> rows
    merged = []
    for i in range(len(tokenized)):
        row = tokenized[i]
        ids, labels = list(row["input_ids"]), list(row["labels"])
        prompt = encode(tokenizer, build_prompt(questions[i])) if questions is not None else None
        for problem in row_problems(tokenizer, ids, labels, prompt_ids=prompt,
                                    answer=answers[i] if answers is not None else None):
            failing.setdefault((problem.check, problem.row), []).append(i)
        if prompt is not None and answers is not None and \
                encode(tokenizer, build_prompt(questions[i]) + answers[i])[: len(prompt)] != prompt:
            merged.append(i)
    order = list(_ROW_CHECKS)
    for (check, row), rows in sorted(failing.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        findings.append(Finding("error", _ROW_CHECKS[check], explain(row), rows))
    if merged:
        findings.append(Finding("warning", "rows whose text tokenizes differently across the prompt/answer "
                                "boundary (training uses the separately encoded prompt, as inference does)",
                                explain(4), merged))
    if device is not None and dtype is not None:
        try:
            check_precision(torch.device(device), dtype)
        except HomeworkError as exc:
            findings.append(Finding("error", "precision", str(exc), []))
    if model is not None:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if trainable == 0:
            findings.append(Finding("error", "no trainable parameters", explain(15), []))
        lora = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
        if hasattr(model, "peft_config") and not lora:
            findings.append(Finding("error", "LoRA targets matched no module", explain(15), []))
        # on every device: the optimizer's small updates vanish in a half-precision master weight
        # (peft keeps adapters in fp32 over a bf16 base; a model cast whole to half loses that)
        half = [n for n, p in model.named_parameters() if p.requires_grad and p.dtype != torch.float32]
        if half:
            findings.append(Finding("error", "precision: trainable parameters are not fp32",
                                    f"{len(half)} of them, e.g. {half[0]}. " + explain(9), []))
    return findings


def format_findings(findings: list[Finding], source: str | None = None, limit: int = 8) -> str:
    lines = []
    for f in findings:
        rows = ", ".join(_row_label(source, r) for r in f.rows[:limit])
        more = f" (+{len(f.rows) - limit} more)" if len(f.rows) > limit else ""
        lines.append(f"  {f.severity.upper():7} {f.check}" + (f" [{len(f.rows)} rows: {rows}{more}]" if f.rows else ""))
        lines.append(f"          {f.detail}")
    return "\n".join(lines)


def enforce_preflight(findings: list[Finding], source: str | None = None) -> list[Finding]:
    """Raise PreflightError on any error finding; return the warnings."""
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise PreflightError("pre-flight scan refused to start training:\n" + format_findings(errors, source))
    return [f for f in findings if f.severity == "warning"]


def assert_training_healthy(records, *, require_progress: bool = False) -> None:
    """Assertion helper for tests: every step finite, loss > 0, lr > 0 (and optionally the loss fell).
    `records`: StepRecords or metrics.json rows. The kit's helper, pointing at this project's catalog command."""
    recs = [r if isinstance(r, StepRecord) else StepRecord(**{k: v for k, v in r.items() if k != "tokens_per_s"})
            for r in records]
    assert_steps_healthy(recs, require_progress=require_progress, explain=explain)
