"""The command line as users call it: options generated from TrainConfig, refused with their name and range,
and -- table-driven -- every option reaching what the built recipe trains."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import pytest
import torch

from homework.runtime.errors import HomeworkError
from homework.tools import cli
from homework.tools.cli import build_parser, given_options, main
from homework.training.config import DEFAULT_OUTPUT_DIR, TrainConfig, flag_of, make_config, option, options
from homework.training.fused_lora import FUSED_ATTR


def train_options(*argv: str) -> dict:
    return given_options(build_parser().parse_args(["train", *argv]))


def test_only_the_options_given_reach_train_model():
    assert train_options() == {}
    assert train_options("--lr", "0.001", "--no-eval", "--lora-layers", "all") == {
        "learning_rate": 0.001, "evaluate": False, "lora_layers": None}


def test_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert exit_.value.code == 0
    defaults = TrainConfig()
    assert "--resume" in out and "--output-dir" in out
    for f in options():
        assert flag_of(f) in out, f.name
    assert "peak learning rate (default: 0.002)" in out and "(default: named)" in out
    assert f"(default: {defaults.lora_layers})" in out and "--no-group-by-length" in out


@pytest.mark.parametrize(("argv", "named"), [
    (["--lr", "-1"], "--lr (learning_rate) = -1.0 is out of range: accepted a number and > 0 and <= 1"),
    (["--batch-size", "0"], "--batch-size (batch_size) = 0 is out of range: accepted an integer and >= 1"),
    (["--epochs", "0"], "--epochs (epochs) = 0.0 is out of range"),
    (["--max-steps", "0"], "--max-steps (max_steps) = 0 trains nothing"),
])
def test_bad_options_exit_2_naming_the_option_and_range_and_keep_the_saved_adapter(tmp_path, capsys, argv, named):
    out = tmp_path / "sft_model"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"earlier adapter")
    assert main(["train", "--output-dir", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert (out / "adapter_model.safetensors").read_bytes() == b"earlier adapter"


def test_a_value_of_the_wrong_type_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--batch-size", "many"])
    assert "--batch-size: expected an integer and >= 1, got 'many'" in capsys.readouterr().err


def test_an_explicit_option_beats_the_environment(monkeypatch):
    from homework.runtime.device import resolve_placement
    from homework.runtime.model_source import resolve_model

    monkeypatch.setenv("HOMEWORK_DEVICE", "cuda:7")
    monkeypatch.setenv("HOMEWORK_MODEL", "/no/such/model")
    assert resolve_placement(train_options("--device", "cpu")["device"]).device.type == "cpu"
    assert resolve_model(train_options("--model", "embedded")["model"]).name == "SmolLM2-135M-Instruct"


@pytest.fixture
def help_of(capsys, monkeypatch):
    """The help of a command, whitespace collapsed; wide, so that argparse wraps no line (nor a path at a hyphen)."""
    monkeypatch.setenv("COLUMNS", "1000")

    def help_of(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--help"])
        assert exit_.value.code == 0
        return " ".join(capsys.readouterr().out.split())

    return help_of


def test_the_help_names_each_command_and_what_it_does(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith("usage: python -m homework.sft [-h] {train,test,doctor,check}")
    # the module docstring, its example lines kept as written
    assert "\n    python -m homework.sft train [--epochs N ...]   train, save the adapter" in out
    words = " ".join(out.split())
    assert "train train a LoRA adapter, save it, evaluate it" in words
    assert "test reload a saved adapter and evaluate it" in words
    assert "doctor pre-flight scan, 3-step smoke run, save/reload and prompt checks" in words
    assert "check check a course homework/ package written elsewhere: rows, prompts, generation, 3 training " \
           "steps, save and load" in words


def test_each_commands_help_explains_its_own_options(help_of):
    train = help_of("train")
    assert f"--output-dir OUTPUT_DIR where the adapter goes (default: {DEFAULT_OUTPUT_DIR})" in train
    assert ("--resume continue this output dir's interrupted run from its last checkpoint; options that would "
            "change its schedule, data or adapter are refused, the others applied") in train
    assert "--lora-layers N|all" in train and "--lr-scheduler {cosine,linear,constant,constant_with_warmup}" in train
    assert "--limit LIMIT train on the first N rows only (default: unset)" in train
    doctor = help_of("doctor")
    assert "--steps STEPS optimizer steps of the smoke run (default: 3)" in doctor
    assert "--train-file TRAIN_FILE training rows" in doctor


def test_an_option_unset_by_default_shows_how_the_command_line_spells_unset(monkeypatch, help_of):
    # lora_layers' default is 15; were it None ("every layer"), the help would say "all", the word --lora-layers takes
    monkeypatch.setattr(cli, "TrainConfig", lambda: TrainConfig(lora_layers=None))
    assert "(default: all)" in help_of("train")


def test_a_percent_sign_in_an_options_help_is_printed_as_is(monkeypatch, help_of):
    @dataclasses.dataclass
    class Shares:
        share: float = option(0.5, "share of rows in %")

    monkeypatch.setattr(cli, "TrainConfig", Shares)
    monkeypatch.setattr(cli, "options", lambda: dataclasses.fields(Shares))
    assert "--share SHARE share of rows in % (default: 0.5)" in help_of("train")


def parsed(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([])
    assert exit_.value.code == 2 and "required: command" in capsys.readouterr().err


def test_each_command_takes_its_own_options_with_their_defaults():
    assert parsed("train") == {"command": "train", "output_dir": str(DEFAULT_OUTPUT_DIR), "resume": False}
    assert parsed("train", "--resume", "--output-dir", "out") == {"command": "train", "output_dir": "out",
                                                                  "resume": True}
    assert parsed("test") == {"command": "test", "path": str(DEFAULT_OUTPUT_DIR)}
    assert parsed("test", "out", "--valid-file", "v", "--heldout-file", "h", "--structures-file", "s",
                  "--handwritten-file", "w", "--eval-limit", "3") == {
        "command": "test", "path": "out", "valid_file": "v", "heldout_file": "h", "structures_file": "s",
        "handwritten_file": "w", "eval_limit": 3}
    assert parsed("doctor") == {"command": "doctor", "steps": 3}
    assert parsed("doctor", "--model", "m", "--device", "cpu", "--train-file", "t", "--steps", "5") == {
        "command": "doctor", "model": "m", "device": "cpu", "train_file": "t", "steps": 5}


@pytest.mark.parametrize("argv", [["test", "--lr", "0.1"], ["test", "--model", "m"], ["doctor", "--valid-file", "v"],
                                  ["doctor", "--eval-limit", "3"]])
def test_a_command_refuses_the_options_of_another(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2 and f"unrecognized arguments: {argv[1]}" in capsys.readouterr().err


def test_a_value_outside_an_options_choices_is_refused_by_the_parser_listing_them(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--lr-scheduler", "step"])
    assert "--lr-scheduler: invalid choice: 'step' (choose from" in capsys.readouterr().err


def test_an_empty_word_unsets_an_option_that_may_be_unset_and_is_text_for_the_others():
    assert train_options("--heldout-file", "", "--lora-layers", "", "--train-file", "") == {
        "heldout_file": None, "lora_layers": None, "train_file": ""}


def record(monkeypatch, module, name, returns=None, raises=None) -> list:
    """Replace module.name by a recorder of its calls (args, kwargs); it returns `returns` or raises `raises`."""
    calls = []

    def recorder(*args, **kwargs):
        calls.append((args, kwargs))
        if raises is not None:
            raise raises
        return returns

    monkeypatch.setattr(module, name, recorder)
    return calls


def test_train_hands_train_model_the_output_dir_resume_and_only_the_options_given(monkeypatch):
    from homework.training import run

    calls = record(monkeypatch, run, "train_model")
    assert main(["train"]) == 0
    assert main(["train", "--output-dir", "out", "--resume", "--lr", "0.001", "--no-eval"]) == 0
    assert calls == [((str(DEFAULT_OUTPUT_DIR),), {"resume": False}),
                     (("out",), {"resume": True, "learning_rate": 0.001, "evaluate": False})]


def test_test_grades_the_adapter_on_the_files_trains_evaluation_would(monkeypatch):
    from homework.training import evaluation

    calls = record(monkeypatch, evaluation, "test_model")
    assert main(["test"]) == 0
    assert main(["test", "out", "--valid-file", "v", "--eval-limit", "3", "--heldout-file", "", "--structures-file",
                 "s", "--handwritten-file", "w"]) == 0
    # path, valid_file, limit, heldout_file, structures_file, handwritten_file; '' skips a family as in train
    assert calls == [((str(DEFAULT_OUTPUT_DIR), "valid", None, "heldout", "heldout_structures", "handwritten"), {}),
                     (("out", "v", 3, None, "s", "w"), {})]


def test_test_refuses_an_option_out_of_range_as_train_does(monkeypatch, capsys):
    from homework.training import evaluation

    calls = record(monkeypatch, evaluation, "test_model")
    assert main(["test", "--eval-limit", "0"]) == 2
    assert "--eval-limit (eval_limit) = 0 is out of range" in capsys.readouterr().err and calls == []


def test_doctor_hands_run_doctor_its_options_and_exits_with_its_status(monkeypatch):
    from homework.tools import doctor

    calls = record(monkeypatch, doctor, "run_doctor", returns=1)
    assert main(["doctor"]) == 1
    assert main(["doctor", "--model", "m", "--device", "cpu", "--precision", "bf16", "--train-file", "t", "--steps",
                 "5"]) == 1
    assert calls == [((), dict(model=None, device=None, precision=None, train_file="train", steps=3)),
                     ((), dict(model="m", device="cpu", precision="bf16", train_file="t", steps=5))]


def test_an_error_exits_2_and_one_every_process_agreed_on_is_left_to_the_main_process(monkeypatch, capsys):
    from homework.runtime import distributed
    from homework.training import run

    monkeypatch.setattr(distributed, "is_main", lambda: False)  # a second process of a distributed run
    agreed = HomeworkError("every process found this")
    agreed.agreed = True
    record(monkeypatch, run, "train_model", raises=agreed)
    assert main(["train"]) == 2
    assert capsys.readouterr().err == ""
    record(monkeypatch, run, "train_model", raises=HomeworkError("this process alone found this"))
    assert main(["train"]) == 2
    assert "error: this process alone found this" in capsys.readouterr().err


def test_an_interrupted_command_exits_130_like_a_shell(monkeypatch):
    from homework.training import run

    record(monkeypatch, run, "train_model", raises=KeyboardInterrupt())
    assert main(["train"]) == 130


def test_the_command_line_silences_only_the_libraries_v6_rename_warnings(monkeypatch):
    from homework.training import run

    record(monkeypatch, run, "train_model")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        main(["train"])
        warnings.warn("`x` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1)
        warnings.warn("`x` is deprecated and will be removed in v6.", DeprecationWarning, stacklevel=1)
        warnings.warn("`x` will change", FutureWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in shown] == [
        (DeprecationWarning, "`x` is deprecated and will be removed in v6."), (FutureWarning, "`x` will change")]


# --------------------------------------------------------------------------- every option reaches the recipe

def _adapted_layers(recipe) -> set[int]:
    return {int(n.split(".layers.")[1].split(".")[0]) for n, _ in recipe.model.named_modules()
            if ".layers." in n and n.endswith("lora_A")}


def _first_lora_a(recipe) -> torch.Tensor:
    return next(p for n, p in recipe.model.named_parameters() if "lora_A" in n).detach().clone()


# option -> (command-line words, what the built recipe shows). Values differ from the defaults.
SCHEDULE = {
    "learning_rate": (["--lr", "0.001"], lambda r: r.trainer.args.learning_rate == 0.001),
    "lr_scheduler": (["--lr-scheduler", "linear"], lambda r: getattr(r.trainer.args.lr_scheduler_type, "value",
                                                                        r.trainer.args.lr_scheduler_type) == "linear"),
    "warmup_steps": (["--warmup-steps", "3"], lambda r: r.trainer.args.warmup_steps == 3),
    "weight_decay": (["--weight-decay", "0.01"], lambda r: r.trainer.args.weight_decay == 0.01),
    "epochs": (["--epochs", "2"], lambda r: r.trainer.args.num_train_epochs == 2),
    "max_steps": (["--max-steps", "5"], lambda r: r.trainer.args.max_steps == 5),
    "batch_size": (["--batch-size", "4"], lambda r: r.trainer.args.per_device_train_batch_size == 4),
    "grad_accum": (["--grad-accum", "2"], lambda r: r.trainer.args.gradient_accumulation_steps == 2),
    "seed": (["--seed", "7"], lambda r: r.trainer.args.seed == 7 and r.trainer.args.data_seed == 7),
    "group_by_length": (["--no-group-by-length"],
                        lambda r: r.group_by_length is False and type(r.trainer._get_train_sampler()).__name__
                        != "LengthGroupedSampler"),
    "max_length": (["--max-length", "96"], lambda r: r.dataset.max_length == 96),
    "answer_format": (["--answer-format", "number"], lambda r: all("*" not in a and ":" not in a.split("<")[0]
                                                                   for a in r.dataset.answers)),
    "train_file": (["--train-file", "valid"], lambda r: r.dataset.source.endswith("valid.json")),
    "limit": (["--limit", "6"], lambda r: len(r.dataset) == 6),
    "gradient_checkpointing": (["--gradient-checkpointing", "on"], lambda r: r.use_checkpointing is True),
    "save_steps": (["--save-steps", "7"], lambda r: r.trainer.args.save_steps == 7),
    "progress": (["--no-progress"], lambda r: r.trainer.args.disable_tqdm is True),
    "packing": (["--packing"], lambda r: type(r.collator).__name__ == "PackingCollator"),
}
ADAPTER = {
    "lora_rank": (["--rank", "8"], lambda r: r.model.peft_config["default"].r == 8),
    # what reaches the layers, not only the config: the update's scale is alpha / r
    "lora_alpha": (["--alpha", "32"], lambda r: all(m.scaling["default"] == 32 / 8 for m in r.model.modules()
                                                    if hasattr(m, "scaling") and isinstance(m.scaling, dict))),
    "lora_layers": (["--lora-layers", "2"], lambda r: _adapted_layers(r) == {28, 29}),
    "lora_dropout": (["--lora-dropout", "0.1"], lambda r: r.model.peft_config["default"].lora_dropout == 0.1),
    "fused_lora": (["--no-fused-lora"], lambda r: not any(getattr(m, FUSED_ATTR, False) for m in r.model.modules())),
}
# used by train_model around the recipe, and tested there (tests/training/test_run.py) or in test_device / model_source
NOT_IN_THE_RECIPE = {"model", "device", "precision", "valid_file", "heldout_file", "structures_file", "handwritten_file",
                     "evaluate", "eval_limit", "preflight"}


def test_the_table_covers_every_option():
    assert set(SCHEDULE) | set(ADAPTER) | NOT_IN_THE_RECIPE == {f.name for f in options()}


@pytest.fixture(scope="module")
def recipes(hw_base_model, hw_tokenizer, hw_placement, tmp_path_factory):
    """The recipe built from the defaults (limit 6 rows), from every schedule option changed, and from every adapter
    option changed -- each from the command-line words, through the config, as `train` builds it."""
    from homework.base_llm import BaseLLM
    from homework.training.recipe import build_recipe

    llm = BaseLLM.from_components(hw_base_model, hw_tokenizer, hw_placement)

    def build(*argv: str):
        cfg = make_config(**train_options("--limit", "6", *argv))
        return build_recipe(cfg, tmp_path_factory.mktemp("ckpt"), llm=llm, base_model=copy.deepcopy(hw_base_model))

    schedule_words = [w for name, (words, _) in SCHEDULE.items() if name != "limit" for w in words]
    return {"default": build(), "schedule": build(*schedule_words),
            "adapter": build(*[w for words, _ in ADAPTER.values() for w in words])}


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted({**SCHEDULE, **ADAPTER}))
def test_every_option_changes_what_the_built_recipe_trains(recipes, name):
    words, shows = {**SCHEDULE, **ADAPTER}[name]
    changed = recipes["adapter" if name in ADAPTER else "schedule"]
    assert shows(changed), f"{' '.join(words)} did not reach the recipe"
    if name != "limit":  # every build has --limit 6
        assert not shows(recipes["default"]), f"the default recipe already shows {' '.join(words)}"


@pytest.mark.integration
def test_the_seed_covers_the_adapters_initialisation(recipes):
    """The schedule build (--seed 7) has the default LoRA layout: only the seed makes its adapter differ."""
    assert _first_lora_a(recipes["schedule"]).shape == _first_lora_a(recipes["default"]).shape
    assert not torch.equal(_first_lora_a(recipes["schedule"]), _first_lora_a(recipes["default"]))


@pytest.mark.integration
def test_the_default_recipe_trains_the_named_format_behind_the_one_prompt(recipes, hw_tokenizer):
    """What the default run really supervises: the prompt builder's text, then the named answer and EOS."""
    from homework.text.expression_format import format_example_named
    from homework.text.prompt import build_prompt

    recipe = recipes["default"]
    question, answer = recipe.dataset.data[0]
    row = recipe.dataset.rows[0]
    expected = format_example_named(question, answer)
    labels = [t for t in row["labels"] if t != -100]
    assert hw_tokenizer.decode(labels) == expected["answer"] + hw_tokenizer.eos_token
    assert hw_tokenizer.decode(row["input_ids"]).startswith(build_prompt(expected["question"]))
    kind, units, _ = recipe.dataset.answers[0].split(": ")  # e.g. "mass: kilogram to gram: <answer>..."
    assert recipe.dataset.answers[0] == expected["answer"] and " to " in units and kind.isalpha()
