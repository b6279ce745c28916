"""Seeded generator of unit-conversion questions in the course format: [[question, answer], ...].

Conversion factors come from pint, not from a hand-written table. Questions come from two sources: fixed
templates ("How many {dst} are there per {q} {src}?") and a grammar of structures, which composes a question
from parts -- where the quantity stands and how it is phrased, which unit comes first, the frame (question,
imperative, fragment, record) -- so that the model meets shapes no template has ("the conversion from kg to g
for 6 units", "kg → g: 6").

`python -m homework.datagen` rewrites, byte for byte:

- data/train.json and data/valid.json: training templates and structures, training spellings;
- data/heldout.json: templates and unit spellings never used in training;
- data/heldout_structures.json: whole productions of the grammar (order, quantity phrase, frame) never used
  in training, with training spellings;
- data/productions.json: the production each row of those files came from, and the held-out productions.

`python -m homework.datagen --check` verifies the committed files match.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
from pathlib import Path

from ..runtime import report
from ..text.vocabulary import BY_KIND, Unit, conversion_factor, split_forms, units

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SEED = 20261125
N_TRAIN = 2400  # 150 steps of 16: chosen at two seeds against 1,600 (docs/results.md)
N_VALID = 300
N_HELDOUT = 300
N_HELDOUT_STRUCTURES = 300


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

# The structure grammar. A production is (order, quantity phrase, frame), its id "order/phrase/frame".
# Orders say where the quantity stands: with its unit ("6 kg"), or as a count once both units are named.
ORDERS: dict[str, str] = {
    "qsrc-dst": "the quantity with its unit, then the target unit",
    "dst-qsrc": "the target unit, then the quantity with its unit",
    "src-dst-n": "both units, source first, then the quantity as a count",
    "dst-src-n": "both units, target first, then the quantity as a count",
    "n-src-dst": "the quantity as a count, then both units",
    "src-n-dst": "the source unit, the quantity as a count, then the target unit",
}
# How the quantity is phrased: with its unit (ATTACHED_ORDERS) or as a count of the source unit.
ATTACHED_ORDERS = ("qsrc-dst", "dst-qsrc")
ATTACHED_PHRASES = {"spaced": "{q} {src}", "glued": "{q}{src}", "total": "a total of {q} {src}"}
COUNT_PHRASES = {"bare": "{q}", "units": "{q} units", "them": "{q} of them", "count": "a count of {q}"}
FRAMES = ("question", "imperative", "fragment", "record")
# Wordings of each (order, frame); {Q} is the quantity phrase. A count is never followed by a space and a unit
# (it would read as that unit's quantity) nor by " in" (the inch).
SKELETONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("qsrc-dst", "question"): ("What is {Q} in {dst}?", "How much is {Q} when written in {dst}?",
                               "What does {Q} come out to in {dst}?", "Do you know what {Q} is in {dst}?"),
    ("qsrc-dst", "imperative"): ("Convert {Q} into {dst}.", "Please express {Q} as {dst}.", "Write {Q} in {dst}.",
                                 "Give me {Q} as {dst}, please."),
    ("qsrc-dst", "fragment"): ("{Q} to {dst}", "{Q} in {dst} pls", "{Q} as {dst}", "{Q} into {dst}?"),
    ("qsrc-dst", "record"): ("{Q} → {dst}", "{Q} -> {dst}:", "{Q} | {dst}", "{Q} = ? {dst}"),
    ("dst-qsrc", "question"): ("How many {dst} is {Q}?", "How many {dst} are there in {Q}?",
                               "What is the number of {dst} in {Q}?", "In {dst}, what is {Q}?"),
    ("dst-qsrc", "imperative"): ("Tell me the {dst} in {Q}.", "Give the number of {dst} for {Q}.",
                                 "Find how many {dst} make {Q}.", "Count the {dst} in {Q}, please."),
    ("dst-qsrc", "fragment"): ("{dst} in {Q}", "number of {dst} for {Q}", "{dst} for {Q}?", "how many {dst} for {Q}"),
    ("dst-qsrc", "record"): ("{dst} ← {Q}", "{dst} <- {Q}", "target {dst}; value {Q}", "want: {dst}, have: {Q}"),
    ("src-dst-n", "question"): ("What is the conversion from {src} to {dst} for {Q}?",
                                "From {src} to {dst}, what do I get for {Q}?", "How do {src} go into {dst} for {Q}?",
                                "What's {src} to {dst} with {Q}?"),
    ("src-dst-n", "imperative"): ("Convert {src} to {dst} for {Q}.", "Change {src} into {dst}: {Q}.",
                                  "Go from {src} to {dst} for {Q}, please.", "Please turn {src} into {dst} for {Q}."),
    ("src-dst-n", "fragment"): ("the conversion from {src} to {dst} for {Q}", "{src} to {dst} for {Q}",
                                "from {src} to {dst}: {Q}", "{src} into {dst}, {Q}"),
    ("src-dst-n", "record"): ("{src} → {dst}: {Q}", "{src}->{dst} {Q}", "{src} to {dst} | {Q}",
                              "{src} → {dst} ({Q})"),
    ("dst-src-n", "question"): ("How many {dst} from {src}, for {Q}?", "How many {dst} come from {src} with {Q}?",
                                "In {dst}, how much are {src} for {Q}?", "What are the {dst} from {src} for {Q}?"),
    ("dst-src-n", "imperative"): ("Give {dst} from {src} for {Q}.", "Find the {dst} from {src} for {Q}.",
                                  "Work out {dst} from {src}: {Q}.", "Please get {dst} from {src} for {Q}."),
    ("dst-src-n", "fragment"): ("{dst} from {src} for {Q}", "{dst} from {src}: {Q}", "want {dst}, have {src}, {Q}",
                                "{dst} out of {src} for {Q}"),
    ("dst-src-n", "record"): ("{dst} ← {src}: {Q}", "{dst}<-{src} {Q}", "to {dst} from {src} | {Q}",
                              "{dst} ← {src} ({Q})"),
    ("n-src-dst", "question"): ("For {Q}, what is {src} to {dst}?", "With {Q}, how do {src} turn into {dst}?",
                                "Given {Q}, what are {src} as {dst}?", "For {Q}, how much is {src} to {dst}?"),
    ("n-src-dst", "imperative"): ("For {Q}, convert {src} to {dst}.", "Take {Q} and change {src} into {dst}.",
                                  "Given {Q}, go from {src} to {dst}.", "With {Q}, turn {src} into {dst}, please."),
    ("n-src-dst", "fragment"): ("for {Q}: {src} to {dst}", "{Q}, {src} to {dst}", "{Q}: from {src} to {dst}",
                                "given {Q}, {src} into {dst}"),
    ("n-src-dst", "record"): ("{Q}: {src} → {dst}", "{Q} | {src}->{dst}", "({Q}) {src} → {dst}", "{Q}; {src} to {dst}"),
    ("src-n-dst", "question"): ("Starting from {src}, what is {Q} as {dst}?",
                                "With {src} as the unit, what do {Q} make as {dst}?",
                                "If the unit is {src}, what do {Q} come to as {dst}?",
                                "Measured in {src}, what is {Q} when put into {dst}?"),
    ("src-n-dst", "imperative"): ("Take {src}, {Q}, and give {dst}.", "Using {src} as the unit, convert {Q} to {dst}.",
                                  "Starting from {src}, put {Q} into {dst}.", "With {src}, turn {Q} into {dst}, please."),
    ("src-n-dst", "fragment"): ("{src}, {Q}, to {dst}", "{src} ({Q}) to {dst}", "unit {src}, {Q}, as {dst}",
                                "{src}: {Q}, as {dst}"),
    ("src-n-dst", "record"): ("{src}: {Q} → {dst}", "{src}: {Q} -> {dst}", "[{src}] {Q} → [{dst}]",
                              "unit={src} n={Q} to={dst}"),
}
# More rows for the orders templates never have: the units named before a count.
ORDER_WEIGHTS = {"qsrc-dst": 1.0, "dst-qsrc": 1.0, "src-dst-n": 2.0, "dst-src-n": 1.5, "n-src-dst": 1.5,
                 "src-n-dst": 1.0}
STRUCTURE_SHARE = 0.5  # of data/train.json and data/valid.json; the rest from TRAIN_TEMPLATES
N_HELD_OUT_PRODUCTIONS = 18
# Productions the issue quotes as what training must show ("the conversion from kg to g for 6 units",
# "kg → g: 6"): never held out.
KEEP_IN_TRAINING = ("src-dst-n/units/fragment", "src-dst-n/bare/fragment", "src-dst-n/bare/record")

# Spellings that need more rows than a uniform draw gives them: an ounce beside a volume (a fluid ounce, see
# vocabulary.BY_KIND) and bare data-size letters beside each other ("how many M in 3G").
BORROWED_SHARE = 0.5
LETTER_SHARE = 0.4
DATA_LETTERS = ("B", "K", "M", "G", "T")
MAX_STALLED_PAIRS = 500  # unit pairs in a row without a new row before generate() gives up


def production_id(order: str, phrase: str, frame: str) -> str:
    return f"{order}/{phrase}/{frame}"


def _phrases(order: str) -> dict[str, str]:
    return ATTACHED_PHRASES if order in ATTACHED_ORDERS else COUNT_PHRASES


def productions() -> list[str]:
    """Every production of the grammar, in a fixed order."""
    return [production_id(order, phrase, frame) for order in ORDERS for phrase in _phrases(order) for frame in FRAMES]


def wordings(production: str) -> list[str]:
    """Every wording of a production, with {q}, {src} and {dst} left to fill."""
    order, phrase, frame = production.split("/")
    return [s.replace("{Q}", _phrases(order)[phrase]) for s in SKELETONS[order, frame]]


def _shape(wording: str) -> str:
    return wording.rstrip("?.").lower()


def held_out_productions(seed: int = SEED) -> tuple[str, ...]:
    """N_HELD_OUT_PRODUCTIONS productions, seeded, such that every pair of their parts (order and phrase, order
    and frame, phrase and frame) is still in some training production: the held-out family is new
    combinations of parts the model has seen, as a question written by someone else would be."""
    rng = random.Random(seed)
    every = productions()
    templates = {_shape(t) for t in TEMPLATES}  # a production a template also writes is no new structure
    candidates = [p for p in every if p not in KEEP_IN_TRAINING and not {_shape(w) for w in wordings(p)} & templates]
    rng.shuffle(candidates)

    def pairs(p):
        o, q, f = p.split("/")
        return {("o", o, "q", q), ("o", o, "f", f), ("q", q, "f", f)}

    held: list[str] = []
    for p in candidates:
        if len(held) == N_HELD_OUT_PRODUCTIONS:
            break
        kept = [t for t in every if t not in held and t != p]
        if pairs(p) <= set().union(*map(pairs, kept)):
            held.append(p)
    return tuple(sorted(held))


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


def _partners(src: Unit) -> list[Unit]:
    """The units `src` converts to in the data: its kind, no 1:1 synonyms (cc and ml), nothing as far apart as
    bits and terabytes."""
    return [u for u in _by_dimension()[src.dimension]
            if u is not src and 1e-9 <= conversion_factor(src.key, u.key) <= 1e12
            and abs(conversion_factor(src.key, u.key) - 1) > 1e-9]


class _Pairs:
    """Unit pairs dealt from a shuffled deck of every unit, refilled when empty: a card and the next card that
    is one of its partners, in either order. Every unit is then asked about equally often, whatever
    its kind's size or how few partners it has (terabytes)."""

    def __init__(self, rng: random.Random):
        self.rng, self.deck = rng, []

    def next(self) -> tuple[Unit, Unit]:
        if not self.deck:
            self.deck = list(UNITS)
            self.rng.shuffle(self.deck)
        first = self.deck.pop()
        partners = _partners(first)
        matches = [i for i, u in enumerate(self.deck) if u in partners]
        second = self.deck.pop(matches[-1]) if matches else self.rng.choice(partners)
        return (first, second) if self.rng.random() < 0.5 else (second, first)


