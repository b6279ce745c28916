"""Formatting answers for training and parsing them back out of generations."""

from __future__ import annotations

import math
import os
import re

from .named import named_units, named_value

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
SIGNIFICANT_DIGITS = 4  # ~0.05% rounding error, far inside the 5% grading tolerance

# What parse_answer does with a named answer ("volume: quart to fluid ounce: <answer>6 * 0.9464 / 28.35") whose
# expression disagrees with the units it names: "nan" counts it unanswered, "repair" recomputes it from the
# named units and the expression's leading quantity, "off" grades the expression as written. Repairing, the
# model's own words (its units and its quantity) decide the number, only the factor is looked up, as the
# expression format already leaves the arithmetic to us. "constrain" repairs too, and before that BaseLLM decodes
# again, inside the head grammar, a greedy generation whose head is never right: two kinds, or one unit named
# twice (head_grammar.py). It is the default: graded all four ways on two adapters, it scored highest on every
# evaluation family (docs/results.md). HOMEWORK_NAMED_CHECK picks another without retraining.
NAMED_CHECKS = ("constrain", "repair", "nan", "off")
NAMED_CHECK_ENV = "HOMEWORK_NAMED_CHECK"
DEFAULT_NAMED_CHECK = "constrain"
# The grading tolerance (data.RELATIVE_TOLERANCE): an expression this close to its named units' value would be
# graded the same either way, so only a disagreement that changes the grade is caught.
NAMED_TOLERANCE = 0.05

_NUMBER = re.compile(r"[-+−]?\s*(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def format_number(value: float, significant: int = SIGNIFICANT_DIGITS) -> str:
    """Plain decimal, no exponent, no trailing zeros: whole numbers keep every integer digit (65745 stays
    65745), smaller values are rounded to `significant` significant digits (0.0027473 -> 0.002747)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot format a non-finite answer: {value!r}")
    if value == 0:
        return "0"
    decimals = max(significant - 1 - math.floor(math.log10(abs(value))), 0)
    rounded = round(value, decimals)
    text = f"{rounded:.{decimals}f}"
    if "." in text:  # four significant digits keep a non-zero digit, so this never strips to "" or "-0"
        text = text.rstrip("0").rstrip(".")
    return text


def wrap_answer(value: float) -> str:
    return f"{ANSWER_OPEN}{format_number(value)}{ANSWER_CLOSE}"


class _ExpressionParser:
    """Recursive-descent evaluator for + - * / and parentheses over decimal numbers. No eval()."""

    _TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|(.))")

    def __init__(self, text: str):
        self.tokens = []
        for number, op in self._TOKEN.findall(text.strip()):
            if number:
                self.tokens.append(("num", float(number)))
            elif op.strip():
                if op not in "+-*/()×÷":
                    raise ValueError(op)
                self.tokens.append(("op", {"×": "*", "÷": "/"}.get(op, op)))
        self.pos = 0

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self):
        tok = self._peek()
        self.pos += 1
        return tok

    def parse(self) -> float:
        if not self.tokens or len(self.tokens) > 64:
            raise ValueError("empty or too long")
        value = self._sum()
        if self.pos != len(self.tokens):
            raise ValueError("trailing tokens")
        return value

    def _sum(self) -> float:
        value = self._product()
        while self._peek() in (("op", "+"), ("op", "-")):
            op = self._take()[1]
            value = value + self._product() if op == "+" else value - self._product()
        return value

    def _product(self) -> float:
        value = self._unary()
        while self._peek() in (("op", "*"), ("op", "/")):
            op = self._take()[1]
            right = self._unary()
            value = value * right if op == "*" else value / right  # ZeroDivisionError -> NaN below
        return value

    def _unary(self) -> float:
        kind, val = self._peek()
        if (kind, val) in (("op", "-"), ("op", "+")):
            self._take()
            return -self._unary() if val == "-" else self._unary()
        if (kind, val) == ("op", "("):
            self._take()
            value = self._sum()
            if self._take() != ("op", ")"):
                raise ValueError("unbalanced")
            return value
        if kind == "num":
            self._take()
            return val
        raise ValueError("expected a number")


def evaluate_expression(text: str) -> float:
    """Value of an arithmetic expression such as "6 * 1000 / 1"; raises ValueError if it is not one."""
    # Python floats overflow to inf rather than raise, and 64 tokens bound the recursion depth, so a
    # division by zero is the only arithmetic error left.
    try:
        return _ExpressionParser(text.replace(",", "").replace("_", "").replace("−", "-")).parse()
    except ZeroDivisionError:
        return float("nan")


def named_check(mode: str | None = None) -> str:
    """The named-answer check in force: `mode`, else $HOMEWORK_NAMED_CHECK, else DEFAULT_NAMED_CHECK."""
    mode = mode or os.environ.get(NAMED_CHECK_ENV) or DEFAULT_NAMED_CHECK
    if mode not in NAMED_CHECKS:
        raise ValueError(f"{NAMED_CHECK_ENV}={mode!r}: choose from {', '.join(NAMED_CHECKS)}")
    return mode


def parse_answer(text: str, check: str | None = None) -> float:
    """The value inside the first <answer> tag; NaN when there is none.

    The tag may hold a number or an arithmetic expression ("6 * 1000 / 1", the expression answer
    format). Tolerates a missing closing tag, thousands separators, signs, spaces and scientific
    notation; with trailing words ("3 km") the first number counts.

    A named answer ("mass: kilogram to gram: <answer>6 * 1000 / 1") whose expression is more than
    NAMED_TOLERANCE off the value its named units give the expression's leading quantity, or whose named
    units are of two kinds, is caught: see NAMED_CHECKS. A bare number or text that is no expression is
    not checked (it has no quantity to check).
    """
    if not isinstance(text, str):
        return float("nan")
    mode = named_check(check)
    start = text.find(ANSWER_OPEN)
    if start < 0:
        return float("nan")
    body = text[start + len(ANSWER_OPEN):]
    end = body.find(ANSWER_CLOSE)
    if end >= 0:
        body = body[:end]
    value, is_expression = _tag_value(body)
    if mode == "off" or math.isnan(value) or not is_expression or ":" not in text[:start]:
        return value
    claim = named_units(text[:start])
    if claim is False:  # units of two kinds: nothing to grade or repair
        return float("nan")
    expected = named_value(claim, body)
    if expected is None or not math.isfinite(expected) or abs(value - expected) <= NAMED_TOLERANCE * abs(expected):
        return value
    return float("nan") if mode == "nan" else expected


def _tag_value(body: str) -> tuple[float, bool]:
    """The value of the tag's text, and whether it is a product or quotient (an expression with a quantity)."""
    try:
        value = evaluate_expression(body)
        return (value if math.isfinite(value) else float("nan")), any(op in body for op in "*/×÷")
    except ValueError:
        pass
    match = _NUMBER.search(body)
    if match is None:
        return float("nan"), False
    token = re.sub(r"[\s,_]", "", match.group(0)).replace("−", "-")  # the pattern allows any space after a sign
    try:
        value = float(token)
    except ValueError:  # defensive: parse_answer reads model output and must never raise
        return float("nan"), False
    return (value if math.isfinite(value) else float("nan")), False
