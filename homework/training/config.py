"""TrainConfig: every training option -- its default, help, accepted range and whether a resumed run may
change it -- in one place. The command line is generated from these fields (cli.py), and every way in
(CLI, `train_model(**kwargs)`, a saved configuration) is validated here by `validate`."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.errors import HomeworkError
from ..text.formats import ANSWER_FORMATS
from ..text.tokenization import DEFAULT_MAX_LENGTH

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent.parent / "sft_model"  # homework/sft_model, where the course looks
TRAIN_CONFIG_FILE = "homework_train_config.json"
RESULTS_FILE = "eval_results.json"
LR_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


class ConfigError(HomeworkError, ValueError):
    """An option is outside its accepted range; the message names the option and the range."""


def option(default, help: str, *, flag: str | None = None, kind=None, minimum=None, above=None, maximum=None,
           below=None, choices=None, allow_none: bool = False, resumable: bool = False, parse=None, metavar=None,
           none_word: str | None = None):
    """A TrainConfig field with its command-line flag, help and accepted range.

    minimum/maximum are inclusive bounds, above/below exclusive ones; allow_none accepts None (the
    documented "unset"; none_word is how the command line spells it). resumable: a `--resume` call may change it (how the run is watched, evaluated
    or placed) -- everything else is the run's schedule, data or adapter and stays as the run began."""
    return field(default=default, metadata=dict(
        help=help, flag=flag, kind=kind or type(default), minimum=minimum, above=above, maximum=maximum, below=below,
        choices=choices, allow_none=allow_none or default is None or none_word is not None, resumable=resumable, parse=parse, metavar=metavar,
        none_word=none_word))


def _layer_count(text: str) -> int | None:
    return None if text == "all" else int(text)


@dataclass
class TrainConfig:
    model: str | None = option(None, "'embedded' (SmolLM2-135M-Instruct from its wheel), a local model directory, "
                                     "or a hub id; unset: $HOMEWORK_MODEL, else embedded", kind=str)
    device: str | None = option(None, "auto, cpu or cuda[:N]; unset: $HOMEWORK_DEVICE, else auto", kind=str,
                                resumable=True)
    precision: str | None = option(None, "auto, fp32 or bf16; unset: $HOMEWORK_PRECISION, else auto: bf16 mixed "
                                         "precision on a CUDA card that supports it and on a CPU that computes bf16 "
                                         "natively and measures it faster, else fp32", kind=str,
                                   choices=("auto", "fp32", "bf16"), resumable=True)
    train_file: str = option("train", "training rows: a split name under data/ or a .json path")
    valid_file: str = option("valid", "graded after training: the training family's phrasings, other questions",
                             resumable=True)
    heldout_file: str | None = option("heldout", "also graded: phrasings and spellings never trained on ('' to skip)",
                                      allow_none=True, resumable=True)
    structures_file: str | None = option("heldout_structures", "also graded: sentence structures never trained on "
                                                               "('' to skip)", allow_none=True, resumable=True)
    handwritten_file: str | None = option("handwritten", "also graded: questions typed by hand ('' to skip)",
                                          allow_none=True, resumable=True)
    epochs: float = option(1.0, "passes over the training rows", above=0)
    learning_rate: float = option(2e-3, "peak learning rate", flag="--lr", above=0, maximum=1)
    lr_scheduler: str = option("cosine", "learning-rate schedule after the warm-up", choices=LR_SCHEDULERS)
    warmup_steps: int = option(10, "optimizer steps of linear warm-up", minimum=0)
    weight_decay: float = option(0.0, "AdamW weight decay", minimum=0, maximum=1)
    lora_rank: int = option(64, "LoRA rank r", flag="--rank", minimum=1, maximum=1024)
    lora_alpha: int = option(128, "LoRA alpha (the update is scaled by alpha / r)", flag="--alpha", minimum=1)
    lora_dropout: float = option(0.0, "dropout on the LoRA input", minimum=0, below=1)
    lora_layers: int | None = option(15, "put LoRA on the last N decoder layers only, or 'all' "
                                         "(backpropagation stops at the lowest adapted layer)",
                                     kind=int, minimum=1, parse=_layer_count, metavar="N|all", none_word="all")
    batch_size: int = option(16, "rows per optimizer step and process", minimum=1)
    group_by_length: bool | None = option(None, "batches of similar-length rows; unset: on for CPU, off for CUDA "
                                                "(measured faster on CPU, slower on an H100)", kind=bool)
    fused_lora: bool = option(True, "one autograd node per LoRA linear (same math as peft, faster)", resumable=True)
    packing: bool = option(False, "pack each batch's rows into one row without padding, attention kept inside each "
                                  "row (measured slower on 2 CPU cores; for GPUs)")
    grad_accum: int = option(1, "batches accumulated per optimizer step", minimum=1)
    max_steps: int = option(-1, "stop after N optimizer steps (-1: run the epochs)", minimum=-1)
    max_length: int = option(DEFAULT_MAX_LENGTH, "longest row in tokens; longer rows are refused", minimum=8)
    answer_format: str = option("named", "what the model learns to write: 'named' (mass: kilogram to gram: "
                                         "<answer>6 * 1000 / 1</answer>), 'expression' or 'number' (<answer>6000</answer>)",
                                choices=ANSWER_FORMATS)
    seed: int = option(0, "seed of the adapter's initialisation and the data order", minimum=0)
    limit: int | None = option(None, "train on the first N rows only", kind=int, minimum=1)
    gradient_checkpointing: str = option("auto", "recompute activations in backward; auto: only on a GPU "
                                                 "with under 8 GiB", choices=("auto", "on", "off"), resumable=True)
    save_steps: int = option(50, "checkpoint every N optimizer steps (0: never)", minimum=0, resumable=True)
    evaluate: bool = option(True, "grade the adapter after training", flag="--eval", resumable=True)
    eval_limit: int | None = option(None, "grade only the first N questions of each file", kind=int, minimum=1,
                                    resumable=True)
    progress: bool = option(True, "print progress", resumable=True)
    preflight: bool = option(True, "scan every row and the model before training (the live guard runs anyway)",
                             resumable=True)

    def __post_init__(self):
        validate(self)


