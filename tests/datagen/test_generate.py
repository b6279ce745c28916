import functools
import json
import re
from collections import Counter

import pytest

from homework.data import DATA_DIR
from homework.datagen import generate as datagen
from homework.text import vocabulary

SPLITS = ("train", "valid", "heldout", "heldout_structures")
GENERATED = (*SPLITS, "productions")


def _rows(split):
    return json.loads((DATA_DIR / f"{split}.json").read_text())


def _productions():
    return json.loads((DATA_DIR / "productions.json").read_text())


def test_generator_reproduces_the_committed_files_byte_for_byte(tmp_path):
    assert datagen.main(["--out", str(tmp_path)]) == 0
    for name in GENERATED:
        assert (tmp_path / f"{name}.json").read_bytes() == (DATA_DIR / f"{name}.json").read_bytes()
    assert datagen.main(["--check"]) == 0


def test_check_flags_a_stale_file(tmp_path):
    datagen.main(["--out", str(tmp_path)])
    (tmp_path / "heldout.json").write_text("[]\n")
    assert datagen.main(["--out", str(tmp_path), "--check"]) == 1


def test_different_seed_gives_different_data():
    small = dict(n_train=20, n_valid=5, n_heldout=5, n_heldout_structures=5)
    assert datagen.build_splits(seed=1, **small)["train"] != datagen.build_splits(**small)["train"]
    assert datagen.held_out_productions(1) != datagen.held_out_productions()


def test_splits_have_the_sizes_and_no_shared_question():
    splits = {s: _rows(s) for s in SPLITS}
    assert [len(splits[s]) for s in SPLITS] == [datagen.N_TRAIN, datagen.N_VALID, datagen.N_HELDOUT,
                                                 datagen.N_HELDOUT_STRUCTURES]
    questions = [{q for q, _ in splits[s]} for s in SPLITS]
    assert sum(map(len, questions)) == len(set().union(*questions))  # distinct within and across files


CONTEXT = [s for group in datagen.TRAIN_CONTEXT + datagen.HELD_OUT_CONTEXT for s in group]


def _without_context(question):
    for sentence in CONTEXT:
        for s in (sentence, sentence[:1].lower() + sentence[1:]):
            question = question.removeprefix(s + " ")
        question = re.sub(" " + re.escape(sentence.rstrip("?.")) + r"[?.]*$", "", question)
    return question


def _shape(text):
    """A question's structure: context sentences, final punctuation and case dropped, every unit spelling
    written U and the quantity Q (the reader's own matchers: a preposition "in" is the inch to both sides)."""
    from homework.text.expression_format import _QUANTITY, unit_spellings

    text = re.sub("^In ", "in ", _without_context(text))  # a lower-cased start makes the word the inch's symbol
    for pos, _, spelling in reversed(unit_spellings(text)):
        text = text[:pos] + "\0U" + text[pos + len(spelling):]
    return _QUANTITY.sub("\0Q", text).rstrip("?.").casefold()


@functools.cache
def _shapes():
    """{production or "template/i": the shapes of the questions it writes}, read off the grammar's wordings
    (with a sample quantity and sample units), not off the recorded ids, so that it checks them."""
    def shapes(texts):
        return {_shape(t.format(q="7", src="kg", dst="lb")) for t in texts}

    out = {f"template/{i}": shapes([t]) for i, t in enumerate(datagen.TEMPLATES)}
    out.update({p: shapes(datagen.wordings(p)) for p in datagen.productions()})
    return out


def test_every_row_is_written_by_the_production_recorded_for_it():
    shapes, made = _shapes(), _productions()
    for split in SPLITS:
        assert len(made[split]) == len(_rows(split))
        for (q, _), production in zip(_rows(split), made[split]):
            assert _shape(q) in shapes[production], (split, production, q)


