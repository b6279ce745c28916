"""Supervised fine-tuning with LoRA: the course interface plus a CLI.

    python -m homework.sft train [--epochs N ...]   train, save the adapter to homework/sft_model, evaluate
    python -m homework.sft test  [PATH]             reload the adapter and evaluate it on data/valid.json
    python -m homework.sft doctor [--model ...]     pre-flight scan + 3-step smoke run + save/reload check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import faults
from .answers import wrap_answer
from .checkpoints import checkpoints_dir, last_complete_checkpoint
from .errors import DataError, HomeworkError
from .tokenization import DEFAULT_MAX_LENGTH, AnswerDoesNotFit, tokenize_row

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent / "sft_model"
TRAIN_CONFIG_FILE = "homework_train_config.json"
RESULTS_FILE = "eval_results.json"


# --------------------------------------------------------------------------- data -> tokens


def format_example(question: str, answer: float) -> dict[str, str]:
    """The course's formatter: the answer rounded to 4 significant digits inside <answer> tags."""
    return {"question": question, "answer": wrap_answer(answer)}


def tokenize(tokenizer, question: str, answer: str, max_length: int | None = DEFAULT_MAX_LENGTH,
             pad: bool = True) -> dict[str, list[int]]:
    """input_ids/attention_mask/labels for one example; only `answer` + EOS are supervised."""
    return tokenize_row(tokenizer, question, answer, max_length=max_length, pad=pad).as_dict()


