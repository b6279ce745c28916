"""The guard and the pre-flight scan stop each injectable catalog failure within one step."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from homework.collate import IGNORE_INDEX
from homework.device import check_precision, resolve_placement
from homework.errors import HomeworkError, PreflightError, TrainingHealthError
from homework.health import (
    HealthGuard,
    StepRecord,
    assert_training_healthy,
    enforce_preflight,
    preflight_scan,
    warmup_problem,
)


def _args(**kw):
    base = dict(logging_steps=1, logging_strategy="steps", logging_nan_inf_filter=True, warmup_steps=0,
                warmup_ratio=None)
    return SimpleNamespace(**{**base, **kw})


def _log(guard, step, **logs):
    guard.on_log(_args(), SimpleNamespace(global_step=step), None, logs=logs)


# ---------------------------------------------------------------- the callback alone (fast)


def test_guard_turns_off_the_nan_filter():
    """Catalog row 1: the logger's filter would replace NaN with a running mean."""
    args = _args(logging_steps=10)
    HealthGuard().on_train_begin(args, SimpleNamespace(max_steps=5), None)
    assert args.logging_nan_inf_filter is False and args.logging_steps == 1


@pytest.mark.parametrize(
    "logs, row, words",
    [
        ({"loss": float("nan"), "grad_norm": 1.0, "learning_rate": 1e-3}, 1, "loss is nan"),
        ({"loss": 2.0, "grad_norm": float("inf"), "learning_rate": 1e-3}, 1, "gradient norm is inf"),
        ({"loss": 0.0, "grad_norm": 1.0, "learning_rate": 1e-3}, 2, "exactly 0.0"),
        ({"loss": 2.0, "grad_norm": 1.0, "learning_rate": 0.0}, 15, "learning rate is still 0"),
    ],
)
def test_guard_stops_at_the_first_bad_step_naming_the_cause(logs, row, words):
    guard = HealthGuard()
    _log(guard, 1, loss=2.5, grad_norm=1.0, learning_rate=1e-3)
    with pytest.raises(TrainingHealthError) as err:
        _log(guard, 2, **logs)
    assert err.value.catalog_row == row and err.value.step == 2
    assert words in str(err.value) and f"catalog row {row}" in str(err.value)


@pytest.mark.parametrize("warmup, total, words", [(10, 5, "never reaches its peak"), (5, 5, "never reaches its peak"),
                                                   (6, 10, "reaches its peak late")])
def test_guard_warns_when_the_warmup_cannot_reach_the_peak(warmup, total, words):
    """Catalog row 15, mild form: a warm-up as long as a short run keeps the learning rate below its peak."""
    with pytest.warns(UserWarning, match=words):
        HealthGuard().on_train_begin(_args(warmup_steps=warmup), SimpleNamespace(max_steps=total), None)
    assert warmup_problem(5, 10) is None and warmup_problem(0, 3) is None


def test_shipped_defaults_reach_the_peak_learning_rate_well_inside_the_run():
    """The default run (no option given) warms up briefly, peaks early and trains most steps near the peak."""
    import statistics

    from transformers import get_scheduler

    from homework.config import TrainConfig
    from homework.data import Dataset

    cfg = TrainConfig()
    steps = cfg.max_steps if cfg.max_steps > 0 else \
        math.ceil(len(Dataset(cfg.train_file)) / (cfg.batch_size * cfg.grad_accum) * cfg.epochs)
    assert warmup_problem(cfg.warmup_steps, steps) is None
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.learning_rate)
    schedule = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=steps)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert max(lrs) == pytest.approx(cfg.learning_rate)
    assert lrs.index(max(lrs)) <= 0.2 * steps
    assert statistics.mean(lrs) > 0.4 * cfg.learning_rate


def test_zero_lr_during_warmup_is_allowed():
    guard = HealthGuard()
    guard._warmup_steps = 3
    _log(guard, 1, loss=2.0, grad_norm=1.0, learning_rate=0.0)
    assert guard.records[0].learning_rate == 0.0