def test_held_out_structures_never_occur_in_training():
    """data/heldout_structures.json holds whole productions of the grammar that data/train.json and
    data/valid.json never use: by the recorded ids, and by the shape of every training question, which no
    held-out production writes."""
    made = _productions()
    held = set(made["held_out"])
    assert made["held_out"] == list(datagen.held_out_productions()) and len(held) == datagen.N_HELD_OUT_PRODUCTIONS
    assert not held & set(made["train"] + made["valid"])
    assert set(made["heldout_structures"]) == held and not held & set(datagen.KEEP_IN_TRAINING)
    held_shapes = set().union(*(_shapes()[p] for p in held))
    for split in ("train", "valid"):
        leaks = [q for q, _ in _rows(split) if _shape(q) in held_shapes]
        assert not leaks, (split, leaks[:5])
    # the held-out family is new combinations: every pair of parts is in some training production
    trained = [p.split("/") for p in datagen.productions() if p not in held]
    for o, q, f in (p.split("/") for p in held):
        assert any(t[0] == o and t[1] == q for t in trained) and any(t[0] == o and t[2] == f for t in trained)
        assert any(t[1] == q and t[2] == f for t in trained)


def test_a_count_never_reads_as_the_quantity_of_a_unit():
    """In the orders that name the units first, the count is not followed by a unit (or by "in", the inch's
    symbol), and no count phrase holds a unit spelling: the reader, and the model, would take the wrong unit."""
    from homework.text.expression_format import unit_spellings

    for p in datagen.productions():
        if p.split("/")[0] in datagen.ATTACHED_ORDERS:
            continue
        for w in datagen.wordings(p):
            assert not re.search(r"\{q\}[^\w,.:;()|→\-<]*(\{src\}|\{dst\}|in\b)", w), (p, w)
    for phrase in datagen.COUNT_PHRASES.values():
        assert not unit_spellings(phrase.format(q=7)), phrase


def test_every_production_and_template_is_trained_often_enough():
    made = Counter(_productions()["train"])
    trained = [p for p in datagen.productions() if p not in _productions()["held_out"]]
    assert min(made[p] for p in trained) >= 8, made
    assert min(made[f"template/{i}"] for i in range(len(datagen.TRAIN_TEMPLATES))) >= 15, made
    assert sum(v for k, v in made.items() if not k.startswith("template/")) == datagen.N_TRAIN * datagen.STRUCTURE_SHARE
    held = Counter(_productions()["heldout_structures"])
    assert min(held.values()) >= 15, held


def test_templates_of_the_held_out_family_and_its_context_never_occur_in_training():
    """No training wording holds a held-out template's phrase, no training question has a held-out template's
    shape, and no held-out context sentence is in a training file."""
    trained = [*datagen.TRAIN_TEMPLATES, *(w for p in datagen.productions() for w in datagen.wordings(p))]
    for t in datagen.HELD_OUT_TEMPLATES:
        fixed = max(re.split(r"\{\w+\}", t), key=len).strip()
        assert not [w for w in trained if fixed in w], t
    held_shapes = set().union(*(_shapes()[f"template/{datagen.TEMPLATES.index(t)}"] for t in datagen.HELD_OUT_TEMPLATES))
    train_text = "\n".join(q for split in ("train", "valid", "heldout_structures") for q, _ in _rows(split))
    for split in ("train", "valid", "heldout_structures"):
        assert not [q for q, _ in _rows(split) if _shape(q) in held_shapes], split
    for sentence in datagen.HELD_OUT_CONTEXT[0] + datagen.HELD_OUT_CONTEXT[1]:
        assert sentence not in train_text


@functools.cache
def _spellings_used(split):
    """Every unit spelling in the split's questions (context sentences aside), read back with the expression
    reader's longest-first matcher."""
    from homework.text.expression_format import unit_spellings

    used = Counter()
    for q, _ in _rows(split):
        used.update(text for _, _, text in unit_spellings(_without_context(q)))
    return used