def options() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainConfig))


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def accepted_range(f: dataclasses.Field) -> str:
    m = f.metadata
    if m["choices"]:
        return "one of " + ", ".join(m["choices"])
    parts = []
    if m["minimum"] is not None:
        parts.append(f">= {m['minimum']}")
    if m["above"] is not None:
        parts.append(f"> {m['above']}")
    if m["maximum"] is not None:
        parts.append(f"<= {m['maximum']}")
    if m["below"] is not None:
        parts.append(f"< {m['below']}")
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "text"}[m["kind"]]
    text = " and ".join([kind, *parts])
    return f"{text} or {m['none_word']!r}" if m["none_word"] else text


def _problem(f: dataclasses.Field, value) -> str | None:
    m = f.metadata
    if value is None:
        return None if m["allow_none"] else "may not be unset"
    kind = m["kind"]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        return "has the wrong type"
    if m["choices"] and value not in m["choices"]:
        return "is not accepted"
    out_of_range = ((m["minimum"] is not None and value < m["minimum"]) or (m["above"] is not None and value <= m["above"])
                    or (m["maximum"] is not None and value > m["maximum"]) or (m["below"] is not None and value >= m["below"]))
    if out_of_range:
        return "is out of range"
    return None


def validate(cfg: TrainConfig) -> None:
    """Raise one ConfigError naming every option outside its accepted range."""
    problems = []
    for f in options():
        value = getattr(cfg, f.name)
        what = _problem(f, value)
        if what:
            unset = " or unset" if f.metadata["allow_none"] and not f.metadata["none_word"] else ""
            problems.append(f"{flag_of(f)} ({f.name}) = {value!r} {what}: accepted {accepted_range(f)}{unset}")
    if cfg.max_steps == 0:
        problems.append("--max-steps (max_steps) = 0 trains nothing: accepted -1 (run the epochs) or >= 1")
    if problems:
        raise ConfigError("invalid training option(s):\n  " + "\n  ".join(problems))


def make_config(**options_) -> TrainConfig:
    """A validated TrainConfig from keyword options, naming any option it does not have."""
    unknown = set(options_) - {f.name for f in options()}
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(f.name for f in options())}")
    for name in ("heldout_file", "structures_file", "handwritten_file"):  # '' skips that family
        if options_.get(name) == "":
            options_[name] = None
    return TrainConfig(**options_)


def resumable_options() -> frozenset[str]:
    return frozenset(f.name for f in options() if f.metadata["resumable"])


def resumed_config(saved: TrainConfig, given: dict) -> tuple[TrainConfig, list[str]]:
    """The configuration a resumed run continues with: the saved one, with the options of the resuming call
    that may change (resumable) applied. Any other option that differs from the saved run is refused: it
    would change the schedule, data or adapter of a run half-way. Returns the config and the options applied."""
    refused = [f"{flag_of(f)} {given[f.name]!r} (the run's: {getattr(saved, f.name)!r})" for f in options()
               if f.name in given and not f.metadata["resumable"] and given[f.name] != getattr(saved, f.name)]
    if refused:
        raise ConfigError("--resume continues a run with the schedule, data and adapter it started with; these options "
                          "differ from it: " + ", ".join(refused) + ". Drop them, or start a fresh run without --resume.")
    applied = {k: v for k, v in given.items() if k in resumable_options() and v != getattr(saved, k)}
    by_name = {f.name: f for f in options()}
    return dataclasses.replace(saved, **applied), [f"{flag_of(by_name[k])} {v!r}" for k, v in applied.items()]


def saved_train_config(path: Path) -> tuple[TrainConfig, str | None]:
    """The TrainConfig a run wrote beside its checkpoints, and the run's identity (None before runs had one)."""
    saved = json.loads(Path(path).read_text())
    run_id = saved.pop("run_id", None)
    saved.setdefault("lora_layers", None)  # written before the option existed: LoRA on every layer
    saved.setdefault("heldout_file", None)
    known = {f.name for f in options()}
    return make_config(**{k: v for k, v in saved.items() if k in known}), run_id
