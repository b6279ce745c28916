"""sft_contract.rows: the one definition of a healthy training row (the contract's check_row and
homework's pre-flight scan both run it), on a character tokenizer where every id is readable."""

import pytest

from sft_contract.rows import RowProblem, prompt_problem, row_problems


class CharTokenizer:
    """One id per character (ord); EOS = 0, decoded as </s>."""

    eos_token_id = 0

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) if i else ("" if skip_special_tokens else "</s>") for i in ids)


TOK = CharTokenizer()
PROMPT, ANSWER = "Q: 2+3?\nA:", " 5"


def _row(prompt=PROMPT, answer=ANSWER, *, supervise_from=None, eos=True):
    ids = [ord(c) for c in prompt + answer] + ([0] if eos else [])
    start = len(prompt) if supervise_from is None else supervise_from
    return ids, [-100] * start + ids[start:]


def _checks(ids, labels, **kw):
    return [(p.check, p.row) for p in row_problems(TOK, ids, labels, **kw)]


def test_a_healthy_row_has_no_problem():
    ids, labels = _row()
    assert row_problems(TOK, ids, labels, prompt_ids=[ord(c) for c in PROMPT], answer=ANSWER) == []


def _eos_masked():
    ids, labels = _row()
    return ids, labels[:-1] + [-100]


def _truncated():
    ids, labels = _row(answer=" 512", eos=False)
    return ids[:-1], labels[:-1]  # cut inside the answer: " 51", no EOS


def _gap():
    ids, labels = _row(answer=" 55")
    labels[len(PROMPT) + 1] = -100
    return ids, labels


@pytest.mark.parametrize("make, answer, expected", [
    (lambda: ([1, 2], [-100]), None, [("length_mismatch", 6)]),
    (lambda: (_row()[0], [-100] * len(_row()[0])), None, [("nothing_supervised", 2)]),
    (lambda: (_row()[0], _row()[1][:-2] + [ord("6"), 0]), None, [("labels_rewritten", 6)]),
    (_eos_masked, ANSWER, [("eos_not_supervised", 5)]),
    (_truncated, " 512", [("answer_truncated", 3)]),
    (_gap, " 55", [("not_one_span", 4)]),
    (lambda: _row(supervise_from=0), ANSWER, [("prompt_supervised", 16)]),
    (lambda: _row(answer=" 55", supervise_from=len(PROMPT) + 2), " 55", [("answer_mismatch", 4)]),
], ids=["length", "nothing", "rewritten", "eos-masked", "truncated", "gap", "prompt-supervised", "answer-start-masked"])
def test_each_row_fault_is_named_with_its_catalog_row(make, answer, expected):
    """Catalog rows 2-6 and 16, each from one fault and no neighbouring check."""
    ids, labels = make()
    assert _checks(ids, labels, answer=answer) == expected


@pytest.mark.parametrize("row, prompt, expected", [
    (_row(), PROMPT, None),
    (_row(supervise_from=0), PROMPT, ("prompt_supervised", 16)),
    (_row(supervise_from=len(PROMPT) + 1), PROMPT, ("answer_start_unsupervised", 4)),
    (_row(), "Question: 2+3?\nA:", ("prompt_not_prefix", 11)),  # another prompt at inference
], ids=["same", "prompt-supervised", "answer-start-masked", "other-prompt"])
def test_the_prompt_check_tells_a_supervised_prompt_from_another_prompt(row, prompt, expected):
    problem = prompt_problem(TOK, *row, [ord(c) for c in prompt])
    assert (problem.check, problem.row) == expected if expected else problem is None


COLON = ord(":") + 1000  # another id for ':', as a tokenizer that merged it with its neighbour would give


class SeamTokenizer(CharTokenizer):
    def decode(self, ids, skip_special_tokens=False):
        return super().decode([ord(":") if t == COLON else t for t in ids], skip_special_tokens)


def test_the_same_prompt_text_in_other_ids_is_a_tokenization_seam():
    """Catalog row 4, not 11: the row's text starts with the prompt's text, its ids do not."""
    ids, labels = _row()
    seam = prompt_problem(SeamTokenizer(), ids[:len(PROMPT) - 1] + [COLON] + ids[len(PROMPT):], labels,
                          ids[:len(PROMPT)])
    assert isinstance(seam, RowProblem) and (seam.check, seam.row) == ("prompt_not_prefix", 4)