class TokenizedDataset:
    """Tokenizes every row up front, so bad rows are refused before training starts.

    pad=True (default) pads every row to max_length, which `default_data_collator` needs (the seed
    recipe); pad=False leaves rows ragged for DynamicPaddingCollator (what train_model uses).
    """

    def __init__(self, tokenizer, data, format_fn=format_example, max_length: int | None = DEFAULT_MAX_LENGTH,
                 pad: bool = True):
        self.tokenizer = tokenizer
        self.data = data
        self.format_fn = format_fn
        self.source = str(getattr(data, "path", "") or "") or None
        self.questions: list[str] = []
        self.answers: list[str] = []
        self.rows: list[dict] = []
        too_long = []
        for i in range(len(data)):
            formatted = format_fn(*data[i])
            try:
                row = tokenize(tokenizer, formatted["question"], formatted["answer"], max_length=max_length, pad=pad)
            except AnswerDoesNotFit as exc:
                too_long.append((i, exc))
                continue
            self.questions.append(formatted["question"])
            self.answers.append(formatted["answer"])
            self.rows.append(row)
        if too_long:
            where = self.source or "the dataset"
            listed = "\n".join(
                f"  {where}, row {i}: prompt {e.prompt_tokens} + answer {e.answer_tokens} tokens > max_length={e.max_length}"
                for i, e in too_long[:8]
            )
            more = f"\n  (+{len(too_long) - 8} more rows)" if len(too_long) > 8 else ""
            raise DataError(
                f"{len(too_long)} row(s) cannot fit their answer in max_length={max_length}; training on them would "
                f"supervise nothing (failure catalog row 3):\n{listed}{more}\n"
                "Fix: shorten or remove those questions, or raise max_length."
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> dict[str, list[int]]:
        return self.rows[idx]


def answer_formatter(name: str):
    """The format_fn for an answer format name."""
    from .expression_format import format_example_expression

    formats = {"number": format_example, "expression": format_example_expression}
    if name not in formats:
        raise HomeworkError(f"unknown answer format {name!r}: choose from {', '.join(formats)}")
    return formats[name]


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    model: str | None = None  # None: $HOMEWORK_MODEL or the embedded SmolLM2-135M-Instruct
    device: str | None = None
    train_file: str = "train"
    valid_file: str = "valid"
    epochs: float = 1.0
    learning_rate: float = 2e-3
    lr_scheduler: str = "cosine"
    warmup_steps: int = 10
    weight_decay: float = 0.0
    # measured (README): LoRA on the last 15 of SmolLM2-135M's 30 layers at r=64 trains ~1.2x more
    # tokens/s than r=16 on all 30, and one epoch of it scored 0.893 / 0.863 (seeds 0 / 1) against 0.887 / 0.823
    lora_rank: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    lora_layers: int | None = 15  # adapt only the last N decoder layers (None: all); see lora_target_modules
    batch_size: int = 16
    group_by_length: bool | None = None  # None: the device class's measured default (Placement.groups_by_length)
    fused_lora: bool = True  # one autograd node per LoRA linear (homework/fused_lora.py); same math as peft
    grad_accum: int = 1
    max_steps: int = -1
    max_length: int = DEFAULT_MAX_LENGTH
    answer_format: str = "expression"  # "expression" (6 * 1000 / 1) or "number" (6000); see README
    seed: int = 0
    limit: int | None = None  # train on the first N rows only
    gradient_checkpointing: str = "auto"  # auto: only on CUDA with little memory
    save_steps: int = 50
    evaluate: bool = True
    eval_limit: int | None = None
    progress: bool = True
    preflight: bool = True


@dataclass
class TrainResult:
    output_dir: Path
    records: list = field(default_factory=list)
    train_seconds: float = 0.0
    accuracy: float | None = None
    answer_rate: float | None = None
    eval_seconds: float | None = None


def saved_train_config(path: Path, progress: bool) -> TrainConfig:
    """The TrainConfig a run wrote beside its checkpoints, for --resume."""
    saved = json.loads(Path(path).read_text())
    saved.setdefault("lora_layers", None)  # written before the option existed: LoRA on every layer
    return TrainConfig(**{**saved, "progress": progress})


def lora_target_modules(model, last_layers: int | None):
    """LoRA targets: every linear layer of the decoder ("all-linear"), or those of its last N layers only.

    With the first layers frozen whole, backpropagation stops at the lowest adapted layer, so those
    layers cost one forward pass instead of a forward and a backward. The decoder layers are the
    model's longest ModuleList (`model.layers` in Llama-style models).
    """
    if last_layers is None:
        return "all-linear"
    import torch

    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        raise HomeworkError(f"--lora-layers {last_layers}: {type(model).__name__} has no list of decoder layers; "
                            f"pass --lora-layers all")
    prefix, layers = max(lists, key=lambda item: len(item[1]))
    if not 1 <= last_layers <= len(layers):
        raise HomeworkError(f"--lora-layers {last_layers}: the model has {len(layers)} decoder layers; "
                            f"pass a number from 1 to {len(layers)}, or all")
    first = len(layers) - last_layers
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    targets = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and (m := pattern.match(name)) and int(m.group(1)) >= first]
    if not targets:
        raise HomeworkError(f"--lora-layers {last_layers}: no nn.Linear in {prefix}; pass --lora-layers all")
    return targets


def build_lora_model(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(model, cfg.lora_layers)
    lora = LoraConfig(task_type="CAUSAL_LM", target_modules=targets, bias="none", r=cfg.lora_rank,
                      lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, inference_mode=False)
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as exc:
        raise HomeworkError(f"LoRA could not attach to the model: {exc}") from exc
    if cfg.fused_lora:
        from .fused_lora import fuse_lora_layers

        fuse_lora_layers(peft_model)
    return peft_model


def make_training_args(cfg: TrainConfig, output_dir: Path, placement, use_checkpointing: bool):
    from transformers import TrainingArguments

    from .compat import checkpointing_args

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        logging_steps=1,
        logging_nan_inf_filter=False,  # never hide a NaN behind a running mean (catalog row 1)
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=placement.bf16,
        use_cpu=placement.device.type == "cpu",
        report_to="none",
        disable_tqdm=not cfg.progress,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **checkpointing_args(use_checkpointing),
    )


