import json
import re
from collections import Counter

import pytest

from homework import datagen, vocabulary
from homework.data import DATA_DIR

SPLITS = ("train", "valid", "heldout")


def _rows(split):
    return json.loads((DATA_DIR / f"{split}.json").read_text())


def test_generator_reproduces_the_committed_files_byte_for_byte(tmp_path):
    assert datagen.main(["--out", str(tmp_path)]) == 0
    for split in SPLITS:
        assert (tmp_path / f"{split}.json").read_bytes() == (DATA_DIR / f"{split}.json").read_bytes()
    assert datagen.main(["--check"]) == 0


def test_check_flags_a_stale_file(tmp_path):
    datagen.main(["--out", str(tmp_path)])
    (tmp_path / "heldout.json").write_text("[]\n")
    assert datagen.main(["--out", str(tmp_path), "--check"]) == 1


def test_different_seed_gives_different_data():
    assert datagen.build_splits(seed=1)["train"][:20] != datagen.build_splits()["train"][:20]


def test_splits_have_the_sizes_and_no_shared_question():
    splits = {s: _rows(s) for s in SPLITS}
    assert [len(splits[s]) for s in SPLITS] == [datagen.N_TRAIN, datagen.N_VALID, datagen.N_HELDOUT]
    questions = [{q for q, _ in splits[s]} for s in SPLITS]
    assert not questions[0] & questions[1] and not questions[0] & questions[2]


def _template_pattern(template):
    body = re.escape(template).replace(r"\{q\}", r"(?P<q>[\d.,]+)").replace(r"\{src\}", r"(?P<src>.+)")
    return re.compile(body.replace(r"\{dst\}", r"(?P<dst>.+)"))


def _template_of(question, templates):
    """The template a generated question came from (the context sentences and punctuation around it aside)."""
    for t in templates:
        p = _template_pattern(t.rstrip("?."))
        if p.search(question) or p.search(question[:1].upper() + question[1:]):
            return t
    return None


def test_every_row_comes_from_its_family_of_templates():
    train_family = datagen.TRAIN_TEMPLATES
    for split, family in (("train", train_family), ("valid", train_family), ("heldout", datagen.HELD_OUT_TEMPLATES)):
        for q, _ in _rows(split)[:150]:
            assert _template_of(q, family), (split, q)
    # and no held-out phrasing or context sentence leaks into the training file
    train_text = "\n".join(q for q, _ in _rows("train"))
    for t in datagen.HELD_OUT_TEMPLATES:
        fixed = max(re.split(r"\{\w+\}", t), key=len).strip()
        assert fixed not in train_text, t
    for sentence in datagen.HELD_OUT_CONTEXT[0] + datagen.HELD_OUT_CONTEXT[1]:
        assert sentence not in train_text


def _spellings_after_the_quantity(split):
    """Every unit spelling in the split's questions after the quantity (context sentences aside), read back
    with the expression reader's longest-first matcher."""
    from homework.expression_format import _QUANTITY, unit_spellings

    used = Counter()
    for q, _ in _rows(split):
        start = _QUANTITY.search(q).start()
        used.update(text for pos, _, text in unit_spellings(q) if pos >= start - 60)
    return used


def test_held_out_spellings_never_occur_in_training_and_each_unit_has_some():
    forms = vocabulary.split_forms(datagen.SEED)
    assert set(forms) == {u.key for u in datagen.UNITS}
    for key, (train_forms, held) in forms.items():
        assert held and len(train_forms) >= 2 and not set(train_forms) & set(held), key
    held = {f for _, h in forms.values() for f in h}
    trained = {f for t, _ in forms.values() for f in t}
    for split in ("train", "valid"):
        assert not set(_spellings_after_the_quantity(split)) & held, split
    used = set(_spellings_after_the_quantity("heldout"))
    assert not used & trained - {"in", "s", "m"}  # the words "in", "'s", "I'm" read as units
    assert len(used & held) >= 0.9 * len(held)


def test_every_unit_is_a_source_and_a_target_often_enough():
    from homework.expression_format import _mentions

    seen = Counter()
    for q, _ in _rows("train"):
        seen.update(u.key for _, u in _mentions(q))
    rare = {u.key: seen[u.key] for u in datagen.UNITS if seen[u.key] < 40}
    assert not rare, rare


def test_quantities_take_every_shape_people_write():
    text = [q for q, _ in _rows("train")]
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
    assert all(c >= 40 for c in counts.values()), counts


def test_many_phrasings_dimensions_and_spellings():
    assert len(datagen.TRAIN_TEMPLATES) >= 40 and len(datagen.HELD_OUT_TEMPLATES) >= 12
    assert set(Counter(u.dimension for u in datagen.UNITS)) == {"length", "mass", "time", "volume", "speed", "data"}
    names = {n for u in datagen.UNITS for n in u.names}
    # the spellings the first report said the generator never produced
    assert {"G", "M", "kB", "KB", "mi/h", "kmh", "ft/s", "cm^3", "cm**3", "L", "l", "litre", "liter", "mL", "ml",
            "millilitre", "quart", "pint", "tablespoon", "stone", "terabyte", "cubic feet", "fluid ounces"} <= names


@pytest.mark.parametrize(
    "src, dst, factor",
    [("kilogram", "gram", 1000), ("month", "day", 30.4375), ("10 * year", "year", 10), ("100 * year", "year", 100),
     ("mile / hour", "kilometer / hour", 1.609344), ("gallon", "liter", 3.785411784), ("kilobyte", "bit", 8000),
     ("inch", "centimeter", 2.54), ("pound", "gram", 453.59237)],
)
def test_factors_come_from_pint(src, dst, factor):
    assert datagen.conversion_factor(src, dst) == pytest.approx(factor, rel=1e-9)


def test_the_hand_written_questions_are_valid_and_none_is_generated():
    """data/handwritten.json: 60 questions typed by hand, not by the generator (README, "Data, answer format and
    accuracy"); answers computed with pint. It must load cleanly and share no question with the generated files."""
    from homework.data import Dataset

    rows = Dataset("handwritten").data
    assert len(rows) == 60 and len({q for q, _ in rows}) == 60
    generated = {q for split in SPLITS for q, _ in _rows(split)}
    assert not {q for q, _ in rows} & generated
    assert not datagen.main(["--check"])  # the generator leaves the hand-written file alone