def test_held_out_spellings_never_occur_in_training_and_each_unit_has_some():
    forms = vocabulary.split_forms(datagen.SEED)
    assert set(forms) == {u.key for u in datagen.UNITS}
    for key, (train_forms, held) in forms.items():
        assert held and len(train_forms) >= 2 and not set(train_forms) & set(held), key
    held = {f for _, h in forms.values() for f in h}
    trained = {f for t, _ in forms.values() for f in t}
    for split in ("train", "valid", "heldout_structures"):
        assert not set(_spellings_used(split)) & held, split
    used = set(_spellings_used("heldout"))
    assert not used & trained - {"in", "s", "m"}  # the words "in", "'s", "I'm" read as units
    assert len(used & held) >= 0.9 * len(held)


@functools.cache
def _read(split):
    from homework.text.expression_format import read_conversion

    return [read_conversion(q, a) for q, a in _rows(split)]


def test_every_unit_is_asked_about_often_enough():
    """Every unit (as the reader resolves it: "oz" beside a quart is a fluid ounce) is a source or a target in
    at least 40 training rows, and the spellings the issue says were misread have rows of their own."""
    seen = Counter()
    for _, src, dst in _read("train"):
        seen.update([src.key, dst.key])
    rare = {u.key: seen[u.key] for u in datagen.UNITS if seen[u.key] < 40}
    assert not rare, rare
    rows = _rows("train")
    fluid_as_ounce = sum(re.search(r"(?<![\w.])(ounces?|oz|OZ|Ounces)(?!\w)", q) is not None and dst.key != "ounce"
                         and src.key != "ounce" for (q, _), (_, src, dst) in zip(rows, _read("train")))
    assert fluid_as_ounce >= 20
    letters = r"(?<![\w/^*'])[BKMGT](?![\w/^*])"
    data_letters = sum(len(re.findall(letters, _without_context(q))) == 2 and src.dimension == "data"
                       for (q, _), (_, src, _) in zip(rows, _read("train")))
    assert data_letters >= 30
    used = _spellings_used("train")
    assert all(used[form] >= 3 for form in ("cc", "in/s", "mm^3", "mm**3", "B", "G", "M", "K")), used


@pytest.mark.parametrize("rows", ["all", "counts"])
def test_quantities_take_every_shape_people_write(rows):
    """In every training row, and in the rows that give the quantity as a count after naming the units."""
    text = [q for (q, _), p in zip(_rows("train"), _productions()["train"])
            if rows == "all" or p.split("/")[0] in ("src-dst-n", "dst-src-n", "src-n-dst")]
    shapes = {
        "small integer": r"(?<![\d.,])\d{1,2}(?![\d.,]\d)",
        "hundreds": r"(?<![\d.,])\d{3}(?![\d.,]\d)",
        "thousands": r"(?<![\d.,])\d{4}(?![\d.,]\d)",
        "thousands with a comma": r"\d,\d{3}",
        "one decimal place": r"(?<![\d.])[1-9]\d*\.\d(?!\d)",
        "two decimal places": r"[1-9]\d*\.\d\d(?!\d)",
        "leading zero": r"(?<![\d.])0\.\d",
    }
    counts = {name: sum(bool(re.search(p, q)) for q in text) for name, p in shapes.items()}
    assert all(c >= (40 if rows == "all" else 10) for c in counts.values()), counts


def test_many_phrasings_dimensions_and_spellings():
    assert len(datagen.TRAIN_TEMPLATES) >= 40 and len(datagen.HELD_OUT_TEMPLATES) >= 12
    assert set(Counter(u.dimension for u in datagen.UNITS)) == {"length", "mass", "time", "volume", "speed", "data"}
    names = {n for u in datagen.UNITS for n in u.names}
    # the spellings the first report said the generator never produced
    assert {"G", "M", "kB", "KB", "mi/h", "kmh", "ft/s", "cm^3", "cm**3", "L", "l", "litre", "liter", "mL", "ml",
            "millilitre", "quart", "pint", "tablespoon", "stone", "terabyte", "cubic feet", "fluid ounces"} <= names
    # and the ones the structures report said were misread or missing
    assert {"in/s", "inches per second", "cm/s", "ft/min", "km/s", "mm^3", "mm**3", "cubic millimeters", "yd^3",
            "dm^3", "cc", "B", "K"} <= names
    assert len(datagen.productions()) == 2 * 3 * 4 + 4 * 4 * 4 and len(set(datagen.productions())) == 88