def _use_checkpointing(cfg: TrainConfig, placement) -> bool:
    if cfg.gradient_checkpointing in ("on", "true", True):
        return True
    if cfg.gradient_checkpointing in ("off", "false", False):
        return False
    # Activations of a 135M model at these lengths are tiny; checkpointing only costs a recompute.
    # Turn it on only on a GPU with under 8 GiB.
    if placement.device.type == "cuda":
        import torch

        return torch.cuda.get_device_properties(placement.device).total_memory < 8 * 2**30
    return False


def train_model(output_dir: str | os.PathLike = DEFAULT_OUTPUT_DIR, resume: bool = False, callbacks=(),
                **kwargs) -> TrainResult:
    """Train a LoRA adapter and save it (atomically) to `output_dir`; evaluate unless evaluate=False.

    kwargs are TrainConfig fields. Checkpoints go to `<output_dir>-checkpoints`; resume=True
    continues from the newest complete one with the configuration it was started with.
    """
    from transformers import set_seed

    from .atomic import atomic_directory
    from .base_llm import BaseLLM
    from .collate import DynamicPaddingCollator
    from .data import Dataset
    from .health import HealthGuard, enforce_preflight, format_findings, preflight_scan
    from .metrics import plot_curves, write_metrics
    from .trainer import SupervisedTrainer

    unknown = set(kwargs) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise HomeworkError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    cfg = TrainConfig(**kwargs)
    output_dir = Path(output_dir)
    ckpt_root = checkpoints_dir(output_dir)
    resume_from = None
    if resume:
        resume_from = last_complete_checkpoint(ckpt_root)
        if resume_from is None:
            raise HomeworkError(f"--resume: no complete checkpoint under {ckpt_root}; start a fresh run without --resume")
        saved_cfg = ckpt_root / TRAIN_CONFIG_FILE
        if saved_cfg.is_file():  # a resumed run must continue the same schedule and adapter layout
            cfg = saved_train_config(saved_cfg, progress=cfg.progress)

    faults.apply_to_config(cfg)
    set_seed(cfg.seed)
    t_start = time.perf_counter()
    llm = BaseLLM(cfg.model, cfg.device)
    placement = llm.placement
    if placement.device.type == "cpu":
        from . import allocator

        allocator.keep_freed_memory()  # reuse activation memory instead of faulting it in every step
    train_data = Dataset(cfg.train_file)
    if cfg.limit:
        train_data.data = train_data.data[: cfg.limit]
    tokenized = TokenizedDataset(llm.tokenizer, train_data, answer_formatter(cfg.answer_format),
                                 max_length=cfg.max_length, pad=False)
    faults.apply_to_rows(tokenized.rows, llm.tokenizer.eos_token_id)

    model = build_lora_model(llm.model, cfg)
    faults.apply_to_model(model)
    use_ckpt = _use_checkpointing(cfg, placement)
    if use_ckpt:
        model.enable_input_require_grads()  # catalog row 8
    if cfg.preflight:
        dtype = next(p.dtype for p in model.parameters())
        findings = preflight_scan(llm.tokenizer, tokenized, model=model, device=placement.device, dtype=dtype, source=str(train_data.path), questions=tokenized.questions,
                                  answers=tokenized.answers)
        for w in enforce_preflight(findings, str(train_data.path)):
            warnings.warn("pre-flight: " + format_findings([w], str(train_data.path)), stacklevel=2)

    group_by_length = placement.groups_by_length if cfg.group_by_length is None else cfg.group_by_length
    guard = HealthGuard(verbose_epochs=cfg.progress)
    args = make_training_args(cfg, ckpt_root, placement, use_ckpt)
    trainer = SupervisedTrainer(
        model=model, args=args, train_dataset=tokenized,
        data_collator=DynamicPaddingCollator(llm.tokenizer.pad_token_id), callbacks=[guard, *callbacks], health_guard=guard,
        group_by_length=group_by_length,
    )
    ckpt_root.mkdir(parents=True, exist_ok=True)
    (ckpt_root / TRAIN_CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg.progress:
        print(f"[homework] model {llm.model_spec.describe()} on {placement.describe()}; {len(tokenized)} rows; "
              f"LoRA r={cfg.lora_rank} alpha={cfg.lora_alpha} on {_layers_text(cfg.lora_layers)}: "
              f"{trainable:,} trainable parameters; "
              f"gradient checkpointing {'on' if use_ckpt else 'off'}", flush=True)
    t_train = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        trainer._save_checkpoint(trainer.model, trial=None)
        print(f"\n[homework] interrupted at step {trainer.state.global_step}; checkpoint saved under {ckpt_root}.\n"
              "Resume with: python -m homework.sft train --resume", file=sys.stderr, flush=True)
        raise
    train_seconds = time.perf_counter() - t_train
    result = TrainResult(output_dir, guard.records, train_seconds)

    with atomic_directory(output_dir) as staging:
        model.save_pretrained(staging)
        (staging / TRAIN_CONFIG_FILE).write_text(json.dumps(
            {**dataclasses.asdict(cfg), "model": cfg.model or os.environ.get("HOMEWORK_MODEL") or "embedded"}, indent=2))
        write_metrics(staging, guard.records, train_seconds=train_seconds, config=dataclasses.asdict(cfg),
                      model=llm.model_spec.describe(), device=placement.describe())
        plot_curves(staging, guard.records, title=f"SFT {llm.model_spec.name} r={cfg.lora_rank} lr={cfg.learning_rate}")
    if cfg.progress:
        print(f"[homework] trained {len(guard.records)} steps in {train_seconds:.1f} s; adapter saved to {output_dir}\n"
              f"[homework] metrics: {output_dir / 'metrics.json'}  curves: {output_dir / 'training_curves.png'}",
              flush=True)

    if cfg.evaluate:
        # The adapter is saved; folding it into the base weights makes generation ~20% faster.
        llm.model = model.merge_and_unload().eval()
        bench, seconds = _evaluate(llm, cfg.valid_file, cfg.eval_limit)
        result.accuracy, result.answer_rate, result.eval_seconds = bench.accuracy, bench.answer_rate, seconds
        _write_results(output_dir, bench, seconds, cfg.valid_file)
        print(f"[homework] validation: accuracy={bench.accuracy:.3f} answer_rate={bench.answer_rate:.3f} "
              f"({len(bench.samples)} questions in {seconds:.1f} s); total {time.perf_counter() - t_start:.0f} s",
              flush=True)
    return result


def _evaluate(llm, valid_file: str, limit: int | None):
    from .data import Dataset, benchmark

    data = Dataset(valid_file)
    n = min(len(data), limit or len(data))
    print(f"[homework] evaluating {n} questions from {data.path} (batched greedy generation) ...", flush=True)
    t = time.perf_counter()
    bench = benchmark(llm, data, limit)
    return bench, time.perf_counter() - t


def _write_results(output_dir: Path, bench, seconds: float, valid_file: str) -> None:
    from .atomic import atomic_write_json

    atomic_write_json(output_dir / RESULTS_FILE, {
        "valid_file": valid_file, "accuracy": bench.accuracy, "answer_rate": bench.answer_rate,
        "questions": len(bench.samples), "seconds": seconds,
        "misses": [s for s in bench.samples if not s["is_correct"]][:50],
    })


# --------------------------------------------------------------------------- loading and testing


def load(path: str | os.PathLike = DEFAULT_OUTPUT_DIR, device: str | None = None, merge: bool = True):
    """The base model with the trained adapter, as a BaseLLM (its prompt is the training prompt).

    merge=True folds the adapter into the base weights for faster generation; merge=False keeps
    the PeftModel (bit-identical logits to the trained model, and the adapter can be trained on).
    """
    from peft import PeftModel

    from .base_llm import BaseLLM
    from .errors import ModelResolutionError

    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise ModelResolutionError(f"no adapter at {path} (adapter_config.json missing); run `python -m homework.sft train` first")
    cfg_file = path / TRAIN_CONFIG_FILE
    model_spec = json.loads(cfg_file.read_text()).get("model") if cfg_file.is_file() else None
    llm = BaseLLM(None if model_spec in (None, "embedded") else model_spec, device)
    model = PeftModel.from_pretrained(llm.model, str(path)).to(llm.device)
    llm.model = (model.merge_and_unload() if merge else model).eval()
    return llm


def test_model(ckpt_path: str | os.PathLike = DEFAULT_OUTPUT_DIR, valid_file: str = "valid", limit: int | None = None):
    llm = load(ckpt_path)
    bench, seconds = _evaluate(llm, valid_file, limit)
    print(f"[homework] validation: accuracy={bench.accuracy:.3f} answer_rate={bench.answer_rate:.3f} "
          f"({len(bench.samples)} questions in {seconds:.1f} s)")
    return bench


# --------------------------------------------------------------------------- CLI


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="'embedded' (default), a local model directory, or a hub id; also $HOMEWORK_MODEL")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda[:N]; also $HOMEWORK_DEVICE")


