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


def test_a_special_token_only_at_inference_is_another_prompt_not_a_seam():
    """A tokenizer whose BOS is its EOS (GPT-2 style): inference prepends it, training did not. Decoded with the
    special tokens kept, the row's text does not start with the prompt's: catalog row 11."""
    ids, labels = _row()
    problem = prompt_problem(TOK, ids, labels, [0] + [ord(c) for c in PROMPT])
    assert (problem.check, problem.row) == ("prompt_not_prefix", 11)


def test_row_problems_runs_the_prompt_check_once():
    """With prompt_ids and an answer, a supervised prompt is named once, by the prompt check."""
    ids, labels = _row(supervise_from=0)
    assert _checks(ids, labels, prompt_ids=[ord(c) for c in PROMPT], answer=ANSWER) == [("prompt_supervised", 16)]
    ids, labels = _row()
    seam = ids[:len(PROMPT) - 1] + [COLON] + ids[len(PROMPT):]
    found = row_problems(SeamTokenizer(), seam, labels, prompt_ids=ids[:len(PROMPT)])
    assert [(p.check, p.row) for p in found] == [("prompt_not_prefix", 4)]


def _whats(ids, labels, **kw):
    return [p.what for p in row_problems(TOK, ids, labels, **kw)]


def test_each_row_problem_says_what_it_found():
    ids, labels = _row()
    assert _whats([1, 2], [-100]) == ["2 input ids but 1 labels"]
    assert _whats(ids, [-100] * len(ids)) == ["no label is supervised (every label is -100)"]
    rewritten = labels[:len(PROMPT)] + [ord("x")] * (len(labels) - len(PROMPT))  # the answer's 2 and the EOS
    assert _whats(ids, rewritten)[0] == f"labels at positions {list(range(len(PROMPT), len(ids)))} differ from their input ids"
    long_ids, long_labels = _row(answer=" 1234567")
    assert _whats(long_ids, [lab if lab == -100 else 7 for lab in long_labels])[0].startswith(
        f"labels at positions {list(range(len(PROMPT), len(PROMPT) + 5))} differ")  # the first five only
    assert _whats(*_truncated(), answer=" 512") == [
        "the supervised tokens stop at '51', short of the answer ' 512', with no EOS: the row was cut before its "
        "answer ended"]
    assert _whats(*_eos_masked()) == [f"the last supervised label is {ord('5')}, not EOS (0); the model never learns to stop"]
    gap_ids, gap_labels = _gap()
    n = len(PROMPT)
    assert _whats(gap_ids, gap_labels) == [f"the supervised positions {[n, n + 2, n + 3]} are not one answer span"]
    assert _whats(*_row(supervise_from=0), answer=ANSWER) == [
        f"the supervised tokens decode to {(PROMPT + ANSWER)!r}: the prompt is supervised along with the answer ' 5'"]
    assert _whats(*_row(answer=" 55", supervise_from=n + 2), answer=" 55") == [
        "the supervised tokens decode to '5', not the answer ' 55'"]


LONG_PROMPT = "Question: what is 2+3?\nAnswer:"


def test_each_prompt_problem_says_what_it_found():
    prompt = [ord(c) for c in LONG_PROMPT]
    n = len(prompt)

    def what(row, prompt_ids=prompt, tokenizer=TOK):
        return prompt_problem(tokenizer, *row, prompt_ids).what

    ids, labels = _row(LONG_PROMPT)
    # one prompt token supervised, the one right before the answer
    assert what(_row(LONG_PROMPT, supervise_from=n - 1)) == f"1 of the prompt's {n} tokens are supervised (from position {n - 1})"
    assert what(_row(LONG_PROMPT, supervise_from=n + 1)) == (
        f"training supervises from position {n + 1}, the inference prompt is {n} tokens: the answer's first tokens "
        "go unsupervised")
    other = [ord(c) for c in "Q: " + LONG_PROMPT]
    assert what((ids, labels), other) == (
        f"the inference prompt's ids are not the training row's prompt: {other[:12]}... vs {ids[:12]}...")
    seam = ids[:n - 1] + [COLON] + ids[n:]
    assert what((seam, labels), tokenizer=SeamTokenizer()) == (
        f"the prompt's ids {prompt[:12]}... are not the row's first ids {seam[:12]}...: the same text tokenized "
        "differently across the prompt/answer boundary")


