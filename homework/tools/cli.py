"""The command line: `python -m homework.sft train | test | doctor` (also the `homework-sft` script).

    python -m homework.sft train [--epochs N ...]   train, save the adapter to homework/sft_model, evaluate
    python -m homework.sft test  [PATH]             reload the adapter and evaluate it on data/valid.json
    python -m homework.sft doctor [--model ...]     pre-flight scan + 3-step smoke run + save/reload check
    python -m homework.sft check PATH               the SFT checks on a course homework/ package written elsewhere

`train`'s options are generated from TrainConfig's fields (config.py: help, default, accepted range), and
only the options given on the command line reach `train_model`: a resumed run can tell what was asked for.
"""

from __future__ import annotations

import argparse
import warnings

from ..runtime.errors import HomeworkError
from ..training.config import DEFAULT_OUTPUT_DIR, TrainConfig, accepted_range, flag_of, options
from .check.runner import TIME_LIMIT


def _typed(f):
    """argparse type for a field: its own parser, or its kind with the field's name in the error."""
    parse = f.metadata["parse"] or f.metadata["kind"]

    def convert(text: str):
        if text == "" and f.metadata["allow_none"]:
            return None
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {accepted_range(f)}, got {text!r}") from None

    convert.__name__ = f.name
    return convert


def add_config_options(parser: argparse.ArgumentParser, names=None) -> None:
    """One flag per TrainConfig field (or the named ones), with its help and default; unset flags stay absent
    from the parsed namespace."""
    defaults = TrainConfig()
    for f in options():
        if names is not None and f.name not in names:
            continue
        m, default = f.metadata, getattr(defaults, f.name)
        shown = "all" if f.name == "lora_layers" and default is None else ("unset" if default is None else default)
        help_ = f"{m['help']} (default: {shown})".replace("%", "%%")
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=help_)
        if m["kind"] is bool:
            parser.add_argument(flag_of(f), action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(flag_of(f), type=_typed(f), choices=m["choices"], metavar=m["metavar"], **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m homework.sft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a LoRA adapter, save it, evaluate it")
    t.add_argument("--output-dir", default=str(DEFAULT_OUTPUT_DIR), help="where the adapter goes (default: %(default)s)")
    t.add_argument("--resume", action="store_true",
                   help="continue this output dir's interrupted run from its last checkpoint; options that would "
                        "change its schedule, data or adapter are refused, the others applied")
    add_config_options(t)
    s = sub.add_parser("test", help="reload a saved adapter and evaluate it")
    s.add_argument("path", nargs="?", default=str(DEFAULT_OUTPUT_DIR))
    add_config_options(s, names={"valid_file", "heldout_file", "structures_file", "handwritten_file", "eval_limit"})
    doc = sub.add_parser("doctor", help="pre-flight scan, 3-step smoke run, save/reload and prompt checks")
    add_config_options(doc, names={"model", "device", "precision", "train_file"})
    doc.add_argument("--steps", type=int, default=3, help="optimizer steps of the smoke run (default: %(default)s)")
    c = sub.add_parser("check", help="check a course homework/ package written elsewhere: rows, prompts, "
                                     "generation, 3 training steps, save and load")
    c.add_argument("path", help="the folder holding their homework/ package (a repository or an unzipped submission)")
    c.add_argument("--model", default=None, help="model directory to run their code on, in place of their hub "
                                                 "checkpoint (default: the embedded model)")
    c.add_argument("--json", dest="json_file", default=None, metavar="FILE", help="also write the results as JSON")
    c.add_argument("--time-limit", type=_positive, default=TIME_LIMIT, metavar="S",
                   help="seconds each check may take (default: %(default)s)")
    c.add_argument("--steps", type=int, default=3, choices=range(1, 101), metavar="N",
                   help="optimizer steps of their train_model (default: %(default)s)")
    c.add_argument("--only", default=None, metavar="CHECK,...", help="run only these checks (imports always runs, steps with compat, saved or reload)")
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def given_options(args: argparse.Namespace) -> dict:
    """The TrainConfig options present on the command line."""
    names = {f.name for f in options()}
    return {k: v for k, v in vars(args).items() if k in names}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # transformers 5 / peft rename warnings say nothing actionable to someone running the CLI
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6.*", category=FutureWarning)
    try:
        if args.command == "train":
            from ..training.run import train_model

            train_model(args.output_dir, resume=args.resume, **given_options(args))
        elif args.command == "test":
            from ..training.config import make_config
            from ..training.evaluation import test_model

            cfg = make_config(**given_options(args))  # the same defaults and checks as train's evaluation
            test_model(args.path, cfg.valid_file, cfg.eval_limit, cfg.heldout_file, cfg.structures_file,
                       cfg.handwritten_file)
        elif args.command == "check":
            from .check.runner import main_check

            only = [c.strip() for c in args.only.split(",") if c.strip()] if args.only else None
            return main_check(args.path, args.model, args.json_file, args.time_limit, args.steps, only)
        elif args.command == "doctor":
            from .doctor import run_doctor

            opts = given_options(args)
            return run_doctor(model=opts.get("model"), device=opts.get("device"), precision=opts.get("precision"),
                              train_file=opts.get("train_file", "train"), steps=args.steps)
    except HomeworkError as exc:
        from ..runtime import report

        # an error every process agreed on (distributed.agree_on_failure) is printed once, by rank 0
        report.error(str(exc), agreed=getattr(exc, "agreed", False))
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
