"""The pre-flight scan looks at every row of a training file as large as the shipped one, not a sample of it: a bad
row placed last, or anywhere far past the first few dozen, is reported by the scan and by the run's call of it."""

import random
from types import SimpleNamespace

import pytest
import torch

from homework.runtime.errors import PreflightError
from homework.text.prompt import build_prompt
from homework.training.collate import IGNORE_INDEX
from homework.training.config import TrainConfig
from homework.training.health import preflight_scan

EOS = 2
ROWS = 4_800  # twice data/train.json


class _CharTokenizer:
    """One id per character: a stand-in that makes scanning thousands of rows cost milliseconds."""

    eos_token_id = EOS

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == EOS))


class _Rows(list):
    """Tokenized rows as the run hands them to the scan: with their file, questions and answers."""

    source = "data/train.json"


def _large_file(n=ROWS):
    tok = _CharTokenizer()
    rows = _Rows()
    rows.questions, rows.answers = [], []
    for i in range(n):
        question, answer = f"How many gram are there per {i} kg?", f"{i * 1000}"
        prompt, target = tok(build_prompt(question))["input_ids"], tok(answer)["input_ids"] + [EOS]
        rows.append({"input_ids": prompt + target, "attention_mask": [1] * (len(prompt) + len(target)),
                     "labels": [IGNORE_INDEX] * len(prompt) + target})
        rows.questions.append(question)
        rows.answers.append(answer)
    return tok, rows


# far past any sample of the first rows, at positions no stride or head would pick on purpose
LATE = sorted(random.Random(31).sample(range(ROWS // 2, ROWS - 1), 2))


def _break(rows):
    """The last row loses its EOS label; two rows at seeded random positions in the second half supervise
    something other than their answer and nothing at all."""
    last = rows[-1]
    last["labels"] = last["labels"][:-1] + [IGNORE_INDEX]
    mismatched = rows[LATE[0]]
    answer = [k for k, lab in enumerate(mismatched["labels"]) if lab not in (IGNORE_INDEX, EOS)]
    for k in answer:  # ids and labels agree, ending in EOS: only the answer's text is wrong
        mismatched["input_ids"][k] = mismatched["labels"][k] = ord("9")
    rows[LATE[1]]["labels"] = [IGNORE_INDEX] * len(rows[LATE[1]]["labels"])
    return {"rows whose last supervised token is not EOS": [len(rows) - 1],
            "rows whose supervised tokens are not their answer": [LATE[0]],
            "rows with no supervised token": [LATE[1]]}


def test_the_scan_reports_bad_rows_placed_anywhere_in_a_file_of_thousands():
    tok, rows = _large_file()
    assert preflight_scan(tok, rows, questions=rows.questions, answers=rows.answers) == []  # clean before
    expected = _break(rows)
    findings = preflight_scan(tok, rows, questions=rows.questions, answers=rows.answers)
    assert {f.check: f.rows for f in findings} == expected


def test_the_runs_preflight_refuses_a_large_file_naming_its_late_rows():
    """Through the call the training run makes before its first step (recipe.run_preflight), on the rows,
    questions and answers of the tokenized file."""
    from homework.runtime.device import resolve_placement
    from homework.training.recipe import run_preflight

    tok, rows = _large_file()
    _break(rows)
    recipe = SimpleNamespace(dataset=rows, model=torch.nn.Linear(2, 2), llm=SimpleNamespace(tokenizer=tok),
                             placement=resolve_placement("cpu"), config=TrainConfig())
    with pytest.raises(PreflightError) as refused:
        run_preflight(recipe)
    for row in (ROWS - 1, *LATE):
        assert f"data/train.json:{row}" in str(refused.value)


def test_the_shipped_train_file_is_scanned_to_its_last_row(hw_tokenizer):
    """The real file the run scans (2,400 rows), tokenized by the real tokenizer; the scan's row checks alone
    (the fast path: no re-encoding of the prompts). Its last row, with its EOS unsupervised, is reported."""
    from homework.training.recipe import tokenized_rows

    rows = tokenized_rows(TrainConfig(), hw_tokenizer)
    assert len(rows) >= 2_400 and rows.source.endswith("train.json")
    last = rows.rows[-1]
    last["labels"] = [IGNORE_INDEX if t == hw_tokenizer.eos_token_id else lab
                      for t, lab in zip(last["input_ids"], last["labels"])]
    findings = preflight_scan(hw_tokenizer, rows)
    assert [(f.check, f.rows) for f in findings] == [("rows whose last supervised token is not EOS", [len(rows) - 1])]
