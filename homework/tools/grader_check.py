"""The course grader's calling convention, run against a copy of this package laid out as a submission.

    python -m homework.tools.grader_check [--adapter DIR] [--questions 32] [--bench-questions 100] [--json FILE]

The course's grader puts the submission folder (`homework/`, `data/`) first on sys.path, imports the
package with `importlib.import_module("homework")` and from then on only reads attributes of it. This
tool does the same in a fresh interpreter, so a name that exists only after some other import (a lazy
submodule, an attribute set as a side effect) fails here as it fails there. Its three cases:

  generate  BaseLLM() -> model.eval() -> llm.generate(q) one question at a time       (grader limit 40 s)
  batched   the same questions through llm.batched_generate(questions)                  (grader limit 15 s)
  sft       load_sft() -> parameter count -> data.benchmark(llm, data.Dataset("valid"), 100)  (limit 60 s)

For the generation cases the grader scores the base model's mean token loss on question + generation
(full points at <= 6.2, none at >= 8.0); for the SFT case the accuracy (0.4 -> none, 0.6 -> full). The
printed fractions are what those rules would give; the seconds are this machine's, beside the limits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..runtime import report
from ..training.config import DEFAULT_OUTPUT_DIR

# load_sft() reads the adapter from homework/sft_model: the submission carries it there
PACKAGE_DIR, ADAPTER_DIR_NAME = DEFAULT_OUTPUT_DIR.parent, DEFAULT_OUTPUT_DIR.name
LIMITS = {"generate": 40.0, "batched": 15.0, "sft": 60.0}
LOSS_FULL, LOSS_NONE = 6.2, 8.0
ACCURACY_NONE, ACCURACY_FULL = 0.4, 0.6
MAX_PARAMETERS = 380_000_000

# The generation cases' loss, as source text: the child runs it (it imports nothing of this tool, as the grader
# imports nothing of a submission's tools), and `token_loss` below runs the same text here, so tests can hold it
# to the rule on a padded batch. The mean over every token the attention mask marks real: with pad == EOS a
# mask by pad id would also drop real EOS tokens, and no mask at all would score the padding.
TOKEN_LOSS = r"""
def token_loss(llm, texts):
    import torch
    tok = llm.tokenizer
    enc = tok(texts, return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"].to(llm.device), enc["attention_mask"].to(llm.device)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        return float(llm.model(input_ids=ids, attention_mask=mask, labels=labels).loss)
"""


def token_loss(llm, texts: list[str]) -> float:
    """The base model's mean token cross-entropy over `texts` (padded together), as the child computes it."""
    namespace: dict = {}
    exec(TOKEN_LOSS, namespace)  # noqa: S102 - this module's own constant, the child's exact text
    return namespace["token_loss"](llm, texts)


# The child: attribute access on the imported module only, as the grader does.
_CHILD = r"""
import importlib, json, math, sys, time
submission, n_questions, n_bench = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, submission)
module = importlib.import_module("homework")
out = {"package_file": module.__file__}
""" + TOKEN_LOSS + r"""
llm = module.BaseLLM()
llm.model.eval()
questions = [q for q, _ in module.data.Dataset("valid")][:n_questions]
t = time.perf_counter()
one_by_one = [llm.generate(q) for q in questions]
out["generate"] = {"seconds": time.perf_counter() - t, "outputs": one_by_one,
                   "loss": token_loss(llm, [q + a for q, a in zip(questions, one_by_one)])}
t = time.perf_counter()
batched = llm.batched_generate(questions)
out["batched"] = {"seconds": time.perf_counter() - t, "outputs": batched,
                  "loss": token_loss(llm, [q + a for q, a in zip(questions, batched)])}
del llm
t = time.perf_counter()
sft = module.load_sft()
parameters = sum(p.numel() for p in sft.model.parameters())
result = module.data.benchmark(sft, module.data.Dataset("valid"), n_bench)
out["sft"] = {"seconds": time.perf_counter() - t, "parameters": parameters, "accuracy": result.accuracy,
              "answer_rate": result.answer_rate, "questions": len(result.samples)}
print("GRADER-CHECK " + json.dumps(out))
"""


def lay_out_submission(dest: str | os.PathLike, adapter: str | os.PathLike | None = None) -> Path:
    """Copy the package (without trained artifacts) and data/ into `dest` as the grader receives them; put
    `adapter` (a saved adapter directory) where load_sft() reads it. Returns `dest`."""
    from ..data import data_dir

    dest = Path(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", f"{ADAPTER_DIR_NAME}*")
    shutil.copytree(PACKAGE_DIR, dest / "homework", ignore=ignore)
    shutil.copytree(data_dir(), dest / "data", ignore=shutil.ignore_patterns("*.tmp"))
    if adapter is not None:
        shutil.copytree(adapter, dest / "homework" / ADAPTER_DIR_NAME)
    return dest


def run_cases(submission: str | os.PathLike, questions: int = 32, bench_questions: int = 100,
              timeout: float = 900) -> dict:
    """Run the three cases in a fresh interpreter whose working directory is the submission; the environment
    keeps the model cache settings but drops PYTHONPATH, so only the submission's package can be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HOMEWORK_DATA_DIR")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(submission), str(questions), str(bench_questions)],
                          cwd=submission, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("GRADER-CHECK ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        joined = "\n".join(tail)
        raise RuntimeError(f"the grader's calling convention failed (exit {proc.returncode}):\n{joined}")
    return json.loads(lines[-1].removeprefix("GRADER-CHECK "))


def loss_fraction(loss: float) -> float:
    """The share of a generation case's points that the grader's loss rule gives."""
    return min(1.0, max(0.0, (LOSS_NONE - loss) / (LOSS_NONE - LOSS_FULL)))


def accuracy_fraction(accuracy: float) -> float:
    """The share of the SFT case's points that the grader's accuracy rule gives."""
    return min(1.0, max(0.0, (accuracy - ACCURACY_NONE) / (ACCURACY_FULL - ACCURACY_NONE)))


def score(results: dict) -> dict:
    """Per case: seconds, limit, the figure graded and the share of points (0 when over the limit)."""
    rows = {}
    for case in ("generate", "batched", "sft"):
        r = results[case]
        within = r["seconds"] <= LIMITS[case]
        if case == "sft":
            figure = ("accuracy", r["accuracy"])
            share = accuracy_fraction(r["accuracy"]) if r["parameters"] <= MAX_PARAMETERS else 0.0
        else:
            figure = ("loss", r["loss"])
            share = loss_fraction(r["loss"])
        rows[case] = {"seconds": r["seconds"], "limit": LIMITS[case], "graded": figure[0], "value": figure[1],
                      "share": share if within else 0.0}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homework.tools.grader_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=str(PACKAGE_DIR / ADAPTER_DIR_NAME),
                        help="the trained adapter to submit (default: %(default)s)")
    parser.add_argument("--questions", type=int, default=32, help="questions in the generation cases (grader: 32)")
    parser.add_argument("--bench-questions", type=int, default=100, help="questions in the SFT case (grader: 100)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (Path(args.adapter) / "adapter_config.json").is_file():
        report.error(f"--adapter {args.adapter}: no adapter_config.json; train first (python -m homework.sft train)")
        return 2
    with tempfile.TemporaryDirectory(prefix="homework-submission-") as tmp:
        results = run_cases(lay_out_submission(tmp, args.adapter), args.questions, args.bench_questions)
    rows = score(results)
    report.result(f"{'case':<9} {'seconds':>8} {'limit':>6}  graded")
    for case, row in rows.items():
        report.result(f"{case:<9} {row['seconds']:8.1f} {row['limit']:6.0f}  {row['graded']} {row['value']:.3f} "
              f"-> {row['share']:.0%} of the case's points")
    report.result(f"SFT model: {results['sft']['parameters']:,} parameters (limit {MAX_PARAMETERS:,})")
    if args.json:
        from ..runtime.atomic import atomic_write_json

        atomic_write_json(args.json, {"results": results, "scores": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
