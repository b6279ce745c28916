"""Seeded generator of unit-conversion questions in the course format: [[question, answer], ...].

Conversion factors come from pint, not from a hand-written table.
`python -m homework.datagen` rewrites data/train.json, data/valid.json (the same phrasings and unit
spellings as training, other questions) and data/heldout.json (phrasings and spellings never used in
training) byte for byte;
`python -m homework.datagen --check` verifies the committed files match.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from pathlib import Path

from .vocabulary import Unit, registry, split_forms, units

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SEED = 20261125
N_TRAIN = 1600
N_VALID = 300
N_HELDOUT = 300


UNITS: tuple[Unit, ...] = units()

# {q} quantity, {src} source unit, {dst} target unit. Two families: TRAIN_TEMPLATES make data/train.json and
# data/valid.json; HELD_OUT_TEMPLATES appear only in data/heldout.json, so that file measures phrasings the
# model never trained on (with unit spellings it never trained on, see vocabulary.split_forms).
TRAIN_TEMPLATES: tuple[str, ...] = (
    "How many {dst} are there per {q} {src}?",
    "Convert {q} {src} to {dst}.",
    "What is {q} {src} in {dst}?",
    "{q} {src} is how many {dst}?",
    "How many {dst} are in {q} {src}?",
    "How many {dst} in {q} {src}",
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
    "{q}{src} to {dst}",
    "How many {dst} make up {q} {src}?",
    "Tell me how many {dst} correspond to {q} {src}.",
    "Find the number of {dst} in {q} {src}.",
    "what's {q} {src} in {dst}",
    "Converting {q} {src} to {dst} gives what?",
    "{q} {src} -> {dst}",
    "{q} {src} to {dst}?",
    "How many {dst} would {q} {src} be?",
    "Work out {q} {src} in {dst}.",
    "Quick question: {q} {src} in {dst}?",
    "Translate {q} {src} into {dst}.",
    "How many {dst} for {q} {src}?",
    "In {dst}, how much is {q} {src}?",
    "Convert to {dst}: {q} {src}",
    "{dst} in {q} {src}?",
    "Can you tell me what {q} {src} is in {dst}?",
    "convert {q} {src} in {dst}",
    "What's the equivalent of {q} {src} in {dst}?",
    "{q} {src} in {dst} please",
    "I have {q} {src}. How many {dst} is that?",
    "Calculate {q} {src} in {dst}.",
    "How many {dst} does {q} {src} equal?",
)
HELD_OUT_TEMPLATES: tuple[str, ...] = (
    "My recipe says {q} {src}. How many {dst} is that?",
    "Rewrite {q} {src} using {dst}.",
    "Roughly how many {dst} is {q} {src}?",
    "What number of {dst} matches {q} {src}?",
    "{q} {src} converted to {dst} is?",
    "{q} {src} => {dst}",
    "Restate {q} {src} as {dst}.",
    "So {q} {src} would be how many {dst}?",
    "Show {q} {src} in terms of {dst}.",
    "What would {q} {src} be if measured in {dst}?",
    "Need {q}{src} as {dst}",
    "{q} {src}, in {dst}?",
    "If something is {q} {src}, what is it in {dst}?",
    "How many {dst} fit into {q} {src}?",
    "{q} {src} amounts to how many {dst}?",
)
TEMPLATES = TRAIN_TEMPLATES + HELD_OUT_TEMPLATES

# Sentences around the question, as people write them; none holds a digit or a unit name.
TRAIN_CONTEXT = (("I'm doing my physics homework.", "Hey there!", "Quick one for you.", "Hi, I have a question.",
                  "I'm working on a science project.", "My teacher asked us this."),
                 ("Thanks!", "Thank you.", "Just the number, please.", "Thanks a lot!", "Answer please."))
HELD_OUT_CONTEXT = (("Hello! I'm stuck on a worksheet.", "Sorry if this is basic.", "Settling an argument here."),
                    ("Much appreciated.", "Cheers!", "Any help is welcome."))
CONTEXT_SHARE = 0.2
@functools.cache
def conversion_factor(src_key: str, dst_key: str) -> float:
    """How many `dst` in one `src`, from pint."""
    ureg = registry()
    ratio = ureg.parse_expression(src_key) / ureg.parse_expression(dst_key)
    return float(ratio.to("dimensionless").magnitude)


def _quantity(rng: random.Random) -> str:
    """A quantity as people write it: small and large integers (with or without a thousands comma),
    one- and two-place decimals, and numbers below one with a leading 0."""
    r = rng.random()
    if r < 0.25:
        return str(rng.randint(1, 20))
    if r < 0.40:
        return str(rng.randint(21, 100))
    if r < 0.55:
        return str(rng.randint(101, 999))
    if r < 0.65:
        n = rng.randint(1000, 9999)
        return f"{n:,}" if rng.random() < 0.3 else str(n)
    if r < 0.85:
        return f"{rng.randint(11, 999) / 10:g}"  # 1.1 .. 99.9
    if r < 0.92:
        return f"{rng.randint(101, 9999) / 100:g}"  # 1.01 .. 99.99
    return f"{rng.randint(1, 99) / 100:g}"  # 0.01 .. 0.99


def _value(quantity: str) -> float:
    return float(quantity.replace(",", ""))


@functools.lru_cache(maxsize=1)
def _by_dimension() -> dict[str, list[Unit]]:
    out: dict[str, list[Unit]] = {}
    for unit in UNITS:
        out.setdefault(unit.dimension, []).append(unit)
    return out


def _pair(rng: random.Random) -> tuple[Unit, Unit]:
    """A dimension with weight by its number of units, then two of its units uniformly: every unit is a
    source or target about equally often, whatever its dimension's size."""
    dims = _by_dimension()
    names = sorted(dims)
    dim = rng.choices(names, weights=[len(dims[d]) for d in names])[0]
    while True:
        src, dst = rng.sample(dims[dim], 2)
        f = conversion_factor(src.key, dst.key)
        # Keep conversions a person would ask for: no 1:1 synonyms (cc and ml), nothing as far apart as
        # bits and terabytes.
        if 1e-9 <= f <= 1e12 and abs(f - 1) > 1e-9:
            return src, dst


