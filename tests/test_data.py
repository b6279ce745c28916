import json
import math
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homework.data import DATA_DIR, Dataset, benchmark, is_answer_valid, load_rows
from homework.runtime.errors import DataError


@pytest.mark.parametrize(
    "answer, correct, ok",
    [(100, 100, True), (104.9, 100, True), (95.1, 100, True), (105.1, 100, False), (94.9, 100, False),
     (-100, 100, False), (-98, -100, True), (0, 0, True), (1e-12, 0, True), (0.1, 0, False),
     (float("nan"), 100, False), (float("inf"), 100, False), ("abc", 1, False), (0.0014, 0.0014125, True),
     (105, 100, True), (95, 100, True), (1e-9, 0, True), (100, float("inf"), False), (100, float("nan"), False)],
)
def test_is_answer_valid_uses_five_percent_relative_tolerance(answer, correct, ok):
    assert is_answer_valid(answer, correct) is ok


def test_dataset_loads_the_committed_splits():
    train, valid, heldout = Dataset("train"), Dataset("valid"), Dataset("heldout")
    assert (len(train), len(valid), len(heldout)) == (2400, 300, 300)
    q, a = train[0]
    assert isinstance(q, str) and isinstance(a, float)


def _write(tmp_path, content: str, name="bad.json"):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON (Expecting property name"),
        ('{"a": 1}', "top level is a JSON dict, not a list"),
        ("[]", "the list is empty"),
        ('[["q", 1, 2]]', "row 0: expected [question, answer]"),
        ('[[1, 2]]', "row 0: question is a int, not a string"),
        ('[["   ", 2]]', "row 0: question is empty"),
        ('[["ok", 1], ["q", "12"]]', 'row 1: answer "12" is not a number'),
        ('[["q", true]]', "row 0: answer true is not a number"),
        ('[["q", NaN]]', "row 0: answer nan is not finite"),
        ('[["q", Infinity]]', "row 0: answer inf is not finite"),
        ('[["q", null]]', "row 0: answer null is not a number"),
    ],
)
def test_bad_data_files_name_the_file_row_and_fix(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(DataError) as err:
        load_rows(path)
    text = str(err.value)
    assert str(path) in text and message in text and "Fix:" in text


def test_over_long_question_is_refused(tmp_path):
    path = _write(tmp_path, json.dumps([["x" * 5000, 1.0]]))
    with pytest.raises(DataError, match=r"row 0: question is 5000 characters"):
        load_rows(path)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_rows(tmp_path / "nope.json")
    p = tmp_path / "latin.json"
    p.write_bytes(b'[["caf\xe9", 1]]')
    with pytest.raises(DataError, match="not UTF-8"):
        load_rows(p)


def test_many_bad_rows_are_summarised(tmp_path):
    path = _write(tmp_path, json.dumps([["", 1]] * 9))
    with pytest.raises(DataError, match=r"(?s)9 invalid row\(s\).*and 4 more rows"):
        load_rows(path)


def test_duplicates_warn_with_a_count_and_are_kept(tmp_path):
    path = _write(tmp_path, json.dumps([["q", 1], ["q", 1], ["q", 1], ["r", 2]]))
    with pytest.warns(UserWarning, match="2 duplicated row"):
        rows = load_rows(path)
    assert len(rows) == 4


def test_dataset_accepts_a_path(tmp_path):
    path = _write(tmp_path, json.dumps([["How many g in 1 kg?", 1000]]), "mine.json")
    ds = Dataset(str(path))
    assert ds[0] == ("How many g in 1 kg?", 1000.0) and ds.path == path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_loader_fuzz_returns_rows_or_raises_data_error(tmp_path_factory, value):
    """Arbitrary JSON: valid rows or DataError, never another exception (issue 6, item 5)."""
    path = tmp_path_factory.mktemp("fuzz") / "f.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rows = load_rows(path)
        except DataError:
            return
    assert rows and all(isinstance(q, str) and q.strip() and math.isfinite(a) for q, a in rows)


@given(st.binary(max_size=200))
def test_loader_fuzz_on_raw_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzzb") / "f.json"
    path.write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_rows(path)
        except DataError:
            pass


class _Oracle:
    """A fake model that answers from a table: lets benchmark() be tested without a network."""

    def __init__(self, table):
        self.table = table

    def answer(self, *questions):
        return [self.table.get(q, float("nan")) for q in questions]


def test_benchmark_counts_correct_wrong_and_unanswered():
    """Catalog row 13: evaluation reports "no answer" apart from "wrong answer"."""
    rows = [("a", 10.0), ("b", 20.0), ("c", 30.0), ("d", 40.0)]
    result = benchmark(_Oracle({"a": 10.2, "b": 25.0, "c": 30.0}), rows)
    assert result.accuracy == 0.5 and result.answer_rate == 0.75
    assert result.wrong == 1 and result.unanswered == 1
    assert benchmark(_Oracle({}), rows, max_question=2).answer_rate == 0.0


def test_installed_package_without_a_checkout_regenerates_the_splits(tmp_path, monkeypatch):
    from homework import data as data_module
    from homework.runtime.model_source import CACHE_ENV

    monkeypatch.setattr(data_module, "DATA_DIR", tmp_path / "no-checkout")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data_module.DATA_ENV, raising=False)
    assert data_module.data_dir() == tmp_path / "cache" / "data"
    assert (tmp_path / "cache" / "data" / "train.json").read_bytes() == (DATA_DIR / "train.json").read_bytes()


