"""Training run end to end: a validated configuration -> the recipe -> pre-flight -> training with checkpoints
(resume continues the same run) -> the adapter saved atomically with its metrics and curves -> evaluation."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime import distributed, report
from ..runtime.errors import HomeworkError
from .checkpoints import checkpoint_step, checkpoints_dir, last_complete_checkpoint, new_run_id, retire_earlier_run
from .config import DEFAULT_OUTPUT_DIR, TRAIN_CONFIG_FILE, make_config, resumed_config, saved_train_config


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
    from ..runtime.atomic import atomic_directory, atomic_write_json
    from .evaluation import add_to_metrics, evaluate_families, evaluation_files, write_results
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
        # The adapter is saved; folding it into the base weights makes generation ~20% faster. Generation may
        # want another precision than training (fp32 after bf16 training on a CPU): cast before folding, so the
        # update is added at the higher precision.
        generation = recipe.placement.for_generation()
        if generation.dtype != recipe.placement.dtype:
            model = model.to(generation.dtype)
            llm.placement = generation
            report.info(f"evaluating on {generation.explain()}", show=cfg.progress)
        llm.model = model.merge_and_unload().eval()
        files = evaluation_files(cfg)
        evaluations = evaluate_families(llm, files, cfg.eval_limit)
        bench, seconds = evaluations["valid"]
        result.accuracy, result.answer_rate, result.eval_seconds = bench.accuracy, bench.answer_rate, seconds
        for name, (graded, family_seconds) in evaluations.items():
            if name != "valid":
                setattr(result, f"{name}_accuracy", graded.accuracy)
                setattr(result, f"{name}_answer_rate", graded.answer_rate)
                result.eval_seconds += family_seconds
        summary = write_results(output_dir, evaluations, files)
        add_to_metrics(output_dir, summary)
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
