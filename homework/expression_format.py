"""The expression answer format: `<answer>6 * 1000 / 1</answer>` for "How many gram are there per 6 kg?".

A 135M model is poor at multi-digit multiplication and at memorising ~180 pairwise factors from a
few examples each. Written as `quantity * (source unit in base units) / (target unit in base units)`,
the answer asks the model for what it can learn -- copy the quantity, recall one factor per unit
(~40 of them, each seen ~100 times per epoch) -- and leaves the arithmetic to `parse_answer`, which
evaluates + - * / safely. The value graded is the same number; `format_example` (the course's plain
`<answer>6000</answer>`) stays available and is what the seed snippet uses.
"""

from __future__ import annotations

import functools
import re

from .answers import ANSWER_CLOSE, ANSWER_OPEN, format_number, wrap_answer

BASE_UNIT = {"length": "meter", "mass": "gram", "time": "second", "volume": "liter", "speed": "meter / second",
             "data": "byte"}
_QUANTITY = re.compile(r"(?<![\w.^])(\d+(?:\.\d+)?)(?![\w.])")


@functools.lru_cache(maxsize=1)
def _surface_forms() -> list[tuple[str, object]]:
    from .datagen import UNITS

    forms = [(name, unit) for unit in UNITS for name in unit.names]
    return sorted(forms, key=lambda f: -len(f[0]))  # longest first: "fluid ounces" before "ounces"


@functools.cache
def base_factor(unit_key: str, dimension: str) -> float:
    from .datagen import conversion_factor

    return conversion_factor(unit_key, BASE_UNIT[dimension])


def _mentions(question: str) -> list[tuple[int, object]]:
    """(position, unit) for every unit name standing alone as a word in the question."""
    found, taken = [], set()
    for name, unit in _surface_forms():
        for m in re.finditer(r"(?<![\w/^])" + re.escape(name) + r"(?![\w/^])", question):
            span = set(range(m.start(), m.end()))
            if span & taken:
                continue
            taken |= span
            found.append((m.start(), unit))
    return sorted(found, key=lambda f: f[0])


def unit_expression(question: str, answer: float) -> str | None:
    """`q * Fsrc / Fdst` that evaluates to `answer` (within 0.5%), or None if the question can't be read."""
    from .answers import evaluate_expression

    qm = _QUANTITY.search(question)
    if qm is None:
        return None
    q = qm.group(1)
    mentions = _mentions(question)
    after = [u for pos, u in mentions if pos >= qm.end()]
    for src in after[:1]:
        for _, dst in mentions:
            if dst is src or dst.dimension != src.dimension:
                continue
            expr = (f"{q} * {format_number(base_factor(src.key, src.dimension))} / "
                    f"{format_number(base_factor(dst.key, dst.dimension))}")
            value = evaluate_expression(expr)
            if answer and abs(value - answer) <= 5e-3 * abs(answer):
                return expr
    return None


def format_example_expression(question: str, answer: float) -> dict[str, str]:
    """Like `format_example`, with the answer written as a unit expression where the question allows."""
    expr = unit_expression(question, answer)
    return {"question": question, "answer": f"{ANSWER_OPEN}{expr}{ANSWER_CLOSE}" if expr else wrap_answer(answer)}