@pytest.mark.parametrize("content, message", [
    ("{not json", "{path}: not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2). "
                  "Fix: write a JSON list of [question, answer] pairs"),
    ('"text"', "{path}: top level is a JSON str, not a list. Fix: write a JSON list of [question, answer] pairs"),
    ("[]", "{path}: the list is empty. Fix: add at least one [question, answer] pair"),
    (json.dumps([["q" * 100, 1, 2]]), "1 invalid row(s) in {path}:\n{path}, row 0: expected [question, answer], got "
                                      + json.dumps(["q" * 100, 1, 2])[:80] + ". Fix: make each row a 2-element list"),
    ("[[1, 2]]", "1 invalid row(s) in {path}:\n{path}, row 0: question is a int, not a string. "
                 "Fix: put the question text first"),
    ('[[" ", 2]]', "1 invalid row(s) in {path}:\n{path}, row 0: question is empty. "
                   "Fix: remove the row or write the question"),
    (json.dumps([["q" * 2001, 2]]), "1 invalid row(s) in {path}:\n{path}, row 0: question is 2001 characters "
                                    "(limit 2000). Fix: shorten or remove the row"),
    (json.dumps([["q", "9" * 50]]), "1 invalid row(s) in {path}:\n{path}, row 0: answer " + json.dumps("9" * 50)[:40]
                                    + " is not a number. Fix: write the answer as a JSON number"),
    ('[["q", NaN]]', "1 invalid row(s) in {path}:\n{path}, row 0: answer nan is not finite. "
                     "Fix: write a finite number"),
])
def test_each_refusal_names_the_file_the_row_what_is_wrong_and_the_fix(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(DataError) as err:
        load_rows(path)
    assert str(err.value) == message.format(path=path)


def test_a_missing_or_non_utf8_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_rows(tmp_path / "nope.json")
    assert str(err.value) == (f"{tmp_path / 'nope.json'}: file not found. "
                              "Fix: run `python -m homework.datagen` or pass an existing file")
    p = tmp_path / "latin.json"
    p.write_bytes(b'[["caf\xe9", 1]]')
    with pytest.raises(DataError) as err:
        load_rows(p)
    assert str(err.value) == f"{p}: not UTF-8 text (invalid continuation byte at byte 6). Fix: save the file as UTF-8 JSON"


def test_the_first_five_bad_rows_are_listed_and_the_rest_counted(tmp_path):
    def problems(count):
        path = _write(tmp_path, json.dumps([["", 1]] * count))
        with pytest.raises(DataError) as err:
            load_rows(path)
        return str(err.value).splitlines()

    listed = [f"{tmp_path / 'bad.json'}, row {i}: question is empty. Fix: remove the row or write the question"
              for i in range(5)]
    assert problems(5) == [f"5 invalid row(s) in {tmp_path / 'bad.json'}:", *listed]
    assert problems(6) == [f"6 invalid row(s) in {tmp_path / 'bad.json'}:", *listed, "(and 1 more rows)"]


def test_a_question_of_exactly_the_limit_is_accepted(tmp_path):
    assert load_rows(_write(tmp_path, json.dumps([["q" * 2000, 1]]))) == [("q" * 2000, 1.0)]


def test_a_row_given_twice_is_one_duplicate(tmp_path):
    path = _write(tmp_path, json.dumps([["q", 1], ["q", 1], ["r", 2]]))
    with pytest.warns(UserWarning, match=f"^{path}: 1 duplicated row"):
        load_rows(path)


def test_the_data_directory_can_be_named_by_the_environment(tmp_path, monkeypatch):
    from homework import data as data_module

    monkeypatch.setenv(data_module.DATA_ENV, str(tmp_path))
    assert data_module.data_dir() == tmp_path


def test_splits_regenerated_once_are_reused(tmp_path, monkeypatch):
    from homework import data as data_module
    from homework.datagen import generate
    from homework.runtime.model_source import CACHE_ENV

    monkeypatch.setattr(data_module, "DATA_DIR", tmp_path / "no-checkout")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "cache" / "data").mkdir(parents=True)
    (tmp_path / "cache" / "data" / "train.json").write_text("[]")
    monkeypatch.setattr(generate, "main", lambda argv: pytest.fail("the splits are there: nothing to regenerate"))
    assert data_module.data_dir() == tmp_path / "cache" / "data"


def test_a_dataset_remembers_its_split(tmp_path):
    path = _write(tmp_path, json.dumps([["q", 1]]), "mine.json")
    assert Dataset(str(path)).split == str(path)


def test_benchmark_reads_any_object_with_rows_in_data_and_records_each_sample():
    from types import SimpleNamespace

    result = benchmark(_Oracle({"a": 10.2}), SimpleNamespace(data=[("a", 10.0), ("b", 20.0), ("c", 1.0)]),
                       max_question=2)
    assert result.samples == [{"question": "a", "answer": 10.2, "correct_answer": 10.0, "is_correct": True},
                              {"question": "b", "answer": result.samples[1]["answer"], "correct_answer": 20.0,
                               "is_correct": False}]
    assert math.isnan(result.samples[1]["answer"])
    with pytest.raises(DataError, match="^benchmark got no questions$"):
        benchmark(_Oracle({}), [])