def _spell(src: Unit, dst: Unit, family: int, rng: random.Random) -> tuple[str, str]:
    forms = split_forms(SEED)
    letters = [[f for f in forms[u.key][family] if f in DATA_LETTERS] for u in (src, dst)]
    if src.dimension == "data" and all(letters) and rng.random() < LETTER_SHARE:
        return rng.choice(letters[0]), rng.choice(letters[1])
    out = []
    for unit in (src, dst):
        if unit.key in BY_KIND and rng.random() < BORROWED_SHARE:
            out.append(rng.choice(forms[BY_KIND[unit.key][1]][family]))
        else:
            out.append(rng.choice(forms[unit.key][family]))
    return out[0], out[1]


def _decorate(question: str, rng: random.Random, context) -> str:
    """Sometimes a sentence before, after or both; sometimes no final punctuation or a lower-case start."""
    if rng.random() < CONTEXT_SHARE:
        before, after = context
        r = rng.random()
        if r < 0.8:
            question = f"{rng.choice(before)} {question}" if r < 0.4 else f"{question} {rng.choice(after)}"
        else:
            question = f"{rng.choice(before)} {question} {rng.choice(after)}"
    r = rng.random()
    if r < 0.1:
        question = question.rstrip("?.")
    elif r < 0.2:
        question = question[:1].lower() + question[1:]
    return question


