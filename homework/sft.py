"""Supervised fine-tuning with LoRA: the course interface.

The course's names live here (format_example, tokenize, TokenizedDataset, train_model, test_model, load);
the pieces they use have a module each: config.py (TrainConfig), lora.py (adapters), recipe.py (model,
data, collator and trainer from a config), cli.py (the command line: `python -m homework.sft train`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import distributed, report
from .checkpoints import checkpoint_step, checkpoints_dir, last_complete_checkpoint, new_run_id, retire_earlier_run
from .config import (
    DEFAULT_OUTPUT_DIR,
    RESULTS_FILE,
    TRAIN_CONFIG_FILE,
    TrainConfig,
    make_config,
    resumed_config,
    saved_train_config,
)
from .errors import HomeworkError
from .formats import answer_formatter, format_example
from .tokenization import TokenizedDataset, tokenize

__all__ = ["DEFAULT_OUTPUT_DIR", "RESULTS_FILE", "TRAIN_CONFIG_FILE", "TokenizedDataset", "TrainConfig", "TrainResult",
           "answer_formatter", "format_example", "load", "test_model", "tokenize", "train_model"]


@dataclass
class TrainResult:
    output_dir: Path
    records: list = field(default_factory=list)
    train_seconds: float = 0.0
    accuracy: float | None = None
    answer_rate: float | None = None
    eval_seconds: float | None = None
    heldout_accuracy: float | None = None  # on data/heldout.json: phrasings and spellings never trained on
    heldout_answer_rate: float | None = None
    structures_accuracy: float | None = None  # on data/heldout_structures.json: sentence structures never trained on
    structures_answer_rate: float | None = None
    handwritten_accuracy: float | None = None  # on data/handwritten.json: questions typed by hand
    handwritten_answer_rate: float | None = None


def train_model(output_dir: str | os.PathLike = DEFAULT_OUTPUT_DIR, resume: bool = False, callbacks=(),
                **kwargs) -> TrainResult:
    """Train a LoRA adapter and save it (atomically) to `output_dir`; evaluate unless evaluate=False.

    kwargs are TrainConfig fields, validated. Checkpoints go to `<output_dir>-checkpoints`; a fresh run moves an
    earlier run's checkpoints aside. resume=True continues the last run from its newest complete checkpoint with
    the configuration it was started with; of kwargs, the resumable options are applied and any other that differs
    from the run is refused. A run that trains no step saves nothing.
    """
    from .atomic import atomic_directory, atomic_write_json
    from .metrics import plot_curves, write_metrics
    from .recipe import build_recipe, run_preflight

    cfg = make_config(**kwargs)  # every option validated, the resumed run's too
    output_dir = Path(output_dir)
    ckpt_root = checkpoints_dir(output_dir)
    main = distributed.is_main()  # the one process that writes files, prints and evaluates
    resume_from, start_step = None, 0
    if resume:
        saved_file = ckpt_root / TRAIN_CONFIG_FILE
        saved_cfg, run_id = saved_train_config(saved_file) if saved_file.is_file() else (cfg, None)
        resume_from = last_complete_checkpoint(ckpt_root, run_id)
        if resume_from is None:
            raise HomeworkError(f"--resume: no complete checkpoint of the last run under {ckpt_root}; "
                                "start a fresh run without --resume")
        # the run continues with its own schedule, data and adapter; only how it is watched and graded may change
        cfg, applied = resumed_config(saved_cfg, kwargs)
        start_step = checkpoint_step(resume_from) or 0
        report.info(f"resuming run {run_id or '(unnamed)'} from {resume_from.name}"
                    + (f"; applied from this call: {', '.join(applied)}" if applied else ""), show=cfg.progress)
    else:
        run_id = new_run_id()
        aside = retire_earlier_run(ckpt_root) if main else None
        if aside is not None:
            report.info(f"a fresh run: the earlier run's checkpoints were moved to {aside}", show=cfg.progress)

    t_start = time.perf_counter()
    recipe = build_recipe(cfg, ckpt_root, callbacks=callbacks)
    llm, model, trainer, guard = recipe.llm, recipe.model, recipe.trainer, recipe.guard
    trainer.run_id = run_id
    if cfg.preflight:
        _agreed(run_preflight, recipe)
    if main:
        atomic_write_json(ckpt_root / TRAIN_CONFIG_FILE, {**dataclasses.asdict(cfg), "run_id": run_id})
        report.info(recipe.describe(), show=cfg.progress)
    t_train = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        if distributed.world_size() == 1:
            trainer._save_checkpoint(trainer.model, trial=None)
            where = f"checkpoint saved under {ckpt_root}"
        else:  # the processes were interrupted at different points: no collective save now
            where = f"the last periodic checkpoint under {ckpt_root} is kept"
        report.notice(f"interrupted at step {trainer.state.global_step}; {where}.\n"
                      "Resume with: python -m homework.sft train --resume")
        raise
    train_seconds = time.perf_counter() - t_train
    if trainer.state.global_step <= start_step:  # nothing saved is replaced by a run that trained nothing
        finished = f"; the run had already finished at step {start_step}" if resume else ""
        raise HomeworkError(f"trained 0 optimizer steps{finished}: nothing saved, {output_dir} left as it was")
    result = TrainResult(output_dir, guard.records, train_seconds)
    if not main:
        return result

    with atomic_directory(output_dir) as staging:
        model.save_pretrained(staging)
        (staging / TRAIN_CONFIG_FILE).write_text(json.dumps(
            {**dataclasses.asdict(cfg), "model": cfg.model or os.environ.get("HOMEWORK_MODEL") or "embedded"}, indent=2))
        write_metrics(staging, guard.records, train_seconds=train_seconds, config=dataclasses.asdict(cfg),
                      model=llm.model_spec.describe(), device=recipe.placement.describe(),
                      processes=distributed.world_size())
        plot_curves(staging, guard.records, title=f"SFT {llm.model_spec.name} r={cfg.lora_rank} lr={cfg.learning_rate}")
    report.info(f"trained {len(guard.records)} steps in {train_seconds:.1f} s; adapter saved to {output_dir}",
                show=cfg.progress)
    report.info(f"metrics: {output_dir / 'metrics.json'}  curves: {output_dir / 'training_curves.png'}",
                show=cfg.progress)

    if cfg.evaluate:
        # The adapter is saved; folding it into the base weights makes generation ~20% faster.
        llm.model = model.merge_and_unload().eval()
        files = evaluation_files(cfg)
        evaluations = _evaluate_all(llm, files, cfg.eval_limit)
        bench, seconds = evaluations["valid"]
        result.accuracy, result.answer_rate, result.eval_seconds = bench.accuracy, bench.answer_rate, seconds
        for name, (graded, family_seconds) in evaluations.items():
            if name != "valid":
                setattr(result, f"{name}_accuracy", graded.accuracy)
                setattr(result, f"{name}_answer_rate", graded.answer_rate)
                result.eval_seconds += family_seconds
        summary = _write_results(output_dir, evaluations, files)
        _add_to_metrics(output_dir, summary)
        report.info(f"total {time.perf_counter() - t_start:.0f} s")
    return result


def _agreed(check, *args):
    """Run a check that may raise a HomeworkError on some processes only; every process raises the same
    error (or none), so none is left waiting for the others."""
    try:
        check(*args)
        problem = None
    except HomeworkError as exc:
        problem = exc
    problem = distributed.agree_on_failure(problem)
    if problem is not None:
        raise problem


# The families graded after training: the TrainConfig option naming each file, and how it is reported.
EVALUATION_FAMILIES = {
    "valid": ("valid_file", "validation"),
    "heldout": ("heldout_file", "held-out phrasings and spellings"),
    "structures": ("structures_file", "held-out sentence structures"),
    "handwritten": ("handwritten_file", "hand-written questions"),
}


def evaluation_files(cfg: TrainConfig) -> dict[str, str]:
    """{family: file} for the families cfg grades (valid always; the others unless their option is unset)."""
    return {name: getattr(cfg, option) for name, (option, _) in EVALUATION_FAMILIES.items() if getattr(cfg, option)}


def _evaluate_all(llm, files: dict[str, str], limit: int | None) -> dict:
    """Grade every family in `files` ({family: file}; "valid" first): the in-family check and the held-out
    families -- phrasings, spellings and sentence structures never trained on, and questions typed by hand,
    which is what a new user's questions look like. Every question goes through one batched generation (fewer,
    fuller batches); each file is graded and printed on its own."""
    from .data import BenchmarkResult, Dataset, benchmark

    rows = {name: list(Dataset(f).data)[: limit or None] for name, f in files.items()}
    every = [r for part in rows.values() for r in part]
    report.info(f"evaluating {' + '.join(f'{len(r)} ({files[n]})' for n, r in rows.items())} questions "
                "(batched greedy generation) ...")
    t = time.perf_counter()
    samples = benchmark(llm, every).samples
    seconds = time.perf_counter() - t
    out, start = {}, 0
    for name, part in rows.items():
        share = samples[start:start + len(part)]
        start += len(part)
        bench = BenchmarkResult.from_samples(share)
        out[name] = (bench, seconds * len(part) / len(every))
        report.info(f"{EVALUATION_FAMILIES[name][1]}: accuracy={bench.accuracy:.3f} answer_rate={bench.answer_rate:.3f} ({len(share)} questions)")
    report.info(f"evaluated {len(every)} questions in {seconds:.1f} s")
    return out


def _write_results(output_dir: Path, evaluations: dict, files: dict) -> dict:
    """eval_results.json: accuracy, answer rate and misses per evaluation file; returns the summary without
    the misses (for metrics.json)."""
    from .atomic import atomic_write_json

    summary, full = {}, {}
    for name, (bench, seconds) in evaluations.items():
        summary[name] = {"file": files[name], "accuracy": bench.accuracy, "answer_rate": bench.answer_rate,
                         "questions": len(bench.samples), "seconds": seconds}
        full[name] = {**summary[name], "misses": [s for s in bench.samples if not s["is_correct"]][:50]}
    valid = full.pop("valid")
    # the valid split's figures stay at the top level, where earlier runs and tools read them
    atomic_write_json(output_dir / RESULTS_FILE, {"valid_file": valid.pop("file"), **valid, **full})
    return summary


def _add_to_metrics(output_dir: Path, summary: dict) -> None:
    from .atomic import atomic_write_json

    path = output_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    atomic_write_json(path, {**metrics, "evaluation": summary})


# --------------------------------------------------------------------------- loading and testing


def load(path: str | os.PathLike = DEFAULT_OUTPUT_DIR, device: str | None = None, merge: bool = True):
    """The base model with the trained adapter, as a BaseLLM (its prompt is the training prompt).

    merge=True folds the adapter into the base weights for faster generation; merge=False keeps
    the PeftModel (bit-identical logits to the trained model, and the adapter can be trained on).
    """
    from peft import PeftModel

    from .atomic import recover_directory
    from .base_llm import BaseLLM
    from .errors import ModelResolutionError

    path = Path(path)
    recover_directory(path, drop_stale=False)  # a save killed between its two renames left the old one aside
    if not (path / "adapter_config.json").is_file():
        raise ModelResolutionError(f"no adapter at {path} (adapter_config.json missing); run `python -m homework.sft train` first")
    cfg_file = path / TRAIN_CONFIG_FILE
    model_spec = json.loads(cfg_file.read_text()).get("model") if cfg_file.is_file() else None
    llm = BaseLLM(None if model_spec in (None, "embedded") else model_spec, device)
    model = PeftModel.from_pretrained(llm.model, str(path)).to(llm.device)
    llm.model = (model.merge_and_unload() if merge else model).eval()
    return llm


def test_model(ckpt_path: str | os.PathLike = DEFAULT_OUTPUT_DIR, valid_file: str = "valid", limit: int | None = None,
               heldout_file: str | None = None, structures_file: str | None = None, handwritten_file: str | None = None):
    """Reload a saved adapter and grade it on `valid_file` and on each held-out family given; returns the
    validation BenchmarkResult."""
    llm = load(ckpt_path)
    given = {"valid": valid_file, "heldout": heldout_file, "structures": structures_file,
             "handwritten": handwritten_file}
    return _evaluate_all(llm, {name: f for name, f in given.items() if f}, limit)["valid"][0]


if __name__ == "__main__":
    from .cli import main

    raise SystemExit(main())
