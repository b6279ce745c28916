"""sft_contract.recorder: the kit's step recorder, driven by hand with the Trainer's own argument and state
objects (a real Trainer drives it in the integration tier: tests/sft_contract/test_checks.py)."""

import math

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from sft_contract.recorder import StepRecorder
from sft_contract.steps import StepRecord


@pytest.fixture(scope="module")
def args(tmp_path_factory):
    return TrainingArguments(output_dir=str(tmp_path_factory.mktemp("out")), report_to="none", use_cpu=True,
                             logging_steps=50, logging_strategy="epoch", warmup_steps=2)


def _begin(args, max_steps=10):
    recorder, state = StepRecorder(), TrainerState(max_steps=max_steps)
    recorder.on_train_begin(args, state, TrainerControl())
    return recorder, state


def test_training_begins_logging_every_step_with_nans_shown(args):
    args.logging_nan_inf_filter, args.logging_strategy, args.logging_steps = True, "epoch", 50
    recorder, state = _begin(args)
    assert args.logging_nan_inf_filter is False
    assert args.logging_strategy == "steps" and args.logging_steps == 1 and state.logging_steps == 1
    assert recorder.warmup_steps == 2


def test_the_warmup_comes_from_the_arguments_and_is_zero_without_a_step_count(args):
    assert StepRecorder().warmup_steps == 0
    assert _begin(args, max_steps=0)[0].warmup_steps == 0


def test_each_logged_loss_becomes_one_record(args):
    recorder, state = _begin(args)
    state.global_step = 3
    recorder.on_log(args, state, TrainerControl(), logs={"loss": 2.5, "grad_norm": 0.75, "learning_rate": 1e-3,
                                                         "epoch": 0.5})
    recorder.on_log(args, state, TrainerControl(), logs={"eval_loss": 1.0})  # no training loss: no record
    recorder.on_log(args, state, TrainerControl(), logs=None)
    assert recorder.records == [StepRecord(step=3, loss=2.5, grad_norm=0.75, learning_rate=1e-3, epoch=0.5)]


def test_a_nan_loss_is_recorded_as_nan(args):
    recorder, state = _begin(args)
    recorder.on_log(args, state, TrainerControl(), logs={"loss": float("nan"), "grad_norm": 1.0, "learning_rate": 1e-3})
    assert math.isnan(recorder.records[0].loss)


def _model_with_grads(grads):
    model = torch.nn.Linear(2, 1)
    model.weight.grad, model.bias.grad = (None if g is None else torch.tensor(g) for g in grads)
    return model


def test_without_a_logged_grad_norm_the_measured_one_is_recorded(args):
    """The Trainer logs grad_norm only when it clips: the recorder measures the norm before each step."""
    recorder, state = _begin(args)
    model = _model_with_grads([[[3.0, 0.0]], [4.0]])  # |(3, 0, 4)| = 5
    model.bias.requires_grad_(True)
    recorder.on_pre_optimizer_step(args, state, TrainerControl(), model=model)
    recorder.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    assert recorder.records[0].grad_norm == pytest.approx(5.0)
    assert math.isnan(recorder.records[0].learning_rate)  # not logged: NaN, not a made-up 0
    recorder.on_pre_optimizer_step(args, state, TrainerControl(), model=None)  # no model: the last norm stays
    recorder.on_log(args, state, TrainerControl(), logs={"loss": 1.0, "grad_norm": 2.0})
    assert [r.grad_norm for r in recorder.records] == [pytest.approx(5.0), 2.0]  # a logged norm wins


def test_frozen_and_gradless_parameters_do_not_count(args):
    recorder, state = _begin(args)
    model = _model_with_grads([[[3.0, 4.0]], [12.0]])
    model.bias.requires_grad_(False)
    recorder.on_pre_optimizer_step(args, state, TrainerControl(), model=model)
    recorder.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    assert recorder.records[0].grad_norm == pytest.approx(5.0)
    model.weight.grad = None  # no parameter received a gradient: NaN, which the checks flag
    recorder.on_pre_optimizer_step(args, state, TrainerControl(), model=model)
    recorder.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    assert math.isnan(recorder.records[1].grad_norm)


def test_no_norm_at_all_is_recorded_as_nan(args):
    recorder, state = _begin(args)
    recorder.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    assert math.isnan(recorder.records[0].grad_norm) and recorder.records[0].epoch is None