def _reads_back(question: str, answer: float, q: str, src: Unit, dst: Unit) -> bool:
    """The expression reader finds this quantity and these units (the training answer is written from them)."""
    from ..text.expression_format import read_conversion

    found = read_conversion(question, answer)
    return found is not None and (found[0], found[1].key, found[2].key) == (q, src.key, dst.key)


def _schedule(n: int, sources: dict[str, float], rng: random.Random) -> list[str]:
    """n production ids in a seeded order, each as often as its weight's share says (largest remainders):
    exact counts, so no production is left with a handful of rows by chance."""
    total = sum(sources.values())
    exact = {p: n * w / total for p, w in sources.items()}
    counts = {p: int(x) for p, x in exact.items()}
    for p in sorted(exact, key=lambda p: counts[p] - exact[p])[:n - sum(counts.values())]:
        counts[p] += 1
    out = [p for p in sources for _ in range(counts[p])]
    rng.shuffle(out)
    return out


def generate(n: int, rng: random.Random, sources: dict[str, float], family: int, context=TRAIN_CONTEXT,
             exclude: set[str] = frozenset()) -> tuple[list[list], list[str]]:
    """n distinct rows and the production of each. `sources` weighs productions ("order/phrase/frame") or
    templates ("template/i"). Spellings come from the given family (0: training, 1: held out; see
    vocabulary.split_forms)."""
    schedule = _schedule(n, sources, rng)
    deck = _Pairs(rng)
    rows: list[list] = []
    made: list[str] = []
    seen: set[str] = set(exclude)
    stalled = 0  # unit pairs in a row that gave no new row
    while len(rows) < n:
        production = schedule[len(rows)]
        if stalled >= MAX_STALLED_PAIRS:  # a generator that cannot make a row must say so, not spin forever
            raise RuntimeError(f"no new row for production {production!r} after {stalled} unit pairs "
                               f"({len(rows)} of {n} rows made): every question was a duplicate or did not read back")
        stalled += 1
        src, dst = deck.next()
        for _ in range(20):  # a few tries for this pair before the next
            q = _quantity(rng)
            answer = _value(q) * conversion_factor(src.key, dst.key)
            if not (1e-4 <= abs(answer) <= 1e12):
                src, dst = dst, src  # cubic millimetres to cubic metres never fit; the other way does
                continue
            src_text, dst_text = _spell(src, dst, family, rng)
            question = rng.choice(_wordings(production)).format(q=q, src=src_text, dst=dst_text)
            question = _decorate(question, rng, context)
            if question in seen or not _reads_back(question, answer, q, src, dst):
                continue
            seen.add(question)
            rows.append([question, float(f"{answer:.12g}")])
            made.append(production)
            stalled = 0
            break
    return rows, made


