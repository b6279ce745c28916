"""Loading and validating the course-format data, and grading answers."""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .runtime.errors import DataError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DATA_ENV = "HOMEWORK_DATA_DIR"
RELATIVE_TOLERANCE = 0.05
MAX_QUESTION_CHARS = 2000  # far above any real question; longer rows are data bugs


def data_dir() -> Path:
    """$HOMEWORK_DATA_DIR, else the repository's data/, else (an installed package, no checkout) the
    same splits regenerated once by the seeded generator into the cache."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    if (DATA_DIR / "train.json").is_file():
        return DATA_DIR
    from .datagen import generate
    from .runtime.model_source import cache_root

    generated = cache_root() / "data"
    if not (generated / "train.json").is_file():
        generate.main(["--out", str(generated)])
    return generated


def _problem(path: Path, index: int | None, what: str, fix: str) -> str:
    where = f"{path}" if index is None else f"{path}, row {index}"
    return f"{where}: {what}. Fix: {fix}"


def load_rows(path: str | os.PathLike) -> list[tuple[str, float]]:
    """Read and validate a course-format file: a JSON list of [question: str, answer: number]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(_problem(path, None, "file not found", "run `python -m homework.datagen` or pass an existing file"))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(_problem(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save the file as UTF-8 JSON")) from None
    except json.JSONDecodeError as exc:
        raise DataError(_problem(path, None, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                                 "write a JSON list of [question, answer] pairs")) from None
    if not isinstance(raw, list):
        raise DataError(_problem(path, None, f"top level is a JSON {type(raw).__name__}, not a list",
                                 "write a JSON list of [question, answer] pairs"))
    if not raw:
        raise DataError(_problem(path, None, "the list is empty", "add at least one [question, answer] pair"))
    rows: list[tuple[str, float]] = []
    problems: list[str] = []
    for i, row in enumerate(raw):
        msg = _row_problem(row)
        if msg:
            problems.append(_problem(path, i, msg[0], msg[1]))
            continue
        rows.append((row[0], float(row[1])))
    if problems:
        more = f"\n(and {len(problems) - 5} more rows)" if len(problems) > 5 else ""
        raise DataError(f"{len(problems)} invalid row(s) in {path}:\n" + "\n".join(problems[:5]) + more)
    dupes = sum(c - 1 for c in Counter(rows).values() if c > 1)
    if dupes:
        warnings.warn(f"{path}: {dupes} duplicated row(s); they are kept but weigh those examples more", stacklevel=2)
    return rows


def _row_problem(row) -> tuple[str, str] | None:
    if not isinstance(row, (list, tuple)) or len(row) != 2:
        return f"expected [question, answer], got {json.dumps(row)[:80]}", "make each row a 2-element list"
    question, answer = row
    if not isinstance(question, str):
        return f"question is a {type(question).__name__}, not a string", "put the question text first"
    if not question.strip():
        return "question is empty", "remove the row or write the question"
    if len(question) > MAX_QUESTION_CHARS:
        return f"question is {len(question)} characters (limit {MAX_QUESTION_CHARS})", "shorten or remove the row"
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return f"answer {json.dumps(answer)[:40]} is not a number", "write the answer as a JSON number"
    if not math.isfinite(float(answer)):
        return f"answer {answer!r} is not finite", "write a finite number"
    return None


class Dataset:
    """The course's Dataset: `Dataset("train")` reads data/train.json; a path works too."""

    def __init__(self, split: str):
        candidate = Path(split)
        self.path = candidate if candidate.suffix == ".json" else data_dir() / f"{split}.json"
        self.split = split
        self.data = load_rows(self.path)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: int) -> tuple[str, float]:
        return self.data[idx]


def is_answer_valid(answer: float, correct_answer: float, relative_tolerance: float = RELATIVE_TOLERANCE) -> bool:
    """True when `answer` is within `relative_tolerance` of `correct_answer` (NaN is never valid)."""
    try:
        answer, correct_answer = float(answer), float(correct_answer)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(answer) and math.isfinite(correct_answer)):
        return False
    if correct_answer == 0:
        return abs(answer) <= 1e-9
    return abs(answer - correct_answer) <= relative_tolerance * abs(correct_answer)


@dataclass
class BenchmarkResult:
    accuracy: float
    answer_rate: float
    samples: list[dict] = field(default_factory=list)

    @classmethod
    def from_samples(cls, samples: list[dict]) -> BenchmarkResult:
        n = len(samples)
        return cls(accuracy=sum(s["is_correct"] for s in samples) / n,
                   answer_rate=sum(not math.isnan(s["answer"]) for s in samples) / n, samples=samples)

    @property
    def wrong(self) -> int:
        return sum(1 for s in self.samples if not s["is_correct"] and not math.isnan(s["answer"]))

    @property
    def unanswered(self) -> int:
        return sum(1 for s in self.samples if math.isnan(s["answer"]))


def benchmark(model, dataset, max_question: int | None = None) -> BenchmarkResult:
    """Answer up to `max_question` questions; report accuracy and the rate of parseable answers."""
    rows = list(dataset.data if hasattr(dataset, "data") else dataset)[: max_question or None]
    if not rows:
        raise DataError("benchmark got no questions")
    answers = model.answer(*[q for q, _ in rows])
    return BenchmarkResult.from_samples([
        {"question": q, "answer": a, "correct_answer": c, "is_correct": is_answer_valid(a, c)}
        for (q, c), a in zip(rows, answers)
    ])
