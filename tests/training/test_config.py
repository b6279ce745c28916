"""TrainConfig: every option validated in one place, with its name and accepted range; what a resumed run may
change. (The command line built from these fields is tests/tools/test_cli.py.)"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from homework.training.config import (
    ConfigError,
    TrainConfig,
    accepted_range,
    flag_of,
    make_config,
    option,
    options,
    resumable_options,
    resumed_config,
    saved_train_config,
)

# (option, a value outside its accepted range, the flag named, the range named)
OUT_OF_RANGE = [
    ("learning_rate", -1.0, "--lr", "> 0"),
    ("learning_rate", 0.0, "--lr", "> 0"),
    ("learning_rate", math.nan, "--lr", "a number"),
    ("learning_rate", 2.0, "--lr", "<= 1"),
    ("batch_size", 0, "--batch-size", ">= 1"),
    ("epochs", 0.0, "--epochs", "> 0"),
    ("epochs", -1.0, "--epochs", "> 0"),
    ("max_steps", 0, "--max-steps", ">= 1"),
    ("max_steps", -2, "--max-steps", ">= -1"),
    ("grad_accum", 0, "--grad-accum", ">= 1"),
    ("lora_rank", 0, "--rank", ">= 1"),
    ("lora_alpha", 0, "--alpha", ">= 1"),
    ("lora_dropout", 1.0, "--lora-dropout", "< 1"),
    ("lora_layers", 0, "--lora-layers", ">= 1 or 'all'"),
    ("warmup_steps", -1, "--warmup-steps", ">= 0"),
    ("weight_decay", -0.1, "--weight-decay", ">= 0"),
    ("max_length", 4, "--max-length", ">= 8"),
    ("seed", -1, "--seed", ">= 0"),
    ("limit", 0, "--limit", ">= 1"),
    ("eval_limit", 0, "--eval-limit", ">= 1"),
    ("save_steps", -5, "--save-steps", ">= 0"),
    ("answer_format", "json", "--answer-format", "one of named, expression, number"),
    ("lr_scheduler", "step", "--lr-scheduler", "one of cosine"),
    ("gradient_checkpointing", "maybe", "--gradient-checkpointing", "one of auto, on, off"),
    ("batch_size", 16.5, "--batch-size", "an integer"),
    ("batch_size", True, "--batch-size", "an integer"),
    ("evaluate", "yes", "--eval", "true or false"),
    ("train_file", None, "--train-file", "text"),
]


@pytest.mark.parametrize(("name", "value", "flag", "accepted"), OUT_OF_RANGE)
def test_an_option_out_of_range_is_refused_naming_it_and_its_range(name, value, flag, accepted):
    with pytest.raises(ConfigError) as err:
        make_config(**{name: value})
    message = str(err.value)
    assert f"{flag} ({name}) = {value!r}" in message and accepted in message


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigError) as err:
        make_config(learning_rate=-1.0, batch_size=0)
    assert "--lr" in str(err.value) and "--batch-size" in str(err.value)


def test_the_defaults_and_boundaries_are_accepted():
    TrainConfig()
    make_config(learning_rate=1.0, max_steps=-1, warmup_steps=0, lora_layers=None, limit=None, heldout_file="")
    assert make_config(heldout_file="").heldout_file is None  # '' skips the held-out family


def test_unknown_options_are_refused_not_dropped():
    with pytest.raises(ConfigError, match="unknown training option.*learning_rat\\b"):
        make_config(learning_rat=1e-3)


def test_every_option_has_help_a_flag_and_a_range():
    flags = [flag_of(f) for f in options()]
    assert len(set(flags)) == len(flags)
    for f in options():
        assert f.metadata["help"] and accepted_range(f), f.name


SAVED = TrainConfig(learning_rate=1e-3, seed=3, evaluate=True)


@pytest.mark.parametrize(("given", "refused"), [
    ({"learning_rate": 2e-3}, "--lr 0.002 (the run's: 0.001)"),
    ({"seed": 0}, "--seed 0 (the run's: 3)"),
    ({"epochs": 2.0}, "--epochs 2.0"),
    ({"lora_alpha": 16}, "--alpha 16"),
    ({"lr_scheduler": "linear"}, "--lr-scheduler 'linear'"),
    ({"group_by_length": False}, "--group-by-length False"),
    ({"answer_format": "number"}, "--answer-format 'number'"),
])
def test_a_resumed_run_refuses_options_that_change_its_schedule_data_or_adapter(given, refused):
    with pytest.raises(ConfigError, match="--resume continues a run") as err:
        resumed_config(SAVED, given)
    assert refused in str(err.value)


def test_a_resumed_run_applies_the_other_options_and_says_which():
    cfg, applied = resumed_config(SAVED, {"evaluate": False, "device": "cpu", "eval_limit": 5, "preflight": False,
                                          "learning_rate": 1e-3, "seed": 3})  # equal schedule values are fine
    assert (cfg.evaluate, cfg.device, cfg.eval_limit, cfg.preflight) == (False, "cpu", 5, False)
    assert (cfg.learning_rate, cfg.seed) == (1e-3, 3)
    assert applied == ["--eval False", "--device 'cpu'", "--eval-limit 5", "--preflight False"]


def test_what_a_resumed_run_may_change_is_how_it_is_watched_placed_or_graded():
    assert resumable_options() == {"device", "precision", "valid_file", "heldout_file", "structures_file", "handwritten_file",
                                   "fused_lora", "gradient_checkpointing",
                                   "save_steps", "evaluate", "eval_limit", "progress", "preflight"}
    assert set(f.name for f in dataclasses.fields(TrainConfig)) >= resumable_options()


def test_an_option_records_what_it_is_given_and_infers_the_rest():
    # TrainConfig's fields call option() once, at import; this calls it afresh so that what it records is tested
    # as a function and not only through the fields it already built
    parse = int
    full = option(3, "h", flag="--x", kind=float, minimum=1, above=0, maximum=9, below=10, choices=(3, 4),
                  resumable=True, parse=parse, metavar="N").metadata
    assert full == dict(help="h", flag="--x", kind=float, minimum=1, above=0, maximum=9, below=10, choices=(3, 4),
                        allow_none=False, resumable=True, parse=parse, metavar="N", none_word=None)
    bare = option(2.5, "h").metadata
    assert (bare["kind"], bare["allow_none"], bare["resumable"], bare["flag"], bare["parse"]) == (float, False, False,
                                                                                                    None, None)
    assert all(bare[k] is None for k in ("minimum", "above", "maximum", "below", "choices", "metavar", "none_word"))
    assert option(None, "h", kind=int).metadata["allow_none"]  # unset by default: None is accepted
    assert option("a", "h", allow_none=True).metadata["allow_none"]
    spelled = option(7, "h", none_word="all").metadata
    assert spelled["allow_none"] and spelled["none_word"] == "all"
    assert option(7, "h").default == 7


def test_an_unknown_option_is_named_beside_every_known_one():
    with pytest.raises(ConfigError) as err:
        make_config(rank=8, learning_rat=1e-3)
    assert str(err.value) == ("unknown training option(s): learning_rat, rank; known: "
                              + ", ".join(f.name for f in options()))


def test_an_empty_file_name_skips_each_held_out_family_alone():
    for family in ("heldout_file", "structures_file", "handwritten_file"):
        cfg = make_config(**{family: ""})
        assert {n: getattr(cfg, n) for n in ("heldout_file", "structures_file", "handwritten_file")} == {
            "heldout_file": "heldout", "structures_file": "heldout_structures", "handwritten_file": "handwritten",
            family: None}


def test_a_refused_resume_says_what_differs_and_what_to_do():
    with pytest.raises(ConfigError) as err:
        resumed_config(SAVED, {"seed": 0, "lora_alpha": 16, "device": "cpu"})  # named in the options' order
    assert str(err.value) == ("--resume continues a run with the schedule, data and adapter it started with; these "
                              "options differ from it: --alpha 16 (the run's: 128), --seed 0 (the run's: 3). Drop them, "
                              "or start a fresh run without --resume.")


def test_a_resumed_run_applies_only_the_options_that_change_something():
    cfg, applied = resumed_config(SAVED, {"evaluate": True, "seed": 3, "eval_limit": 5})
    assert applied == ["--eval-limit 5"] and cfg == dataclasses.replace(SAVED, eval_limit=5)


def test_a_saved_configuration_is_read_back_with_its_run_id(tmp_path):
    path = tmp_path / "homework_train_config.json"
    path.write_text(json.dumps({**dataclasses.asdict(SAVED), "run_id": "run-7"}))
    assert saved_train_config(path) == (SAVED, "run-7")


def test_a_configuration_saved_before_an_option_existed_reads_as_the_run_that_wrote_it(tmp_path):
    path = tmp_path / "homework_train_config.json"
    written = dataclasses.asdict(SAVED)
    del written["lora_layers"], written["heldout_file"]  # then: LoRA on every layer, no held-out grading
    path.write_text(json.dumps(written))
    cfg, run_id = saved_train_config(path)
    assert cfg == dataclasses.replace(SAVED, lora_layers=None, heldout_file=None) and run_id is None


def test_the_refusal_lists_every_problem_in_the_options_order_each_with_what_is_accepted():
    with pytest.raises(ConfigError) as err:
        make_config(learning_rate=-1.0, batch_size=True, lr_scheduler="step", train_file=None, limit=0, max_steps=0,
                    lora_layers=0, evaluate="yes")
    assert str(err.value) == "\n  ".join([
        "invalid training option(s):",
        "--train-file (train_file) = None may not be unset: accepted text",
        "--lr (learning_rate) = -1.0 is out of range: accepted a number and > 0 and <= 1",
        "--lr-scheduler (lr_scheduler) = 'step' is not accepted: accepted one of cosine, linear, constant, "
        "constant_with_warmup",
        "--lora-layers (lora_layers) = 0 is out of range: accepted an integer and >= 1 or 'all'",  # its unset word
        "--batch-size (batch_size) = True has the wrong type: accepted an integer and >= 1",
        "--limit (limit) = 0 is out of range: accepted an integer and >= 1 or unset",
        "--eval (evaluate) = 'yes' has the wrong type: accepted true or false",
        "--max-steps (max_steps) = 0 trains nothing: accepted -1 (run the epochs) or >= 1"])