def _wordings(source: str) -> list[str]:
    kind, _, index = source.partition("/")
    return [TEMPLATES[int(index)]] if kind == "template" else wordings(source)


def _template_sources(templates: tuple[str, ...]) -> dict[str, float]:
    return {f"template/{TEMPLATES.index(t)}": 1.0 for t in templates}


def _structure_sources(chosen, by_order: bool = True) -> dict[str, float]:
    """Each production weighted so that each order gets its ORDER_WEIGHTS share (or all alike)."""
    chosen = list(chosen)
    per_order = {o: sum(p.startswith(o + "/") for p in chosen) for o in ORDERS}
    return {p: ORDER_WEIGHTS[p.split("/")[0]] / per_order[p.split("/")[0]] if by_order else 1.0 for p in chosen}


def _mixed(n: int, rng: random.Random, trained: list[str], exclude: set[str]) -> tuple[list[list], list[str]]:
    """Training-family rows: STRUCTURE_SHARE from the training productions, the rest from TRAIN_TEMPLATES,
    shuffled together."""
    n_structures = round(n * STRUCTURE_SHARE)
    rows, made = generate(n_structures, rng, _structure_sources(trained), 0, exclude=exclude)
    more, more_made = generate(n - n_structures, rng, _template_sources(TRAIN_TEMPLATES), 0,
                               exclude=exclude | {q for q, _ in rows})
    together = list(zip(rows + more, made + more_made))
    rng.shuffle(together)
    return [r for r, _ in together], [m for _, m in together]