@pytest.mark.parametrize(
    "src, dst, factor",
    [("kilogram", "gram", 1000), ("month", "day", 30.4375), ("10 * year", "year", 10), ("100 * year", "year", 100),
     ("mile / hour", "kilometer / hour", 1.609344), ("gallon", "liter", 3.785411784), ("kilobyte", "bit", 8000),
     ("inch", "centimeter", 2.54), ("pound", "gram", 453.59237), ("inch / second", "meter / second", 0.0254),
     ("millimeter ** 3", "liter", 1e-6), ("yard ** 3", "foot ** 3", 27), ("quart", "fluid_ounce", 32),
     ("foot / minute", "inch / second", 0.2), ("kilometer / second", "meter / minute", 60000)],
)
def test_factors_come_from_pint(src, dst, factor):
    assert datagen.conversion_factor(src, dst) == pytest.approx(factor, rel=1e-9)


def test_the_hand_written_questions_are_valid_and_none_is_generated():
    """data/handwritten.json: questions typed by hand, not by the generator (README, "Data, answer format and
    accuracy"). It must load cleanly and share no question with the generated files."""
    from homework.data import Dataset

    rows = Dataset("handwritten").data
    assert len(rows) >= 200 and len({q for q, _ in rows}) == len(rows)
    generated = {q for split in SPLITS for q, _ in _rows(split)}
    assert not {q for q, _ in rows} & generated
    assert not datagen.main(["--check"])  # the generator leaves the hand-written files alone


def test_every_hand_written_answer_is_pints_for_the_units_recorded_beside_it():
    """data/handwritten_units.json records, for each hand-written question, the quantity, the two units (the
    vocabulary's pint expressions) and what kind of question it is; each answer is pint's conversion."""
    ureg = vocabulary.registry()
    rows = _rows("handwritten")
    side = _rows("handwritten_units")
    assert [r[0] for r in side] == [q for q, _ in rows]
    keys = {u.key for u in datagen.UNITS}
    for (question, answer), (_, q, src, dst, _) in zip(rows, side):
        assert src in keys and dst in keys, question
        expected = (q * ureg.parse_expression(src) / ureg.parse_expression(dst)).to("dimensionless").magnitude
        assert answer == pytest.approx(expected, rel=1e-9), question


def test_the_hand_written_questions_cover_every_class_of_the_structures_report():
    side = _rows("handwritten_units")
    tags = Counter(t for *_, ts in side for t in ts)
    needed = {"units-first": 40, "record": 15, "speed": 20, "cubic": 20, "cc": 5, "bare-B": 4, "fluid-ounce": 14,
              "data-letters": 12, "typo": 8, "context": 25, "lowercase": 60}
    assert all(tags[t] >= n for t, n in needed.items()), tags
    compound = {src for _, _, src, _, _ in side} | {dst for _, _, _, dst, _ in side}
    assert {"inch / second", "millimeter ** 3", "centimeter ** 3", "fluid_ounce", "byte", "decimeter ** 3",
            "yard ** 3", "foot / minute", "kilometer / second"} <= compound
    # the ounce beside a volume is a fluid ounce in every row tagged so, and written "ounce"/"oz" there
    for question, _, src, dst, ts in side:
        if "fluid-ounce" in ts:
            assert "fluid_ounce" in (src, dst) and re.search(r"\b(ounces?|oz)\b", question) and "fl" not in question


