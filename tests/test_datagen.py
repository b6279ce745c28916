import json
import re
from collections import Counter

import pytest

from homework import datagen
from homework.data import DATA_DIR


def test_generator_reproduces_the_committed_files_byte_for_byte(tmp_path):
    assert datagen.main(["--out", str(tmp_path)]) == 0
    for split in ("train", "valid"):
        assert (tmp_path / f"{split}.json").read_bytes() == (DATA_DIR / f"{split}.json").read_bytes()
    assert datagen.main(["--check"]) == 0


def test_check_flags_a_stale_file(tmp_path):
    datagen.main(["--out", str(tmp_path)])
    (tmp_path / "valid.json").write_text("[]\n")
    assert datagen.main(["--out", str(tmp_path), "--check"]) == 1


def test_different_seed_gives_different_data():
    assert datagen.build_splits(seed=1)["train"][:20] != datagen.build_splits()["train"][:20]


def test_splits_have_the_sizes_and_no_shared_question():
    splits = datagen.build_splits()
    assert len(splits["train"]) == datagen.N_TRAIN and len(splits["valid"]) == datagen.N_VALID
    assert not {q for q, _ in splits["train"]} & {q for q, _ in splits["valid"]}


def test_coverage_of_dimensions_templates_and_quantities():
    dims = Counter(u.dimension for u in datagen.UNITS)
    assert set(dims) == {"length", "mass", "time", "volume", "speed", "data"}
    names = {n for u in datagen.UNITS for n in u.names}
    assert {"months", "years", "decades", "centuries"} <= names
    assert len(datagen.TEMPLATES) >= 25 + datagen.HELD_OUT
    train = json.loads((DATA_DIR / "train.json").read_text())
    decimals = [q for q, _ in train if re.search(r"\d\.\d", q)]
    assert len(decimals) > 100  # quantities beyond single integers


def test_held_out_templates_only_in_validation():
    def pattern(t):
        return re.compile("^" + re.escape(t).replace(r"\{q\}", ".+").replace(r"\{src\}", ".+").replace(r"\{dst\}", ".+") + "$")

    held = [pattern(t) for t in datagen.TEMPLATES[-datagen.HELD_OUT:]]
    train = json.loads((DATA_DIR / "train.json").read_text())
    valid = json.loads((DATA_DIR / "valid.json").read_text())
    assert not any(p.match(q) for q, _ in train for p in held)
    assert sum(any(p.match(q) for p in held) for q, _ in valid) >= 50


@pytest.mark.parametrize(
    "src, dst, factor",
    [("kilogram", "gram", 1000), ("month", "day", 30.4375), ("10 * year", "year", 10), ("100 * year", "year", 100),
     ("mile / hour", "kilometer / hour", 1.609344), ("gallon", "liter", 3.785411784), ("kilobyte", "bit", 8000),
     ("inch", "centimeter", 2.54), ("pound", "gram", 453.59237)],
)
def test_factors_come_from_pint(src, dst, factor):
    assert datagen.conversion_factor(src, dst) == pytest.approx(factor, rel=1e-9)