def build_splits(seed: int = SEED, n_train: int = N_TRAIN, n_valid: int = N_VALID, n_heldout: int = N_HELDOUT,
                 n_heldout_structures: int = N_HELDOUT_STRUCTURES) -> dict[str, list[list]]:
    """{split: rows} for every data file, and "productions": {split: the production of each row,
    "held_out": the held-out productions}."""
    rng = random.Random(seed)
    held = held_out_productions(seed)
    trained = [p for p in productions() if p not in held]
    valid, valid_made = _mixed(n_valid, rng, trained, set())
    heldout, heldout_made = generate(n_heldout, rng, _template_sources(HELD_OUT_TEMPLATES), 1, HELD_OUT_CONTEXT)
    structures, structures_made = generate(n_heldout_structures, rng, _structure_sources(held, by_order=False), 0,
                                           exclude={q for q, _ in valid})
    train, train_made = _mixed(n_train, rng, trained, {q for q, _ in valid + structures})
    return {"train": train, "valid": valid, "heldout": heldout, "heldout_structures": structures,
            "productions": {"held_out": list(held), "train": train_made, "valid": valid_made,
                            "heldout": heldout_made, "heldout_structures": structures_made}}


def dumps(rows) -> str:
    """One row per line: readable diffs, still plain JSON."""
    if isinstance(rows, dict):
        return "{\n" + ",\n".join(f"{json.dumps(k)}: " + dumps(v).rstrip("\n") for k, v in rows.items()) + "\n}\n"
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
            from ..runtime.atomic import atomic_write_bytes

            atomic_write_bytes(path, text.encode())
            report.result(f"wrote {path}" if isinstance(rows, dict) else f"wrote {len(rows)} rows to {path}")
    if bad:
        report.error("out of date (run python -m homework.datagen): " + ", ".join(bad))
        return 1
    return 0

