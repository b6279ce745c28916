"""Seeded generator of unit-conversion questions in the course format: [[question, answer], ...].

Conversion factors come from pint, not from a hand-written table.
`python -m homework.datagen` rewrites data/train.json and data/valid.json byte for byte;
`python -m homework.datagen --check` verifies the committed files match.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SEED = 20261125
N_TRAIN = 2000
N_VALID = 300


@dataclass(frozen=True)
class Unit:
    key: str  # pint expression for one of this unit
    names: tuple[str, ...]  # surface forms: plural, singular, symbol
    dimension: str


def _u(dimension: str, key: str, *names: str) -> Unit:
    return Unit(key, names, dimension)


UNITS: tuple[Unit, ...] = (
    # length
    _u("length", "millimeter", "millimeters", "millimeter", "mm"),
    _u("length", "centimeter", "centimeters", "centimeter", "cm"),
    _u("length", "meter", "meters", "meter", "m", "metres"),
    _u("length", "kilometer", "kilometers", "kilometer", "km"),
    _u("length", "inch", "inches", "inch", "in"),
    _u("length", "foot", "feet", "foot", "ft"),
    _u("length", "mile", "miles", "mile", "mi"),
    # mass
    _u("mass", "milligram", "milligrams", "milligram", "mg"),
    _u("mass", "gram", "grams", "gram", "g"),
    _u("mass", "kilogram", "kilograms", "kilogram", "kg"),
    _u("mass", "metric_ton", "metric tons", "tonnes", "tonne"),
    _u("mass", "ounce", "ounces", "ounce", "oz"),
    _u("mass", "pound", "pounds", "pound", "lb", "lbs"),
    # time
    _u("time", "second", "seconds", "second", "s", "sec"),
    _u("time", "minute", "minutes", "minute", "min"),
    _u("time", "hour", "hours", "hour", "h", "hr"),
    _u("time", "day", "days", "day"),
    _u("time", "week", "weeks", "week"),
    _u("time", "month", "months", "month"),
    _u("time", "year", "years", "year", "yr"),
    _u("time", "10 * year", "decades", "decade"),
    _u("time", "100 * year", "centuries", "century"),
    # volume
    _u("volume", "milliliter", "milliliters", "milliliter", "ml", "mL"),
    _u("volume", "liter", "liters", "liter", "l", "litres"),
    _u("volume", "meter ** 3", "cubic meters", "cubic meter", "m^3"),
    _u("volume", "gallon", "gallons", "gallon", "gal"),
    _u("volume", "cup", "cups", "cup"),
    # speed
    _u("speed", "meter / second", "meters per second", "m/s"),
    _u("speed", "kilometer / hour", "kilometers per hour", "km/h", "kph"),
    _u("speed", "mile / hour", "miles per hour", "mph"),
    _u("speed", "knot", "knots", "knot", "kn"),
    # data sizes (SI prefixes, as pint defines them: 1 kB = 1000 B)
    _u("data", "bit", "bits", "bit"),
    _u("data", "byte", "bytes", "byte", "B"),
    _u("data", "kilobyte", "kilobytes", "kilobyte", "kB", "KB"),
    _u("data", "megabyte", "megabytes", "megabyte", "MB"),
    _u("data", "gigabyte", "gigabytes", "gigabyte", "GB"),
    _u("data", "terabyte", "terabytes", "terabyte", "TB"),
)

# {q} quantity, {src} source unit, {dst} target unit. The last HELD_OUT templates appear only in
# the validation split, so valid accuracy also measures phrasings the model never trained on.
TEMPLATES: tuple[str, ...] = (
    "How many {dst} are there per {q} {src}?",
    "Convert {q} {src} to {dst}.",
    "What is {q} {src} in {dst}?",
    "{q} {src} is how many {dst}?",
    "How many {dst} are in {q} {src}?",
    "Express {q} {src} in {dst}.",
    "What is the value of {q} {src} in {dst}?",
    "Could you convert {q} {src} into {dst}?",
    "If I have {q} {src}, how many {dst} is that?",
    "{q} {src} equals how many {dst}?",
    "Please convert {q} {src} to {dst}.",
    "How much is {q} {src} in {dst}?",
    "Change {q} {src} into {dst}.",
    "Give me {q} {src} expressed in {dst}.",
    "I need {q} {src} in {dst}. What do I get?",
    "What do {q} {src} come to in {dst}?",
    "Turn {q} {src} into {dst}, please.",
    "{q} {src} = ? {dst}",
    "How many {dst} make up {q} {src}?",
    "Tell me how many {dst} correspond to {q} {src}.",
    "Find the number of {dst} in {q} {src}.",
    "what's {q} {src} in {dst}",
    "Converting {q} {src} to {dst} gives what?",
    "{q} {src} -> {dst}",
    "How many {dst} would {q} {src} be?",
    "Work out {q} {src} in {dst}.",
    "Quick question: {q} {src} in {dst}?",
    # held out of training
    "My recipe says {q} {src}. How many {dst} is that?",
    "Rewrite {q} {src} using {dst}.",
    "Roughly how many {dst} is {q} {src}?",
    "What number of {dst} matches {q} {src}?",
    "{q} {src} converted to {dst} is?",
)
HELD_OUT = 5


@functools.lru_cache(maxsize=1)
def _registry():
    import pint

    return pint.UnitRegistry()


@functools.cache
def conversion_factor(src_key: str, dst_key: str) -> float:
    """How many `dst` in one `src`, from pint."""
    ureg = _registry()
    ratio = ureg.parse_expression(src_key) / ureg.parse_expression(dst_key)
    return float(ratio.to("dimensionless").magnitude)


def _quantity(rng: random.Random) -> float:
    """Mostly small integers, plus decimals and larger numbers."""
    r = rng.random()
    if r < 0.55:
        return float(rng.randint(1, 20))
    if r < 0.75:
        return float(rng.randint(21, 200))
    if r < 0.9:
        return rng.randint(1, 99) / 10 + rng.randint(0, 9)  # e.g. 3.7, 12.5
    if r < 0.97:
        return rng.choice((0.25, 0.5, 0.75, 1.5, 2.5))
    return float(rng.randint(201, 5000))


def _format_quantity(q: float) -> str:
    return str(int(q)) if q == int(q) else f"{q:g}"


def _pairs() -> list[tuple[Unit, Unit]]:
    pairs = []
    for a in UNITS:
        for b in UNITS:
            if a is b or a.dimension != b.dimension:
                continue
            f = conversion_factor(a.key, b.key)
            # Keep answers a person would write without scientific notation.
            if 1e-6 <= f <= 1e7:
                pairs.append((a, b))
    return pairs


def generate(n: int, rng: random.Random, templates: tuple[str, ...]) -> list[list]:
    pairs = _pairs()
    rows: list[list] = []
    seen: set[str] = set()
    while len(rows) < n:
        src, dst = rng.choice(pairs)
        q = _quantity(rng)
        answer = q * conversion_factor(src.key, dst.key)
        if not (1e-3 <= abs(answer) <= 1e9):
            continue
        question = rng.choice(templates).format(
            q=_format_quantity(q), src=rng.choice(src.names), dst=rng.choice(dst.names)
        )
        if question in seen:
            continue
        seen.add(question)
        rows.append([question, float(f"{answer:.12g}")])
    return rows


def build_splits(seed: int = SEED, n_train: int = N_TRAIN, n_valid: int = N_VALID) -> dict[str, list[list]]:
    train_t, held_t = TEMPLATES[:-HELD_OUT], TEMPLATES[-HELD_OUT:]
    rng = random.Random(seed)
    valid = generate(n_valid * 3 // 4, rng, train_t) + generate(n_valid - n_valid * 3 // 4, rng, held_t)
    rng.shuffle(valid)
    valid_q = {q for q, _ in valid}
    train = [r for r in generate(n_train + n_valid, rng, train_t) if r[0] not in valid_q][:n_train]
    return {"train": train, "valid": valid}


def dumps(rows: list[list]) -> str:
    """One row per line: readable diffs, still plain JSON."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DATA_DIR, help="output directory (default: data/)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--check", action="store_true", help="verify the files in --out match, write nothing")
    args = p.parse_args(argv)
    splits = build_splits(args.seed)
    bad = []
    for name, rows in splits.items():
        path = args.out / f"{name}.json"
        text = dumps(rows)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                bad.append(str(path))
        else:
            from .atomic import atomic_write_bytes

            atomic_write_bytes(path, text.encode())
            print(f"wrote {len(rows)} rows to {path}")
    if bad:
        print("out of date (run python -m homework.datagen): " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
