"""The command line: `python -m homework.sft train | test | doctor` (also the `homework-sft` script).

    python -m homework.sft train [--epochs N ...]   train, save the adapter to homework/sft_model, evaluate
    python -m homework.sft test  [PATH]             reload the adapter and evaluate it on data/valid.json
    python -m homework.sft doctor [--model ...]     pre-flight scan + 3-step smoke run + save/reload check
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .config import DEFAULT_OUTPUT_DIR, TrainConfig
from .errors import HomeworkError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="'embedded' (default), a local model directory, or a hub id; also $HOMEWORK_MODEL")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda[:N]; also $HOMEWORK_DEVICE")


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
    t.add_argument("--heldout-file", default=d.heldout_file,
                   help="questions in phrasings and spellings never trained on, graded too ('' to skip)")
    t.add_argument("--epochs", type=float, default=d.epochs)
    t.add_argument("--max-steps", type=int, default=d.max_steps, help="overrides --epochs when > 0")
    t.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate")
    t.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
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
    t.add_argument("--answer-format", choices=["named", "expression", "number"], default=d.answer_format,
                   help="train on 'kilogram to gram: <answer>6 * 1000 / 1</answer>', <answer>6 * 1000 / 1</answer> "
                        "or <answer>6000</answer> (default: %(default)s)")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--limit", type=int, default=None, help="train on the first N rows")
    t.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N validation rows")
    t.add_argument("--save-steps", type=int, default=d.save_steps, help="checkpoint every N steps (0: never)")
    t.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"], default=d.gradient_checkpointing)
    t.add_argument("--no-eval", action="store_false", dest="evaluate")
    t.add_argument("--no-preflight", action="store_false", dest="preflight",
                   help="skip the pre-flight scan of the rows and the model (the live guard still runs)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this output dir")
    s = sub.add_parser("test", help="reload a saved adapter and evaluate it")
    s.add_argument("path", nargs="?", default=str(DEFAULT_OUTPUT_DIR))
    s.add_argument("--valid-file", default="valid")
    s.add_argument("--heldout-file", default="heldout", help="also graded ('' to skip)")
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
            from .sft import train_model

            opts = {k: v for k, v in vars(args).items() if k not in ("command", "output_dir", "resume")}
            train_model(args.output_dir, resume=args.resume, **opts)
        elif args.command == "test":
            from .sft import test_model

            test_model(args.path, args.valid_file, args.limit, args.heldout_file or None)
        elif args.command == "doctor":
            from .doctor import run_doctor

            return run_doctor(model=args.model, device=args.device, train_file=args.train_file, steps=args.steps)
    except HomeworkError as exc:
        from .distributed import is_main

        # an error every process agreed on (distributed.agree_on_failure) is printed once, by rank 0
        if is_main() or not getattr(exc, "agreed", False):
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
