"""The guard and the pre-flight scan stop each injectable catalog failure within one step."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from homework.runtime.device import check_precision, resolve_placement
from homework.runtime.errors import HomeworkError, PreflightError, TrainingHealthError
from homework.training.collate import IGNORE_INDEX
from homework.training.health import (
    Finding,
    HealthGuard,
    StepRecord,
    assert_training_healthy,
    enforce_preflight,
    preflight_scan,
    warmup_problem,
)
from sft_contract.catalog import explain


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

    from homework.data import Dataset
    from homework.training.config import TrainConfig

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
    from homework.training.health import step_problem
    from sft_contract.plugin import summary_line

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


def _tiny_model(grad: float | None):
    model = torch.nn.Linear(2, 1, bias=False)
    if grad is not None:
        model.weight.grad = torch.full_like(model.weight, grad)
    frozen = torch.nn.Parameter(torch.full((3,), 100.0), requires_grad=False)
    frozen.grad = torch.full((3,), 100.0)  # a frozen parameter's stale gradient must not count
    model.register_parameter("frozen", frozen)
    return model


def test_the_gradient_norm_is_taken_over_trainable_parameters_before_the_optimizer_step():
    guard = HealthGuard()
    guard.on_step_begin(_args(), SimpleNamespace(global_step=0), None)
    guard.on_pre_optimizer_step(_args(), SimpleNamespace(global_step=0), None, model=_tiny_model(3.0))
    assert guard._grad_norm == pytest.approx(math.sqrt(2 * 3.0 ** 2))
    _log(guard, 1, loss=2.0, learning_rate=1e-3)  # a plain Trainer's log without grad_norm: the guard's own
    assert guard.records[0].grad_norm == pytest.approx(math.sqrt(18))
    no_grads = HealthGuard(stop=False)
    no_grads.on_pre_optimizer_step(_args(), SimpleNamespace(global_step=0), None, model=_tiny_model(None))
    assert math.isnan(no_grads._grad_norm)  # nothing received a gradient: no norm to report


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gradient_stops_before_the_optimizer_step_naming_the_step(bad):
    guard = HealthGuard()
    with pytest.raises(TrainingHealthError, match=f"step 5: the gradient norm is {bad}") as err:
        guard.on_pre_optimizer_step(_args(), SimpleNamespace(global_step=4), None, model=_tiny_model(bad))
    assert err.value.catalog_row == 1 and err.value.step == 5
    HealthGuard(stop=False).on_pre_optimizer_step(_args(), SimpleNamespace(global_step=4), None, model=_tiny_model(bad))


def test_a_batch_with_an_unsupervised_row_stops_naming_the_step():
    guard = HealthGuard()
    guard.on_step_begin(_args(), SimpleNamespace(global_step=6), None)
    with pytest.raises(TrainingHealthError, match="step 7: 2 row\\(s\\) of this batch have no supervised label") as err:
        guard.note_batch(10, 40, unsupervised_rows=2)
    assert err.value.catalog_row == 2 and err.value.step == 7
    guard.note_batch(10, 40, unsupervised_rows=0)  # a healthy batch passes
    HealthGuard(stop=False).note_batch(0, 40)  # stop=False records only


def test_epoch_summaries_average_that_epochs_losses(capsys):
    guard = HealthGuard(verbose_epochs=True)
    for step, (loss, epoch) in enumerate([(4.0, 0.5), (2.0, 1.0), (1.0, 1.5), (0.5, 2.0)], start=1):
        _log(guard, step, loss=loss, grad_norm=1.0, learning_rate=1e-3, epoch=epoch)
        if epoch in (1.0, 2.0):
            guard.on_epoch_end(_args(), SimpleNamespace(epoch=epoch), None)
    out = capsys.readouterr().out.splitlines()
    assert out == ["[homework] epoch 1: mean loss 3.0000 over 2 steps", "[homework] epoch 2: mean loss 0.7500 over 2 steps"]
    quiet = HealthGuard()  # the default: no epoch lines (the CLI turns them on)
    _log(quiet, 1, loss=1.0, grad_norm=1.0, learning_rate=1e-3, epoch=1.0)
    quiet.on_epoch_end(_args(), SimpleNamespace(epoch=1.0), None)
    assert capsys.readouterr().out == ""
    unknown = HealthGuard(verbose_epochs=True)
    _log(unknown, 1, loss=1.0, grad_norm=1.0, learning_rate=1e-3)
    unknown.on_epoch_end(_args(), SimpleNamespace(epoch=None), None)
    assert capsys.readouterr().out == "[homework] epoch 0: mean loss 1.0000 over 1 steps\n"


def test_assert_training_healthy_messages_name_the_cause():
    good = [StepRecord(1, 2.0, 1.0, 1e-3), StepRecord(2, 1.5, 0.9, 1e-3)]
    assert_training_healthy(good, require_progress=True)
    cases = [([StepRecord(1, float("nan"), 1.0, 1e-3)], "row 1"), ([StepRecord(1, 0.0, 1.0, 1e-3)], "row 2"),
             ([StepRecord(1, 2.0, 0.0, 1e-3)], "row 8"), ([StepRecord(1, 2.0, 1.0, 0.0)], "row 15"),
             ([], "row 15"), ([StepRecord(1, 1.0, 1.0, 1e-3), StepRecord(2, 2.0, 1.0, 1e-3)], "did not fall")]
    for records, words in cases:
        with pytest.raises(AssertionError, match=words):
            assert_training_healthy(records, require_progress=True)


def test_half_precision_is_refused_on_cpu_and_fp32_is_chosen(cpu_without_bf16):
    """Catalog row 9, on a CPU without native bf16 (tests/runtime/test_precision.py has the CPUs with it)."""
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


def test_precision_rules_per_device_class(cpu_without_bf16):
    """Catalog row 9 on CUDA too (a rule of the device class; no card needed to check it): bf16 is the
    CUDA path and accepted, fp16 is refused on every device, and the injected fault picks the wrong one."""
    from homework.runtime.device import wrong_half_precision

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


def test_preflight_refuses_frozen_models_and_half_precision(lora_model, hw_tokenizer, hw_train_rows, cpu_without_bf16):
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
    from homework.text.tokenization import tokenize_row

    rows = _rows(hw_train_rows, 2)
    answers = ["\n\n<answer>1</answer>", hw_train_rows.answers[1]]
    rows[0] = tokenize_row(hw_tokenizer, hw_train_rows.questions[0], answers[0], pad=False).as_dict()
    findings = preflight_scan(hw_tokenizer, rows, questions=hw_train_rows.questions[:2], answers=answers)
    warnings_ = [f for f in findings if f.severity == "warning"]
    assert warnings_ == [Finding("warning", "rows whose text tokenizes differently across the prompt/answer boundary "
                                 "(training uses the separately encoded prompt, as inference does)", explain(4), [0])]
    assert enforce_preflight(findings) == warnings_


# ---------------------------------------------------------------- exact wording and boundaries (fast)


def test_findings_render_as_a_table_naming_rows_with_their_file():
    from homework.training.health import Finding, format_findings

    findings = [Finding("error", "rows with no supervised token", "why", list(range(10))),
                Finding("warning", "precision", "detail only", [])]
    assert format_findings(findings, "data/train.json").splitlines() == [
        "  ERROR   rows with no supervised token [10 rows: data/train.json:0, data/train.json:1, data/train.json:2, "
        "data/train.json:3, data/train.json:4, data/train.json:5, data/train.json:6, data/train.json:7 (+2 more)]",
        "          why",
        "  WARNING precision",
        "          detail only",
    ]
    assert format_findings([Finding("error", "c", "d", [3, 4])], None, limit=2).splitlines()[0] == "  ERROR   c [2 rows: 3, 4]"
    with pytest.raises(PreflightError) as err:
        enforce_preflight(findings, "data/train.json")
    assert str(err.value).startswith("pre-flight scan refused to start training:\n  ERROR   rows with no supervised")
    assert "WARNING" not in str(err.value)
    assert enforce_preflight([findings[1]]) == [findings[1]]


@pytest.mark.parametrize("record, expected", [
    (StepRecord(1, 0.0, 1.0, 1e-3), (2, "the loss is exactly 0.0, which a real cross-entropy never is (nothing "
                                        "supervised, or NaN masked)")),
    (StepRecord(1, -0.5, 1.0, 1e-3), (2, "the loss is -0.5: a cross-entropy is never negative")),
    (StepRecord(1, 0.5, 0.0, 1e-3), (8, "the gradient norm is exactly 0: no trainable parameter received a gradient")),
    (StepRecord(1, 0.5, float("inf"), 1e-3), (1, "the gradient norm is inf")),
    (StepRecord(1, 0.5, 1.0, 1e-3), None),  # a small loss is healthy
    (StepRecord(1, 2.0, 1.0, 0.0), (15, "the learning rate is still 0.0 after 0 warmup steps")),
])
def test_each_unhealthy_step_has_its_catalog_row_and_words(record, expected):
    from homework.training.health import step_problem

    assert step_problem(record) == expected


def test_a_zero_learning_rate_is_fine_up_to_the_last_warmup_step():
    from homework.training.health import step_problem

    assert step_problem(StepRecord(3, 2.0, 1.0, 0.0), warmup_steps=3) is None
    assert step_problem(StepRecord(4, 2.0, 1.0, 0.0), warmup_steps=3)[0] == 15


@pytest.mark.parametrize("warmup, total, expected", [
    (0, 10, None), (1, None, None), (1, 0, None), (1, 1, "the warm-up (1 steps) is not shorter than the run (1 steps): "
                                                    "the learning rate never reaches its peak"),
    (5, 10, None), (6, 10, "the warm-up (6 steps) takes more than half of the run (10 steps): the learning rate "
                           "reaches its peak late"),
    (1, 2, None), (1, 3, None), (5, -1, None),  # -1: no step limit (the run is set in epochs)
])
def test_warmup_problem_wording_and_boundaries(warmup, total, expected):
    assert warmup_problem(warmup, total) == expected


def test_the_guard_reads_the_schedule_and_forces_a_log_every_step():
    args = _args(logging_steps=50, logging_strategy="epoch", warmup_steps=0, warmup_ratio=0.7)
    guard = HealthGuard()
    with pytest.warns(UserWarning, match=r"warm-up \(4 steps\) takes more than half of the run \(5 steps\)"):
        guard.on_train_begin(args, SimpleNamespace(max_steps=5), None)
    assert (args.logging_strategy, args.logging_steps) == ("steps", 1)
    assert guard._warmup_steps == 4  # ceil(0.7 * 5)
    every_other = _args(logging_steps=2, logging_strategy="steps")
    HealthGuard().on_train_begin(every_other, SimpleNamespace(max_steps=5), None)
    assert every_other.logging_steps == 1
    every_epoch = _args(logging_steps=1, logging_strategy="epoch")
    HealthGuard().on_train_begin(every_epoch, SimpleNamespace(max_steps=5), None)
    assert every_epoch.logging_strategy == "steps"
    bare = SimpleNamespace(logging_steps=1, logging_strategy="steps", logging_nan_inf_filter=True)  # no warm-up fields
    guard.on_train_begin(bare, SimpleNamespace(max_steps=5), None)
    assert guard._warmup_steps == 0
    larger = HealthGuard()
    larger.on_train_begin(_args(warmup_steps=3, warmup_ratio=0.1), SimpleNamespace(max_steps=100), None)
    assert larger._warmup_steps == 10


def test_a_record_without_logged_grad_norm_or_lr_says_nan_and_times_the_step():
    guard = HealthGuard(stop=False)
    guard.on_step_begin(_args(), SimpleNamespace(global_step=0), None)
    _log(guard, 1, loss=2.0)
    rec = guard.records[0]
    assert math.isnan(rec.grad_norm) and math.isnan(rec.learning_rate)
    assert 0 < rec.step_time_s < 60 and rec.supervised_tokens is None and rec.tokens is None
    timed = StepRecord(1, 2.0, 1.0, 1e-3, supervised_tokens=10, tokens=40, step_time_s=2.0)
    assert timed.as_dict()["tokens_per_s"] == 20.0 and timed.tokens_per_s == 20.0


def test_a_problem_found_outside_a_step_names_no_step():
    with pytest.raises(TrainingHealthError) as err:
        HealthGuard().note_batch(0, 10)
    assert str(err.value) == (
        "training stopped at no token in this batch is supervised (every label is -100): the loss would be 0/0. "
        "Run the pre-flight scan (python -m homework.sft doctor) to list the rows, usually questions longer than "
        "max_length or labels masked by pad id.\n" + explain(2))
    with pytest.raises(TrainingHealthError) as err:
        HealthGuard().note_batch(3, 10, unsupervised_rows=1)
    assert str(err.value) == (
        "training stopped at 1 row(s) of this batch have no supervised label (every label is -100) and train "
        "nothing. Run the pre-flight scan (python -m homework.sft doctor) to list them.\n" + explain(2))


def test_the_assertion_helper_judges_progress_first_to_last_only_when_asked():
    rising = [StepRecord(1, 1.0, 1.0, 1e-3), StepRecord(2, 2.0, 1.0, 1e-3), StepRecord(3, 0.5, 1.0, 1e-3)]
    assert_training_healthy(rising[:2])  # by default a rising loss is still healthy
    assert_training_healthy(rising, require_progress=True)  # 1.0 -> 0.5, whatever happened in between
    assert_training_healthy(rising[:1], require_progress=True)  # one step: nothing to compare
    flat = [StepRecord(1, 1.0, 1.0, 1e-3), StepRecord(2, 3.0, 1.0, 1e-3), StepRecord(3, 1.0, 1.0, 1e-3)]
    with pytest.raises(AssertionError) as err:
        assert_training_healthy(flat, require_progress=True)
    assert str(err.value) == "loss did not fall: 1.0000 -> 1.0000. " + explain(15)
    with pytest.raises(AssertionError) as err:
        assert_training_healthy([])
    assert str(err.value) == "no training steps were recorded; " + explain(15)


def test_the_assertion_helper_reads_metrics_json_rows():
    rows = [StepRecord(1, 2.0, 1.0, 1e-3, 10, 40, 2.0).as_dict(), StepRecord(2, 1.0, 1.0, 1e-3, 10, 40, 2.0).as_dict()]
    assert_training_healthy(rows, require_progress=True)
    rows[1]["loss"] = 0.0
    with pytest.raises(AssertionError, match="step 2: the loss is exactly 0.0"):
        assert_training_healthy(rows)


def test_with_several_processes_a_local_problem_waits_for_one_verdict(monkeypatch):
    """Rank-aware guard: a batch problem is held until every process agrees before the optimizer step (one
    stopping alone would leave the others in the all-reduce); token counts become the sum over processes."""
    from homework.runtime import distributed

    verdicts = []
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "sum_across_ranks", lambda values: [v * 2 for v in values])
    monkeypatch.setattr(distributed, "agree_on_failure", lambda local: verdicts.append(local) or local)
    guard = HealthGuard()
    state = SimpleNamespace(global_step=0)
    guard.on_step_begin(_args(), state, None)
    guard.note_batch(0, 10)  # held, not raised
    guard.note_batch(5, 20)
    with pytest.raises(TrainingHealthError, match="step 1: no token in this batch"):
        guard.on_pre_optimizer_step(_args(), state, None, model=_tiny_model(1.0))
    assert guard._pending_tokens == [10, 60] and isinstance(verdicts[0], TrainingHealthError)

    healthy = HealthGuard()
    healthy.note_batch(5, 20)
    healthy.on_pre_optimizer_step(_args(), state, None, model=_tiny_model(1.0))  # nothing anywhere: no stop
    assert verdicts[1] is None and healthy._pending_tokens == [10, 40]

    other = TrainingHealthError("on rank 1 of 2: training stopped at step 1: ...", catalog_row=2, step=1)
    monkeypatch.setattr(distributed, "agree_on_failure", lambda local: other)
    with pytest.raises(TrainingHealthError, match="on rank 1 of 2"):  # another process's problem stops this one
        HealthGuard().on_pre_optimizer_step(_args(), state, None, model=_tiny_model(1.0))


class _Tok:
    eos_token_id = 2


def _row(ids, labels):
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def test_the_scan_looks_at_every_row_after_a_broken_one():
    rows = [_row([5, 6, 2], [-100, -100, -100]),  # nothing supervised
            _row([5, 6, 2], [-100, 6, -100]),  # last supervised label is not EOS
            _row([5, 6, 2], [-100, 7, 2])]  # a supervised label differs from its input id
    checks = {f.check: f.rows for f in preflight_scan(_Tok(), rows)}
    assert checks == {"rows with no supervised token": [0], "rows whose last supervised token is not EOS": [1],
                      "rows whose supervised labels differ from their input ids": [2]}


class _Adapted(torch.nn.Module):
    """Stands in for a PeftModel: `peft_config`, and LoRA modules only if asked."""

    def __init__(self, lora: bool, dtype=torch.float32, trainable: bool = True):
        super().__init__()
        self.peft_config = {"default": None}
        self.base = torch.nn.Linear(2, 2, dtype=dtype)
        if lora:
            self.lora_A = torch.nn.Linear(2, 1, bias=False, dtype=dtype)
        for p in self.parameters():
            p.requires_grad_(trainable)


def test_model_findings_name_the_cause_exactly(cpu_without_bf16):
    row = [_row([5, 2], [-100, 2])]
    assert preflight_scan(_Tok(), row, model=_Adapted(lora=True)) == []
    assert preflight_scan(_Tok(), row, model=_Adapted(lora=False)) == [
        Finding("error", "LoRA targets matched no module", explain(15), [])]
    assert preflight_scan(_Tok(), row, model=_Adapted(lora=True, trainable=False)) == [
        Finding("error", "no trainable parameters", explain(15), [])]
    assert preflight_scan(_Tok(), row, model=_Adapted(lora=True, dtype=torch.bfloat16)) == [
        Finding("error", "precision: trainable parameters are not fp32",
                "3 of them, e.g. base.weight. " + explain(9), [])]
    with pytest.raises(HomeworkError) as refused:
        check_precision(torch.device("cpu"), torch.bfloat16)
    assert preflight_scan(_Tok(), row, device="cpu", dtype=torch.bfloat16) == [
        Finding("error", "precision", str(refused.value), [])]
    assert preflight_scan(_Tok(), row, dtype=torch.bfloat16) == []  # no device named: nothing to judge


def test_a_warmup_as_long_as_the_run_warns_pointing_at_catalog_row_15():
    args = SimpleNamespace(logging_nan_inf_filter=True, logging_steps=1, logging_strategy="steps", warmup_steps=5,
                           warmup_ratio=None)
    with pytest.warns(UserWarning) as caught:
        HealthGuard().on_train_begin(args, SimpleNamespace(max_steps=3), None)
    (message,) = [str(w.message) for w in caught]
    assert message.endswith(". " + explain(15)) and "not shorter than the run" in message


def test_preflight_names_a_row_cut_inside_its_answer(hw_tokenizer, hw_train_rows):
    """With the answers given, a row that stops inside its answer is reported as cut (catalog row 3), not only
    as a row without a final EOS."""
    row = _rows(hw_train_rows, 1)[0]
    keep = len(row["input_ids"]) - 3  # EOS and the answer's last two tokens gone
    row = {k: list(v)[:keep] for k, v in row.items()}
    findings = preflight_scan(hw_tokenizer, [row], questions=hw_train_rows.questions[:1],
                              answers=hw_train_rows.answers[:1])
    assert [f.check for f in findings if f.severity == "error"] == ["rows whose answer was cut off"]


def test_preflight_lists_its_findings_in_the_catalogs_order_not_alphabetically(hw_tokenizer, hw_train_rows):
    rows = _rows(hw_train_rows, 2)
    rows[0]["labels"] = [IGNORE_INDEX] * len(rows[0]["labels"])  # nothing supervised
    rows[1] = {k: list(v)[:-1] for k, v in rows[1].items()}  # the EOS gone
    findings = preflight_scan(hw_tokenizer, rows)
    assert [f.check for f in findings if f.severity == "error"] == [
        "rows with no supervised token", "rows whose last supervised token is not EOS"]


# ---------------------------------------------------------------- the guard on a plain Trainer, any logging setting


class _Sabotaged(torch.nn.Module):
    """A causal LM whose loss turns bad from the second optimizer step on (forward calls count micro-batches)."""

    def __init__(self, model, bad):
        super().__init__()
        self.model, self.bad, self.calls = model, bad, 0

    def forward(self, input_ids, labels, attention_mask=None):
        out = self.model(input_ids=input_ids, labels=labels, attention_mask=attention_mask)
        self.calls += 1
        if self.calls > 1 and self.bad is not None:
            out.loss = out.loss * self.bad
        return out


@pytest.mark.parametrize("fault", ["zero loss", "nan loss", "zero lr"])
def test_a_plain_trainer_logging_every_5_steps_is_stopped_at_step_2(tmp_path, fault):
    """The README's promise for anyone's Trainer: `callbacks=[HealthGuard()]` judges every step, whatever
    logging interval the arguments ask for (the Trainer copies it into its state before the guard starts)."""
    from transformers import Trainer, TrainingArguments

    from tests.conftest import random_llama

    model = _Sabotaged(random_llama(), {"zero loss": 0.0, "nan loss": float("nan"), "zero lr": None}[fault])
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]} for _ in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=1, max_steps=6, learning_rate=1e-3,
                             logging_steps=5, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # the learning rate is 0 from the second step on
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step == 0 or fault != "zero lr" else 0.0)
    guard = HealthGuard()
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[guard], optimizers=(optimizer, schedule))
    with pytest.raises(TrainingHealthError) as err:
        trainer.train()
    assert err.value.step == 2, str(err.value)
    assert err.value.catalog_row == {"zero loss": 2, "nan loss": 1, "zero lr": 15}[fault], str(err.value)
    assert [r.step for r in guard.records] == [1, 2][: len(guard.records)] and guard.records[0].loss > 0


@pytest.mark.parametrize("where", ["the forward (bf16=True)", "the whole training"])
def test_an_optimizer_step_under_autocast_stops_naming_row_18(tmp_path, where):
    """Catalog row 18 on a plain Trainer: the Trainer's own bf16 autocast (the forward only) trains on, autocast
    around `trainer.train()` stops at the first step."""
    import contextlib

    from transformers import Trainer, TrainingArguments

    from tests.conftest import random_llama

    rows = [{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]} for _ in range(4)]
    whole = where == "the whole training"
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=2, learning_rate=1e-3,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, bf16=not whole)
    guard = HealthGuard()
    trainer = Trainer(model=random_llama(), args=args, train_dataset=rows, callbacks=[guard])
    with torch.autocast("cpu", dtype=torch.bfloat16) if whole else contextlib.nullcontext():
        if not whole:
            trainer.train()
            assert [r.step for r in guard.records] == [1, 2]
            return
        with pytest.raises(TrainingHealthError, match="runs under cpu autocast") as err:
            trainer.train()
    assert err.value.catalog_row == 18 and err.value.step == 1 and not guard.records