def _decorate(question: str, rng: random.Random, context) -> str:
    """Sometimes a sentence before or after; sometimes no final punctuation or a lower-case start."""
    if rng.random() < CONTEXT_SHARE:
        before, after = context
        if rng.random() < 0.5:
            question = f"{rng.choice(before)} {question}"
        else:
            question = f"{question} {rng.choice(after)}"
    r = rng.random()
    if r < 0.1:
        question = question.rstrip("?.")
    elif r < 0.2:
        question = question[:1].lower() + question[1:]
    return question


def generate(n: int, rng: random.Random, templates: tuple[str, ...], family: int, context=TRAIN_CONTEXT,
             exclude: set[str] = frozenset()) -> list[list]:
    """n distinct rows from these templates, with unit spellings of the given family
    (0: training, 1: held out; see vocabulary.split_forms)."""
    forms = split_forms(SEED)
    rows: list[list] = []
    seen: set[str] = set(exclude)
    while len(rows) < n:
        src, dst = _pair(rng)
        q = _quantity(rng)
        answer = _value(q) * conversion_factor(src.key, dst.key)
        if not (1e-4 <= abs(answer) <= 1e12):
            continue
        question = rng.choice(templates).format(
            q=q, src=rng.choice(forms[src.key][family]), dst=rng.choice(forms[dst.key][family]))
        question = _decorate(question, rng, context)
        if question in seen:
            continue
        seen.add(question)
        rows.append([question, float(f"{answer:.12g}")])
    return rows


def build_splits(seed: int = SEED, n_train: int = N_TRAIN, n_valid: int = N_VALID,
                 n_heldout: int = N_HELDOUT) -> dict[str, list[list]]:
    rng = random.Random(seed)
    valid = generate(n_valid, rng, TRAIN_TEMPLATES, 0)
    heldout = generate(n_heldout, rng, HELD_OUT_TEMPLATES, 1, HELD_OUT_CONTEXT)
    train = generate(n_train, rng, TRAIN_TEMPLATES, 0, exclude={q for q, _ in valid})
    return {"train": train, "valid": valid, "heldout": heldout}


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
