"""Grading a trained adapter: the evaluation families (in-family, held-out spellings, held-out structures,
hand-written), one batched generation over all of them, eval_results.json and metrics.json; reloading a saved
adapter (`load`) and grading it again (`test_model`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..runtime import report
from .config import DEFAULT_OUTPUT_DIR, RESULTS_FILE, TRAIN_CONFIG_FILE, TrainConfig

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


def evaluate_families(llm, files: dict[str, str], limit: int | None) -> dict:
    """Grade every family in `files` ({family: file}; "valid" first): the in-family check and the held-out
    families -- phrasings, spellings and sentence structures never trained on, and questions typed by hand,
    which is what a new user's questions look like. Every question goes through one batched generation (fewer,
    fuller batches); each file is graded and printed on its own."""
    from ..data import BenchmarkResult, Dataset, benchmark

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


def write_results(output_dir: Path, evaluations: dict, files: dict) -> dict:
    """eval_results.json: accuracy, answer rate and misses per evaluation file; returns the summary without
    the misses (for metrics.json)."""
    from ..runtime.atomic import atomic_write_json

    summary, full = {}, {}
    for name, (bench, seconds) in evaluations.items():
        summary[name] = {"file": files[name], "accuracy": bench.accuracy, "answer_rate": bench.answer_rate,
                         "questions": len(bench.samples), "seconds": seconds}
        full[name] = {**summary[name], "misses": [s for s in bench.samples if not s["is_correct"]][:50]}
    valid = full.pop("valid")
    # the valid split's figures stay at the top level, where earlier runs and tools read them
    atomic_write_json(output_dir / RESULTS_FILE, {"valid_file": valid.pop("file"), **valid, **full})
    return summary


def add_to_metrics(output_dir: Path, summary: dict) -> None:
    from ..runtime.atomic import atomic_write_json

    path = output_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    atomic_write_json(path, {**metrics, "evaluation": summary})


# --------------------------------------------------------------------------- loading and testing


def load(path: str | os.PathLike = DEFAULT_OUTPUT_DIR, device: str | None = None, merge: bool = True,
         precision: str | None = None):
    """The base model with the trained adapter, as a BaseLLM (its prompt is the training prompt).

    merge=True folds the adapter into the base weights for faster generation; merge=False keeps
    the PeftModel (bit-identical logits to the trained model, and the adapter can be trained on).
    """
    from peft import PeftModel

    from ..base_llm import BaseLLM
    from ..runtime.atomic import recover_directory
    from ..runtime.errors import ModelResolutionError

    path = Path(path)
    recover_directory(path, drop_stale=False)  # a save killed between its two renames left the old one aside
    if not (path / "adapter_config.json").is_file():
        raise ModelResolutionError(f"no adapter at {path} (adapter_config.json missing); run `python -m homework.sft train` first")
    cfg_file = path / TRAIN_CONFIG_FILE
    model_spec = json.loads(cfg_file.read_text()).get("model") if cfg_file.is_file() else None
    llm = BaseLLM(None if model_spec in (None, "embedded") else model_spec, device, precision)
    model = PeftModel.from_pretrained(llm.model, str(path)).to(llm.device)
    llm.model = (model.merge_and_unload() if merge else model).eval()
    return llm


def test_model(ckpt_path: str | os.PathLike = DEFAULT_OUTPUT_DIR, valid_file: str = "valid", limit: int | None = None,
               heldout_file: str | None = None, structures_file: str | None = None, handwritten_file: str | None = None):
    """Reload a saved adapter and grade it on `valid_file` and on each held-out family given; returns the
    validation BenchmarkResult."""
    from .config import make_config

    cfg = make_config(valid_file=valid_file, heldout_file=heldout_file, structures_file=structures_file,
                      handwritten_file=handwritten_file)  # the same checks, and '' skips a family, as in train
    return evaluate_families(load(ckpt_path), evaluation_files(cfg), limit)["valid"][0]