@pytest.mark.parametrize("record", [
    StepRecord(2, float("nan"), 1.0, 1e-3), StepRecord(2, 0.0, 1.0, 1e-3), StepRecord(2, -0.5, 1.0, 1e-3),
    StepRecord(2, 2.0, float("inf"), 1e-3), StepRecord(2, 2.0, 0.0, 1e-3), StepRecord(2, 2.0, 1.0, 0.0),
], ids=["nan-loss", "zero-loss", "negative-loss", "inf-grad", "zero-grad", "zero-lr"])
def test_guard_helper_and_summary_share_one_definition_of_a_healthy_step(record):
    """Issue 14: the live guard, the assertion helper and the plugin's summary judge a step alike (the live
    guard used to let an all-zero gradient through)."""
    from homework.health import step_problem
    from homework.pytest_plugin import summary_line

    row, what = step_problem(record)
    guard = HealthGuard()
    _log(guard, 1, loss=2.5, grad_norm=1.0, learning_rate=1e-3)
    with pytest.raises(TrainingHealthError) as err:
        _log(guard, 2, loss=record.loss, grad_norm=record.grad_norm, learning_rate=record.learning_rate)
    assert err.value.catalog_row == row and what in str(err.value)
    with pytest.raises(AssertionError, match=f"row {row}"):
        assert_training_healthy([record])
    assert summary_line("t::x", [record]).startswith("BAD") and f"catalog row {row}" in summary_line("t::x", [record])
    good = StepRecord(2, 2.0, 1.0, 1e-3)
    assert step_problem(good) is None and summary_line("t::x", [good]).startswith("ok")


def test_token_counts_add_up_over_micro_batches_and_restart_each_step():
    """What metrics.json reports per step: supervised and real tokens summed over the step's micro-batches."""
    guard = HealthGuard()
    guard.note_batch(3, 10)
    guard.note_batch(2, 7)  # gradient accumulation: a second micro-batch of the same optimizer step
    _log(guard, 1, loss=2.0, grad_norm=1.0, learning_rate=1e-3)
    guard.note_batch(4, 9)
    _log(guard, 2, loss=1.5, grad_norm=1.0, learning_rate=1e-3, epoch=0.5)
    first, second = guard.records
    assert (first.supervised_tokens, first.tokens) == (5, 17)
    assert (second.supervised_tokens, second.tokens, second.epoch) == (4, 9, 0.5)
    assert first.as_dict()["tokens_per_s"] is None or first.as_dict()["tokens_per_s"] > 0


def test_batch_with_no_supervised_token_stops_before_the_step():
    with pytest.raises(TrainingHealthError, match="no token in this batch is supervised") as err:
        HealthGuard().note_batch(0, 120)
    assert err.value.catalog_row == 2


def test_assert_training_healthy_messages_name_the_cause():
    good = [StepRecord(1, 2.0, 1.0, 1e-3), StepRecord(2, 1.5, 0.9, 1e-3)]
    assert_training_healthy(good, require_progress=True)
    cases = [([StepRecord(1, float("nan"), 1.0, 1e-3)], "row 1"), ([StepRecord(1, 0.0, 1.0, 1e-3)], "row 2"),
             ([StepRecord(1, 2.0, 0.0, 1e-3)], "row 8"), ([StepRecord(1, 2.0, 1.0, 0.0)], "row 15"),
             ([], "row 15"), ([StepRecord(1, 1.0, 1.0, 1e-3), StepRecord(2, 2.0, 1.0, 1e-3)], "did not fall")]
    for records, words in cases:
        with pytest.raises(AssertionError, match=words):
            assert_training_healthy(records, require_progress=True)


