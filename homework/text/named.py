"""What a named answer claims: `mass: kilogram to gram: <answer>6 * 1000 / 1</answer>` names the kind and both
units before its expression. parse_answer (answers.py) checks the expression against the value the named units
give its leading quantity, so an expression that mixes kinds is never graded as a confident number."""

from __future__ import annotations

import functools
import re

from .vocabulary import base_factor, reading, units

# The named answer's prefix: "mass: kilogram to gram: " right before the tag. No standard name holds " to ".
_NAMED = re.compile(r"([a-z]+): ([A-Za-z][A-Za-z. ]*?) to ([A-Za-z][A-Za-z. ]*?):\s*$")
_LEADING_NUMBER = re.compile(r"[\s(]*([-+−]?\s*(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)")


@functools.lru_cache(maxsize=1)
def _standard_names() -> dict[str, object]:
    return {unit.canonical: unit for unit in units()}


def named_units(head: str):
    """What the named prefix of a generated answer (`head`: its text before the answer tag) claims: (source, target) units, False when it names
    units that cannot be converted into each other, None when there is no named prefix or a name is not in
    the vocabulary (nothing to check against).

    Names are read as the standard names first, then as any spelling. Where the two are of different kinds,
    a name BY_KIND gives another meaning is read in the kind word's kind, then in the other unit's
    ("volume: quart to ounce" is a fluid ounce); a kind word alone never makes two units of one kind wrong."""
    match = _NAMED.search(head.rsplit("\n", 1)[-1])
    if match is None:
        return None
    kind, names = match.group(1), (match.group(2).strip(), match.group(3).strip())
    owners = [_standard_names().get(n) or reading(n) for n in names]
    if None in owners:
        return None
    for k in (None, kind, owners[0].dimension, owners[1].dimension):
        src, dst = owners if k is None else [reading(n, k) or u for u, n in zip(owners, names)]
        if src.dimension == dst.dimension:
            return src, dst
    return False


def named_value(claim, expression: str) -> float | None:
    """The value the units `named_units` found give the quantity the expression starts with; None without
    units or a leading quantity."""
    number = _LEADING_NUMBER.match(expression)
    if not claim or number is None:
        return None
    src, dst = claim
    q = float(re.sub(r"[\s,_]", "", number.group(1)).replace("−", "-"))
    return q * base_factor(src.key, src.dimension) / base_factor(dst.key, dst.dimension)
