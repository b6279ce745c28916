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
import math
import re

from .answers import ANSWER_CLOSE, ANSWER_OPEN, format_number, wrap_answer
from .vocabulary import base_factor

# A quantity as people write it: 6, 2.5, 0.25, 1,500; glued to its unit ("12km") or not. Digits inside a unit
# (cm3, m^3, m**3) are not quantities.
_QUANTITY = re.compile(r"(?<![\w.^*,])((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?![\d,.]\d|\d)")


@functools.lru_cache(maxsize=1)
def _surface_forms() -> list[tuple[str, object]]:
    from .vocabulary import units

    forms = [(name, unit) for unit in units() for name in unit.names]
    return sorted(forms, key=lambda f: -len(f[0]))  # longest first: "fluid ounces" before "ounces"


def _mentions(question: str) -> list[tuple[int, object]]:
    """(position, unit) for every unit name standing alone as a word in the question."""
    return [(pos, unit) for pos, unit, _ in unit_spellings(question)]


@functools.lru_cache(maxsize=1)
def _unit_pattern():
    """One alternation of every spelling, longest first, so that at each position the longest spelling wins
    ("kilometers per hour" over "kilometers"). A spelling is not part of a word or of another unit ("m" in
    "m/s", "cm3", "I'm"), but may follow a digit ("12km")."""
    forms = _surface_forms()
    alternation = "|".join(re.escape(name) for name, _ in forms)
    return re.compile(r"(?<![A-Za-z/^*'])(?:" + alternation + r")(?![\w/^*])"), dict(forms)


def unit_spellings(question: str) -> list[tuple[int, object, str]]:
    """(position, unit, spelling) for every unit spelling in the question, in order."""
    pattern, unit_of = _unit_pattern()
    return [(m.start(), unit_of[m.group()], m.group()) for m in pattern.finditer(question)]


def format_factor(value: float) -> str:
    """A unit's factor to its base unit, short: 4 significant digits, and powers of ten as e-notation where
    plain digits would run long (3155760000 -> 3.156e9, 0.00001639 -> 1.639e-5): a digit to recall, not a
    count of zeros to get right."""
    exponent = math.floor(math.log10(abs(value)))
    if -3 <= exponent < 5:
        return format_number(value)
    mantissa = format_number(value / 10 ** exponent)
    if mantissa == "10":  # 9.9996e5 rounds up to 10e5
        mantissa, exponent = "1", exponent + 1
    return f"{mantissa}e{exponent}"


def _candidates(question: str, qm) -> list[tuple[object, object]]:
    """(source, target) pairs the question can mean, most likely first. A unit right after the quantity
    ("6 kg", "6kg") is its unit, if another unit of its kind is there to convert to. Otherwise the quantity is
    a count ("kg to g for 6 units", "g from kg: 6") and any two units of one kind may be the pair. A spelling
    BY_KIND gives another meaning takes it beside a unit of that kind ("quart to ounce")."""
    from .vocabulary import reading

    spelled = unit_spellings(question)
    kinds = {unit.dimension for _, unit, _ in spelled}

    def pairs(sources):
        out = []
        for *_, s_text in sources:
            for *_, d_text in spelled:
                for kind in sorted(kinds):
                    src, dst = reading(s_text, kind), reading(d_text, kind)
                    if src is not dst and src.dimension == dst.dimension == kind and (src, dst) not in out:
                        out.append((src, dst))
        return out

    attached = [m for m in spelled if m[0] >= qm.end() and not question[qm.end():m[0]].strip()]
    return pairs(attached[:1]) or pairs(spelled)


def read_conversion(question: str, answer: float):
    """(quantity as written, source unit, target unit) such that quantity * factor(source) / factor(target)
    is `answer` within 0.5 %, or None if the question can't be read that way. The quantity is the first
    number; which units it converts is in `_candidates`."""
    from .answers import evaluate_expression

    qm = _QUANTITY.search(question)
    if qm is None or not answer:
        return None
    q = qm.group(1)
    for src, dst in _candidates(question, qm):
        value = evaluate_expression(_expression(q, src, dst))
        if abs(value - answer) <= 5e-3 * abs(answer):
            return q, src, dst
    return None


def _expression(q: str, src, dst) -> str:
    return (f"{q} * {format_factor(base_factor(src.key, src.dimension))} / "
            f"{format_factor(base_factor(dst.key, dst.dimension))}")


def unit_expression(question: str, answer: float) -> str | None:
    """`q * Fsrc / Fdst` that evaluates to `answer` (within 0.5%), or None if the question can't be read."""
    found = read_conversion(question, answer)
    return _expression(*found) if found else None


def format_example_expression(question: str, answer: float) -> dict[str, str]:
    """Like `format_example`, with the answer written as a unit expression where the question allows."""
    expr = unit_expression(question, answer)
    return {"question": question, "answer": f"{ANSWER_OPEN}{expr}{ANSWER_CLOSE}" if expr else wrap_answer(answer)}


def format_example_named(question: str, answer: float) -> dict[str, str]:
    """The expression format preceded by the kind of quantity and the two units' standard names:
    `mass: kilogram to gram: <answer>6 * 1000 / 1</answer>` for "How many g per 6 KG?".

    Naming first splits the work: read whatever spelling the question uses as a standard unit (language,
    which the base model brings), then recall that unit's factor (a table of ~50 entries, the same tokens
    in every row whatever the spelling). The kind comes first because either unit settles it, and it then
    settles an unfamiliar spelling of the other ("GAL" beside "millilitre" is a volume: gallon, not
    gigabyte). The graded value is still the model's own expression; parse_answer reads only the tag."""
    found = read_conversion(question, answer)
    if not found:  # the course's number format
        return {"question": question, "answer": wrap_answer(answer)}
    q, src, dst = found
    return {"question": question, "answer": f"{src.dimension}: {src.canonical} to {dst.canonical}: "
                                            f"{ANSWER_OPEN}{_expression(q, src, dst)}{ANSWER_CLOSE}"}