class _Scripted:
    """A random.Random stand-in: random() returns the scripted values in turn; randint gives its lower or upper
    bound, so each shape of quantity shows the ends of its range."""

    def __init__(self, draws, end):
        self.draws, self.end = list(draws), end

    def random(self):
        return self.draws.pop(0)

    def randint(self, a, b):
        return a if self.end == "low" else b


@pytest.mark.parametrize(("r", "low", "high"), [
    (0.0, "1", "20"), (0.25, "21", "100"), (0.40, "101", "999"), (0.55, "1000", "9999"),
    (0.65, "1.1", "99.9"), (0.85, "1.01", "99.99"), (0.92, "0.01", "0.99"), (0.999, "0.01", "0.99"),
])
def test_each_quantity_shape_spans_its_documented_range_and_share(r, low, high):
    # the shares are half-open intervals of one uniform draw: r = 0.25 is already the second shape
    assert datagen._quantity(_Scripted([r, 0.5], "low")) == low
    assert datagen._quantity(_Scripted([r, 0.5], "high")) == high


def test_a_four_digit_quantity_has_a_thousands_comma_three_times_in_ten():
    assert datagen._quantity(_Scripted([0.6, 0.29], "high")) == "9,999"
    assert datagen._quantity(_Scripted([0.6, 0.3], "high")) == "9999"


def test_the_command_line_passes_its_seed_and_reports_what_it_wrote(tmp_path, monkeypatch, capsys):
    seeds = []
    small = datagen.build_splits(n_train=4, n_valid=2, n_heldout=2, n_heldout_structures=2)
    monkeypatch.setattr(datagen, "build_splits", lambda seed: seeds.append(seed) or small)
    assert datagen.main(["--out", str(tmp_path), "--seed", "7"]) == 0
    assert seeds == [7]
    out = capsys.readouterr().out
    assert f"wrote 4 rows to {tmp_path / 'train.json'}" in out
    assert f"wrote {tmp_path / 'productions.json'}\n" in out  # the productions table is not a list of rows
    (tmp_path / "valid.json").write_text("[]\n")
    assert datagen.main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"out of date (run python -m homework.datagen): {tmp_path / 'valid.json'}" in err
    (tmp_path / "train.json").unlink()
    datagen.main(["--out", str(tmp_path), "--check"])
    assert f"{tmp_path / 'train.json'}, {tmp_path / 'valid.json'}" in capsys.readouterr().err


def test_the_command_line_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        datagen.main(["--help"])
    text = capsys.readouterr().out
    assert "\n".join(datagen.__doc__.splitlines()[2:4]) in text  # the description keeps its own line breaks
    assert re.search(r"--out OUT\s+output directory \(default: data/\)\n", text)
    assert re.search(r"--check\s+verify the files in --out match, write nothing\n", text)


class _ScriptedChoice(_Scripted):
    def choice(self, seq):
        return seq[0]


@pytest.mark.parametrize(("draws", "expected"), [
    ([0.0, 0.0, 0.5], "Before. Is it 6 X?"),
    ([0.0, 0.4, 0.5], "Is it 6 X? After."),
    ([0.0, 0.8, 0.5], "Before. Is it 6 X? After."),
    ([datagen.CONTEXT_SHARE, 0.0], "Is it 6 X"),  # final punctuation dropped, nothing else
    ([datagen.CONTEXT_SHARE, 0.1], "is it 6 X?"),
    ([datagen.CONTEXT_SHARE, 0.2], "Is it 6 X?"),
])
def test_decoration_adds_context_and_drops_punctuation_or_capitals_in_its_shares(draws, expected):
    context = (["Before."], ["After."])
    assert datagen._decorate("Is it 6 X?", _ScriptedChoice(draws, "low"), context) == expected