def test_a_tag_search_that_matches_in_the_system_prompt_is_a_supervised_prompt():
    """The tag also occurs in the system prompt, the search finds that one first, and the template closes the
    answer with its end-of-turn token and a newline before the EOS tokenize appends: the cause is the supervised
    prompt (row 16), not an answer mismatch (row 4)."""
    prompt, answer = "sys: reply as <a>N</a>\nuser: 2+3?\nbot:", "<a>5</a>"
    ids = [ord(c) for c in prompt + answer] + [0, ord("\n"), 0]
    start = prompt.index("<a>")
    labels = [-100] * start + ids[start:]
    assert ("prompt_supervised", 16) in _checks(ids, labels, answer=answer)
    assert ("answer_mismatch", 4) not in _checks(ids, labels, answer=answer)


def test_supervised_padding_is_named_before_the_answer_text():
    ids, labels = _row()
    ids, labels, mask = ids + [0, 0], labels + [0, 0], [1] * len(ids) + [0, 0]  # pad == EOS, labelled by id
    assert _checks(ids, labels, answer=ANSWER, attention_mask=mask) == [("padding_supervised", 5)]
    assert _checks(*_row(), answer=ANSWER, attention_mask=[1] * len(_row()[0])) == []


@pytest.mark.parametrize("inference, training, expected", [
    ("Q: 2+3?\nA: ", "Q: 2+3?\nA:", ("prompt_not_prefix", 21)),  # a strip() in training only
    ("Q: 2+3?\nA:\n", "Q: 2+3?\nA: ", ("prompt_not_prefix", 21)),  # another trailing whitespace
    ("<s>sys: be brief\nuser: 2+3?\nbot:", "<s>sys: be brief\nuser: <s>sys: be brief\nuser: 2+3?\nbot:\nbot:",
     ("prompt_not_prefix", 20)),  # the template applied to an already templated question
    ("Q: 2+3?\nA:", "Solve it.\nQ: 2+3?\nA:", ("prompt_not_prefix", 11)),  # an instruction in training only
], ids=["whitespace", "other-whitespace", "template-twice", "other-prompt"])
def test_prompt_mismatches_with_a_cause_of_their_own(inference, training, expected):
    ids = [ord(c) for c in training + ANSWER] + [0]
    labels = [-100] * len(training) + ids[len(training):]
    problem = prompt_problem(TOK, ids, labels, [ord(c) for c in inference])
    assert (problem.check, problem.row) == expected


def test_the_prompt_training_conditions_on_is_found_even_without_labels(hw_tokenizer):
    tok = hw_tokenizer
    prompt = tok("How many m are there in 3 km?\n")["input_ids"]
    cue = tok("How many m are there in 3 km?\nAnswer:")["input_ids"]
    answer = tok("<answer>3000</answer>", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = cue + answer
    found = prompt_problem(tok, ids, [-100] * len(ids), prompt, answer="<answer>3000</answer>")
    assert (found.row, found.check) == (11, "prompt_not_prefix") and "'Answer:'" in found.what
    supervised = [-100] * len(cue) + answer
    assert prompt_problem(tok, ids, supervised, prompt, answer="<answer>3000</answer>").row == 11
    # without the answer's text there is nothing to tell a cue from the answer's start by
    assert prompt_problem(tok, ids, supervised, prompt, answer=None).row == 4
    # the answer's own first token left out is a seam (row 4), not a prompt of training's own
    late = [-100] * (len(prompt) + 1) + (prompt + answer)[len(prompt) + 1:]
    assert prompt_problem(tok, prompt + answer, late, prompt, answer="<answer>3000</answer>").row == 4
    assert prompt_problem(tok, prompt + answer, [-100] * len(prompt) + answer, prompt,
                          answer="<answer>3000</answer>") is None
    # an inference prompt that already holds the answer's opening tag, which training supervises as answer
    full = tok("How many m are there in 3 km? <answer>3000</answer>")["input_ids"] + [tok.eos_token_id]
    tagged = tok("How many m are there in 3 km? <answer>")["input_ids"]
    start = next(k for k in range(len(full)) if tok.decode(full[:k]).endswith(" <"))
    found = prompt_problem(tok, full, [-100] * start + full[start:], tagged, answer="<answer>3000</answer>")
    assert found.row == 11 and "ends with 'answer>'" in found.what, found
