"""The command line as users call it: options generated from TrainConfig, refused with their name and range,
and -- table-driven -- every option reaching what the built recipe trains."""

from __future__ import annotations

import copy

import pytest
import torch

from homework.tools.cli import build_parser, given_options, main
from homework.training.config import TrainConfig, flag_of, make_config, options
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
NOT_IN_THE_RECIPE = {"model", "device", "valid_file", "heldout_file", "structures_file", "handwritten_file",
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