def test_half_precision_is_refused_on_cpu_and_fp32_is_chosen():
    """Catalog row 9."""
    assert resolve_placement("cpu").dtype == torch.float32
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(HomeworkError, match="row 9"):
            check_precision(torch.device("cpu"), dtype)
    check_precision(torch.device("cpu"), torch.float32)
    if not torch.cuda.is_available():
        assert resolve_placement().device.type == "cpu" and resolve_placement().dtype == torch.float32
        with pytest.raises(HomeworkError, match="CUDA is not available"):
            resolve_placement("cuda")


# ---------------------------------------------------------------- pre-flight scan on real tokens


def _rows(hw_train_rows, n=8):
    return [copy.deepcopy(hw_train_rows[i]) for i in range(n)]


def test_preflight_passes_on_clean_data(hw_tokenizer, hw_train_rows):
    findings = preflight_scan(hw_tokenizer, hw_train_rows, questions=hw_train_rows.questions,
                              answers=hw_train_rows.answers)
    assert [f for f in findings if f.severity == "error"] == []


@pytest.mark.parametrize("fault, row, check", [
    ("all_masked", 2, "no supervised token"),
    ("eos_masked", 5, "last supervised token is not EOS"),
    ("shifted", 4, "prompt is not a token prefix"),
    ("rewritten", 6, "supervised labels differ from their input ids"),
])
def test_preflight_refuses_broken_rows_with_a_table(hw_tokenizer, hw_train_rows, fault, row, check):
    """Catalog rows 2, 4, 5, 6: the scan refuses, listing file:row."""
    rows = _rows(hw_train_rows)
    eos = hw_tokenizer.eos_token_id
    target = rows[3]
    if fault == "all_masked":
        target["labels"] = [IGNORE_INDEX] * len(target["labels"])
    elif fault == "eos_masked":
        target["labels"] = [IGNORE_INDEX if t == eos else t for t in target["labels"]]
    elif fault == "shifted":
        first = next(k for k, lab in enumerate(target["labels"]) if lab != IGNORE_INDEX)
        target["labels"][first] = IGNORE_INDEX
    elif fault == "rewritten":  # a collator that rebuilt one answer label: prompt masked, EOS last, still wrong
        first = next(k for k, lab in enumerate(target["labels"]) if lab != IGNORE_INDEX)
        target["labels"][first] = target["input_ids"][first] + 1
    findings = preflight_scan(hw_tokenizer, rows, questions=hw_train_rows.questions[:8], source="data/train.json")
    # each fault fires its own check and no neighbouring one
    assert {f.check for f in findings if f.severity == "error"} == {f"rows whose {check}" if not check.startswith(
        "no") else f"rows with {check}"}
    with pytest.raises(PreflightError) as err:
        enforce_preflight(findings, "data/train.json")
    msg = str(err.value)
    assert "data/train.json:3" in msg
    assert check in msg and f"row {row}" in msg


def test_precision_rules_per_device_class():
    """Catalog row 9 on CUDA too (a rule of the device class; no card needed to check it): bf16 is the
    CUDA path and accepted, fp16 is refused on every device, and the injected fault picks the wrong one."""
    from homework.device import wrong_half_precision

    cuda = torch.device("cuda")
    check_precision(cuda, torch.bfloat16)
    check_precision(cuda, torch.float32)
    with pytest.raises(HomeworkError, match="fp16 on cuda refused"):
        check_precision(cuda, torch.float16)
    assert wrong_half_precision(cuda) == torch.float16
    assert wrong_half_precision(torch.device("cpu")) == torch.bfloat16
    for device in ("cpu", "cuda"):
        with pytest.raises(HomeworkError, match="row 9"):
            check_precision(torch.device(device), wrong_half_precision(torch.device(device)))


