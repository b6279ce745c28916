"""Property tests for label masking (failure catalog rows 2-5), each against a naive oracle."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from homework.datagen import generate as datagen
from homework.runtime.errors import DataError
from homework.sft import TokenizedDataset, format_example, tokenize
from homework.text.prompt import build_prompt, encode
from homework.text.tokenization import AnswerDoesNotFit
from homework.training.collate import IGNORE_INDEX

unit_names = sorted({n for u in datagen.UNITS for n in u.names})
template_questions = st.builds(
    lambda t, q, a, b: t.format(q=q, src=a, dst=b),
    st.sampled_from(datagen.TEMPLATES),
    st.one_of(st.integers(0, 10**6).map(str), st.floats(0, 1e6, allow_nan=False).map(lambda x: f"{x:g}")),
    st.sampled_from(unit_names),
    st.sampled_from(unit_names),
)
questions = st.one_of(
    template_questions,
    template_questions.map(lambda q: q + "   "),  # trailing spaces
    st.text(min_size=1, max_size=60),  # arbitrary unicode
    st.text(alphabet="0123456789.,- ", min_size=1, max_size=30),  # digits
    st.text(min_size=200, max_size=400),  # very long
)
answers = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)


def naive_labels(prompt_len: int, total: int, ids: list[int], width: int) -> list[int]:
    """The obvious definition, written position by position."""
    out = []
    for i in range(width):
        out.append(ids[i] if prompt_len <= i < total else IGNORE_INDEX)
    return out


@given(question=questions, answer=answers)
def test_label_masking_invariants(hw_tokenizer, question, answer):
    """Catalog rows 2, 3, 4, 5: labels are -100 or their id, the prompt is a token prefix, the supervised
    tokens decode to the answer + EOS, padding is -100 by position, and rows that cannot fit are refused."""
    tok = hw_tokenizer
    ex = format_example(question, answer)
    try:
        row = tokenize(tok, ex["question"], ex["answer"], max_length=128, pad=True)
    except AnswerDoesNotFit as exc:
        # Rejected with a clear error, never an all -100 row.
        assert "max_length=128" in str(exc) and exc.prompt_tokens + exc.answer_tokens > 128
        return
    ids, labels, mask = row["input_ids"], row["labels"], row["attention_mask"]
    assert len(ids) == len(labels) == len(mask) == 128
    prompt = encode(tok, build_prompt(ex["question"]))
    total = sum(mask)
    # every label is -100 or its input id
    assert all(lab in (IGNORE_INDEX, i) for lab, i in zip(labels, ids))
    # the prompt's tokens are a prefix of the row, and of the full text's own tokenization
    assert ids[: len(prompt)] == prompt
    full_text_ids = encode(tok, build_prompt(ex["question"]) + ex["answer"])
    assert full_text_ids[: len(prompt)] == prompt
    # supervised tokens decode to the formatted answer plus EOS; the last one is EOS
    supervised = [i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX]
    assert supervised[-1] == tok.eos_token_id
    assert tok.decode(supervised) == ex["answer"] + tok.eos_token
    # padding is always -100 and attention 0, decided by position (pad id == eos id here)
    assert mask == [1] * total + [0] * (128 - total)
    assert labels[total:] == [IGNORE_INDEX] * (128 - total)
    # the whole label row equals the naive position-by-position oracle
    assert labels == naive_labels(len(prompt), total, ids, 128)


@given(question=questions, answer=answers)
def test_unpadded_rows_match_padded_rows(hw_tokenizer, question, answer):
    ex = format_example(question, answer)
    try:
        padded = tokenize(hw_tokenizer, ex["question"], ex["answer"], max_length=128, pad=True)
    except AnswerDoesNotFit:
        return
    ragged = tokenize(hw_tokenizer, ex["question"], ex["answer"], max_length=128, pad=False)
    n = len(ragged["input_ids"])
    assert sum(padded["attention_mask"]) == n
    for key in ("input_ids", "labels", "attention_mask"):
        assert padded[key][:n] == ragged[key]


@given(answer=answers, extra=st.integers(1, 30))
def test_row_whose_answer_cannot_fit_is_rejected(hw_tokenizer, answer, extra):
    """Catalog row 3: one token short of fitting is an error, never a row with nothing supervised."""
    ex = format_example("How many grams are in 5 kg?", answer)
    prompt = len(encode(hw_tokenizer, build_prompt(ex["question"])))
    target = len(encode(hw_tokenizer, ex["answer"])) + 1
    limit = prompt + target - 1
    assume(limit > 0)
    with pytest.raises(AnswerDoesNotFit, match="would be cut off"):
        tokenize(hw_tokenizer, ex["question"], ex["answer"], max_length=limit)
    ok = tokenize(hw_tokenizer, ex["question"], ex["answer"], max_length=limit + 1 + extra)
    assert any(lab != IGNORE_INDEX for lab in ok["labels"])


def test_tokenized_dataset_reports_the_rows_that_cannot_fit(hw_tokenizer, tmp_path):
    import json

    from homework.data import Dataset

    path = tmp_path / "long.json"
    path.write_text(json.dumps([["How many g in 1 kg?", 1000], ["word " * 150 + "?", 5.0], ["ok?", 1]]))
    with pytest.raises(DataError) as err:
        TokenizedDataset(hw_tokenizer, Dataset(str(path)), format_example, max_length=128)
    msg = str(err.value)
    assert f"{path}, row 1" in msg and "max_length=128" in msg and "row 0" not in msg and "catalog row 3" in msg


def test_tokenized_dataset_fixed_length_by_default(hw_tokenizer):
    from homework.data import Dataset

    ds = TokenizedDataset(hw_tokenizer, Dataset("valid"), format_example)
    assert {len(ds[i]["input_ids"]) for i in range(len(ds))} == {128}
    assert len(ds) == 300 and ds.max_length == 128  # what a caller reads back is the length rows were padded to


# ---------------------------------------------------------------- exact layout on a character tokenizer (fast)


class CharTokenizer:
    """One id per character (ord + 10): layouts can be written out by hand."""

    def __init__(self, eos=2, pad=0):
        self.eos_token_id, self.pad_token_id = eos, pad

    def __call__(self, text, add_special_tokens=False):
        assert add_special_tokens is False  # training and inference encode without added specials
        return {"input_ids": [ord(c) + 10 for c in text]}


def ids(text):
    return [ord(c) + 10 for c in text]


@pytest.mark.parametrize("pad_id, expected_pad", [(0, 0), (None, 2)])  # no pad token: pad with EOS, masked by position
def test_a_row_is_prompt_then_answer_and_eos_then_padding(pad_id, expected_pad):
    row = tokenize(CharTokenizer(pad=pad_id), "  a  b ", "<7>", max_length=22)
    prompt, target = ids("Question: a b\n"), ids("<7>") + [2]
    assert row["input_ids"] == prompt + target + [expected_pad] * 4
    assert row["labels"] == [IGNORE_INDEX] * 14 + target + [IGNORE_INDEX] * 4
    assert row["attention_mask"] == [1] * 18 + [0] * 4
    ragged = tokenize(CharTokenizer(pad=pad_id), "a b", "<7>", max_length=22, pad=False)
    assert ragged["input_ids"] == prompt + target and ragged["attention_mask"] == [1] * 18
    assert tokenize(CharTokenizer(), "a b", "<7>", max_length=None)["input_ids"] == prompt + target


def test_a_row_may_fill_max_length_exactly_but_not_exceed_it():
    assert len(tokenize(CharTokenizer(), "a b", "<7>", max_length=18)["input_ids"]) == 18
    with pytest.raises(AnswerDoesNotFit) as err:
        tokenize(CharTokenizer(), "a b", "<7>", max_length=17)
    e = err.value
    assert (e.prompt_tokens, e.answer_tokens, e.max_length) == (14, 4, 17)
    assert str(e) == ("question is 14 tokens and the answer + EOS 4: 18 > max_length=17, so the answer would be cut "
                      "off. Shorten the question or raise max_length.")


def test_a_tokenizer_without_eos_is_refused():
    with pytest.raises(DataError) as err:
        tokenize(CharTokenizer(eos=None), "a", "b")
    assert str(err.value) == "the tokenizer has no EOS token; the model could never learn to stop"


def test_rows_are_padded_to_max_length_unless_asked_not_to():
    from homework.text.tokenization import tokenize_row

    assert len(tokenize_row(CharTokenizer(), "a", "b", max_length=16).input_ids) == 16


class Rows(list):
    path = "data/some.json"


def test_the_dataset_keeps_questions_answers_and_rows_in_step_and_lists_what_cannot_fit():
    fmt = lambda q, a: {"question": q, "answer": f"<{a}>"}  # noqa: E731
    tok, rows = CharTokenizer(), Rows([("a", 1), ("bb", 22)])
    ds = TokenizedDataset(tok, rows, fmt, max_length=30, pad=False)
    assert ds.tokenizer is tok and ds.data is rows and ds.format_fn is fmt
    assert (len(ds), ds.questions, ds.answers, ds.source) == (2, ["a", "bb"], ["<1>", "<22>"], "data/some.json")
    assert ds[1] == tokenize(CharTokenizer(), "bb", "<22>", max_length=30, pad=False)
    too_long = Rows([("q" * 30, 1)] * 10 + [("ok", 2)])
    with pytest.raises(DataError) as err:
        TokenizedDataset(CharTokenizer(), too_long, fmt, max_length=30)
    lines = str(err.value).splitlines()
    assert lines[0] == ("10 row(s) cannot fit their answer in max_length=30; training on them would supervise nothing "
                        "(failure catalog row 3):")
    assert lines[1] == "  data/some.json, row 0: prompt 41 + answer 4 tokens > max_length=30"
    assert lines[8].startswith("  data/some.json, row 7:") and lines[9] == "  (+2 more rows)"
    assert lines[-1] == "Fix: shorten or remove those questions, or raise max_length."
    with pytest.raises(DataError, match="the dataset, row 0: prompt 41"):
        TokenizedDataset(CharTokenizer(), [("q" * 30, 1)], fmt, max_length=30)
    for count, last in ((8, "  data/some.json, row 7: prompt 41 + answer 4 tokens > max_length=30"),
                        (9, "  (+1 more rows)")):
        with pytest.raises(DataError) as err:
            TokenizedDataset(CharTokenizer(), Rows([("q" * 30, 1)] * count), fmt, max_length=30)
        assert str(err.value).splitlines()[-2] == last
    course = TokenizedDataset(CharTokenizer(), [("a", 6.0)], max_length=None)  # the course's format by default
    assert course.answers == [format_example("a", 6.0)["answer"]] and course.source is None