def _layers_text(last_layers: int | None) -> str:
    return "every layer" if last_layers is None else f"the last {last_layers} layers"


def _layer_count(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of layers or 'all', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m homework.sft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = TrainConfig()
    t = sub.add_parser("train", help="train a LoRA adapter, save it, evaluate it")
    _add_model_args(t)
    t.add_argument("--output-dir", default=str(DEFAULT_OUTPUT_DIR))
    t.add_argument("--train-file", default=d.train_file, help="split name under data/ or a .json path")
    t.add_argument("--valid-file", default=d.valid_file)
    t.add_argument("--epochs", type=float, default=d.epochs)
    t.add_argument("--max-steps", type=int, default=d.max_steps, help="overrides --epochs when > 0")
    t.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate")
    t.add_argument("--rank", type=int, default=d.lora_rank, dest="lora_rank")
    t.add_argument("--alpha", type=int, default=d.lora_alpha, dest="lora_alpha")
    t.add_argument("--lora-layers", type=_layer_count, default=d.lora_layers, metavar="N|all",
                   help="put LoRA on the last N decoder layers only, or on all of them (default: %(default)s)")
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--grad-accum", type=int, default=d.grad_accum)
    t.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=None,
                   help="batches of similar-length rows (default: on for CPU, off for CUDA, where it measured slower)")
    t.add_argument("--no-fused-lora", action="store_false", dest="fused_lora",
                   help="use peft's own LoRA forward instead of the fused one")
    t.add_argument("--max-length", type=int, default=d.max_length)
    t.add_argument("--answer-format", choices=["expression", "number"], default=d.answer_format,
                   help="train on <answer>6 * 1000 / 1</answer> (default) or <answer>6000</answer>")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--limit", type=int, default=None, help="train on the first N rows")
    t.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N validation rows")
    t.add_argument("--save-steps", type=int, default=d.save_steps, help="checkpoint every N steps (0: never)")
    t.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"], default=d.gradient_checkpointing)
    t.add_argument("--no-eval", action="store_false", dest="evaluate")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this output dir")
    s = sub.add_parser("test", help="reload a saved adapter and evaluate it")
    s.add_argument("path", nargs="?", default=str(DEFAULT_OUTPUT_DIR))
    s.add_argument("--valid-file", default="valid")
    s.add_argument("--limit", type=int, default=None)
    doc = sub.add_parser("doctor", help="pre-flight scan, 3-step smoke run, save/reload and prompt checks")
    _add_model_args(doc)
    doc.add_argument("--train-file", default="train")
    doc.add_argument("--steps", type=int, default=3)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # transformers 5 / peft rename warnings say nothing actionable to someone running the CLI
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6.*", category=FutureWarning)
    try:
        if args.command == "train":
            opts = {k: v for k, v in vars(args).items() if k not in ("command", "output_dir", "resume")}
            train_model(args.output_dir, resume=args.resume, **opts)
        elif args.command == "test":
            test_model(args.path, args.valid_file, args.limit)
        elif args.command == "doctor":
            from .doctor import run_doctor

            return run_doctor(model=args.model, device=args.device, train_file=args.train_file, steps=args.steps)
    except HomeworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