def test_a_generator_that_cannot_make_a_row_stops_naming_the_production(monkeypatch):
    import random

    monkeypatch.setattr(datagen, "_reads_back", lambda *a: False)  # every question is rejected
    monkeypatch.setattr(datagen, "MAX_STALLED_PAIRS", 7)
    dealt = []
    real_next = datagen._Pairs.next
    monkeypatch.setattr(datagen._Pairs, "next", lambda self: dealt.append(1) or real_next(self))
    with pytest.raises(RuntimeError, match=r"no new row for production 'template/0' after 7 unit pairs \(0 of 3"):
        datagen.generate(3, random.Random(0), {"template/0": 1.0}, 0)
    assert len(dealt) == 7


def test_a_row_made_resets_the_count_of_stalled_pairs(monkeypatch):
    """Every other question is rejected, so each unit pair makes its row at the second try: with a limit of one
    pair without a row, the count must start at 0 and go back to 0 after every row."""
    import random

    real, calls = datagen._reads_back, []

    def every_other(*args):
        calls.append(1)
        return len(calls) % 2 == 0 and real(*args)
    monkeypatch.setattr(datagen, "_reads_back", every_other)
    monkeypatch.setattr(datagen, "MAX_STALLED_PAIRS", 1)
    rows, made = datagen.generate(30, random.Random(0), {"template/0": 1.0}, 0)
    assert len(rows) == 30 and made == ["template/0"] * 30


def test_a_question_is_never_repeated_within_a_split(monkeypatch):
    import random

    # one quantity, one unit pair, one template: only spellings and decoration vary, so repeats would be common
    src = datagen._by_dimension()["mass"][0]
    dst = datagen._partners(src)[0]
    monkeypatch.setattr(datagen, "_quantity", lambda rng: "6")
    monkeypatch.setattr(datagen._Pairs, "next", lambda self: (src, dst))
    rows, _ = datagen.generate(40, random.Random(0), {"template/0": 1.0}, 0)
    assert len({q for q, _ in rows}) == 40


@pytest.mark.parametrize("half", ["structure", "template"])
def test_excluded_questions_are_never_generated(half):
    """_mixed excludes what it is told to in each of its halves: the same draws with one half of the first run's
    questions excluded give none of them (the other half's draws, and so the rng, stay as they were)."""
    import random

    held = set(datagen.held_out_productions())
    trained = [p for p in datagen.productions() if p not in held]
    first, made = datagen._mixed(40, random.Random(5), trained, set())
    excluded = {q for (q, _), m in zip(first, made) if m.startswith("template/") == (half == "template")}
    again, _ = datagen._mixed(40, random.Random(5), trained, excluded)
    assert excluded and len(again) == 40 and not excluded & {q for q, _ in again}


def test_held_out_structures_exclude_the_validation_questions(monkeypatch):
    calls = []
    real = datagen.generate
    monkeypatch.setattr(datagen, "generate", lambda n, rng, sources, *a, **k: calls.append((sources, k)) or
                        real(n, rng, sources, *a, **k))
    splits = datagen.build_splits(n_train=20, n_valid=20, n_heldout=5, n_heldout_structures=20)
    held = set(splits["productions"]["held_out"])
    (structures_call,) = [k for sources, k in calls if set(sources) == held]
    assert structures_call.get("exclude", set()) >= {q for q, _ in splits["valid"]}


@pytest.mark.parametrize("seed", range(6))
def test_at_any_seed_every_pair_of_parts_of_a_held_out_production_is_trained(seed):
    """The naive oracle of held_out_productions' rule, at seeds other than the committed one."""
    held = set(datagen.held_out_productions(seed))
    assert len(held) == datagen.N_HELD_OUT_PRODUCTIONS
    trained = [p.split("/") for p in datagen.productions() if p not in held]
    for o, q, f in (p.split("/") for p in held):
        assert any(t[:2] == [o, q] for t in trained) and any(t[0] == o and t[2] == f for t in trained)
        assert any(t[1:] == [q, f] for t in trained)
