"""Checks of one tokenized training row: the one definition of row masking, EOS supervision, an answer that
fits and a prompt that is the inference prompt.

`row_problems` returns every problem of a row, each a `RowProblem` naming its check (a stable key) and its
failure-catalog row. The contract's `check_row` / `check_prompt_identity` raise the first one; a pre-flight
scan (homework.training.health.preflight_scan) groups rows by check. Plain lists of ids: no torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IGNORE_INDEX = -100


@dataclass(frozen=True)
class RowProblem:
    check: str  # which check failed, e.g. "eos_not_supervised"; a scan groups rows by it
    row: int  # the failure catalog row
    what: str


def supervised_positions(labels: Sequence[int]) -> list[int]:
    return [k for k, lab in enumerate(labels) if lab != IGNORE_INDEX]


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False)


def prompt_problem(tokenizer, ids: Sequence[int], labels: Sequence[int], prompt_ids: Sequence[int]) -> RowProblem | None:
    """Whether the row starts with exactly the prompt ids inference feeds and supervises from the first id
    after them (catalog rows 4, 11, 16)."""
    ids, prompt = list(ids), list(prompt_ids)
    sup = supervised_positions(labels)
    n = len(prompt)
    if ids[:n] != prompt:
        # the same text in other tokens is a tokenization seam; other text is another prompt
        if _decode(tokenizer, ids).startswith(_decode(tokenizer, prompt)):
            return RowProblem("prompt_not_prefix", 4, f"the prompt's ids {prompt[:12]}... are not the row's first ids "
                              f"{ids[:12]}...: the same text tokenized differently across the prompt/answer boundary")
        return RowProblem("prompt_not_prefix", 11, f"the inference prompt's ids are not the training row's prompt: "
                          f"{prompt[:12]}... vs {ids[:12]}...")
    if sup and sup[0] < n:
        return RowProblem("prompt_supervised", 16, f"{n - sup[0]} of the prompt's {n} tokens are supervised "
                          f"(from position {sup[0]})")
    if sup and sup[0] > n:
        return RowProblem("answer_start_unsupervised", 4, f"training supervises from position {sup[0]}, the "
                          f"inference prompt is {n} tokens: the answer's first tokens go unsupervised")
    return None


def row_problems(tokenizer, ids: Sequence[int], labels: Sequence[int], *, prompt_ids: Sequence[int] | None = None,
                 answer: str | None = None) -> list[RowProblem]:
    """Every problem of one row, most basic first; [] for a healthy row.

    A healthy row supervises one span, every supervised label equal to its input id, the span ending in
    EOS; with `answer`, the span (EOS aside) decodes to it; with `prompt_ids`, the row starts with them and
    the span starts right after them."""
    ids, labels = list(ids), [int(x) for x in labels]
    if len(ids) != len(labels):
        return [RowProblem("length_mismatch", 6, f"{len(ids)} input ids but {len(labels)} labels")]
    sup = supervised_positions(labels)
    if not sup:
        return [RowProblem("nothing_supervised", 2, "no label is supervised (every label is -100)")]
    found = []
    changed = [k for k in sup if labels[k] != ids[k]]
    if changed:
        found.append(RowProblem("labels_rewritten", 6, f"labels at positions {changed[:5]} differ from their input ids"))
    if prompt_ids is not None:
        problem = prompt_problem(tokenizer, ids, labels, prompt_ids)
        if problem:
            found.append(problem)
    eos = tokenizer.eos_token_id
    ends_in_eos = labels[sup[-1]] == eos
    text = None
    if answer is not None:
        text = _decode(tokenizer, [ids[k] for k in (sup[:-1] if ends_in_eos else sup)]).strip()
    if not ends_in_eos:
        if text and text != answer.strip() and answer.strip().startswith(text):
            found.append(RowProblem("answer_truncated", 3, f"the supervised tokens stop at {text!r}, short of the "
                                    f"answer {answer!r}, with no EOS: the row was cut before its answer ended"))
        else:
            found.append(RowProblem("eos_not_supervised", 5, f"the last supervised label is {labels[sup[-1]]}, not EOS "
                                    f"({eos}); the model never learns to stop"))
    if sup != list(range(sup[0], sup[-1] + 1)):
        found.append(RowProblem("not_one_span", 4, f"the supervised positions {sup} are not one answer span"))
    elif text is not None and text != answer.strip() and not {p.check for p in found} & {"answer_truncated",
                                                                                       "prompt_supervised"}:
        if text.endswith(answer.strip()):
            found.append(RowProblem("prompt_supervised", 16, f"the supervised tokens decode to {text!r}: the prompt "
                                    f"is supervised along with the answer {answer!r}"))
        else:
            found.append(RowProblem("answer_mismatch", 4, f"the supervised tokens decode to {text!r}, not the "
                                    f"answer {answer!r}"))
    return found