def test_preflight_refuses_half_precision_adapters_on_any_device():
    """A model cast whole to half precision has half-precision adapters: refused whatever the device."""
    model = torch.nn.Linear(4, 4)
    rows = [{"input_ids": [5, 6, 2], "labels": [-100, 6, 2]}]
    tok = type("Tok", (), {"eos_token_id": 2})()
    for device, dtype in (("cuda", torch.bfloat16), ("cpu", torch.float32)):
        half = copy.deepcopy(model).to(torch.float16)
        checks = {f.check for f in preflight_scan(tok, rows, model=half, device=device, dtype=dtype)}
        assert "precision: trainable parameters are not fp32" in checks
        assert not {f.check for f in preflight_scan(tok, rows, model=model, device=device, dtype=dtype)}


def test_preflight_refuses_frozen_models_and_half_precision(lora_model, hw_tokenizer, hw_train_rows):
    rows = _rows(hw_train_rows)
    for p in lora_model.parameters():
        p.requires_grad_(False)
    findings = preflight_scan(hw_tokenizer, rows, model=lora_model, device="cpu", dtype=torch.bfloat16)
    checks = {f.check for f in findings if f.severity == "error"}
    assert "no trainable parameters" in checks and "precision" in checks


# ---------------------------------------------------------------- the guard inside real training


@pytest.mark.integration
def test_nan_in_the_adapter_stops_at_step_one(lora_model, train_steps):
    """Catalog row 1 (the seed's symptom): stopped at the first step, with the cause."""
    name, param = next((n, p) for n, p in lora_model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        param.fill_(float("nan"))
    with pytest.raises(TrainingHealthError) as err:
        train_steps(3)
    assert err.value.catalog_row == 1 and err.value.step == 1


@pytest.mark.integration
def test_guard_works_with_a_plain_trainer(lora_model, train_steps):
    with torch.no_grad():
        next(p for n, p in lora_model.named_parameters() if "lora_A" in n).fill_(float("inf"))
    with pytest.raises(TrainingHealthError, match="row 1"):
        train_steps(3, plain_trainer=True)


@pytest.mark.integration
def test_all_masked_batch_stops_before_the_first_update(lora_model, train_steps, hw_train_rows):
    """Catalog row 2: the seed's `loss 0.0` / `grad_norm nan`."""
    rows = _rows(hw_train_rows, 4)
    for r in rows:
        r["labels"] = [IGNORE_INDEX] * len(r["labels"])
    before = {n: p.detach().clone() for n, p in lora_model.named_parameters() if "lora_" in n}
    with pytest.raises(TrainingHealthError, match="no supervised label") as err:  # refused by the collator
        train_steps(3, dataset=rows, batch_size=4)
    assert err.value.catalog_row == 2
    assert all(torch.equal(before[n], p) for n, p in lora_model.named_parameters() if "lora_" in n)


@pytest.mark.integration
def test_zero_learning_rate_stops_at_step_one(train_steps):
    """Catalog row 15."""
    with pytest.raises(TrainingHealthError, match="learning rate is still 0") as err:
        train_steps(3, learning_rate=0.0)
    assert err.value.step == 1


@pytest.mark.integration
def test_records_hold_tokens_and_timing(train_steps):
    records = train_steps(2, learning_rate=1e-3)
    for r in records:
        assert r.supervised_tokens > 0 and r.tokens > r.supervised_tokens
        assert r.step_time_s > 0 and math.isfinite(r.tokens_per_s)


def test_preflight_warns_when_the_text_merges_across_the_boundary(hw_tokenizer, hw_train_rows):
    """Catalog row 4: an answer whose first characters merge with the prompt's last token is flagged."""
    rows = _rows(hw_train_rows, 2)
    answers = ["\n\n<answer>1</answer>", hw_train_rows.answers[1]]
    findings = preflight_scan(hw_tokenizer, rows, questions=hw_train_rows.questions[:2], answers=answers)
    warnings_ = [f for f in findings if f.severity == "warning"]
    assert len(warnings_) == 1 and warnings_[0].rows == [0] and "boundary" in warnings_[0].check
    assert enforce_preflight(findings) == warnings_
