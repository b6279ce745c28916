"""Answer formats by name: the course's number format and the expression format (expression_format.py)."""

from __future__ import annotations

from ..runtime.errors import HomeworkError
from .answers import wrap_answer

ANSWER_FORMATS = ("named", "expression", "number")  # the names TrainConfig.answer_format accepts


def format_example(question: str, answer: float) -> dict[str, str]:
    """The course's formatter: the answer rounded to 4 significant digits inside <answer> tags."""
    return {"question": question, "answer": wrap_answer(answer)}


def answer_formatter(name: str):
    """The format_fn for an answer format name."""
    from .expression_format import format_example_expression, format_example_named

    formats = {"named": format_example_named, "expression": format_example_expression, "number": format_example}
    if name not in formats:
        raise HomeworkError(f"unknown answer format {name!r}: choose from {', '.join(formats)}")
    return formats[name]
