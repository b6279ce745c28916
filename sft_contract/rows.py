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


def _prompt_text_problem(inference: str, training: str | None) -> RowProblem | None:
    """Two prompt texts that differ in a way with its own cause: only in whitespace (a strip() in one path,
    catalog row 21), or one wrapped in a chat template twice (its opening repeated inside it, row 20)."""
    if not training or training == inference:
        return None
    if "".join(training.split()) == "".join(inference.split()):
        return RowProblem("prompt_not_prefix", 21, f"the inference prompt and the training prompt differ only in "
                          f"whitespace: {inference[-30:]!r} vs {training[-30:]!r}")
    shorter, longer = sorted((inference, training), key=len)
    head = shorter[:20]
    if len(head) == 20 and longer.count(head) >= 2 > shorter.count(head):
        side = "training" if longer is training else "inference"
        return RowProblem("prompt_not_prefix", 20, f"the {side} prompt wraps its question in the prompt template "
                          f"twice ({head!r} occurs {longer.count(head)} times)")
    return None


def prompt_problem(tokenizer, ids: Sequence[int], labels: Sequence[int], prompt_ids: Sequence[int],
                   answer: str | None = None) -> RowProblem | None:
    """Whether the row starts with exactly the prompt ids inference feeds and supervises from the first id
    after them (catalog rows 4, 11, 16; 20 and 21 for the two mismatches with a cause of their own).

    Given the answer's text, two more things can be told. A row that supervises nothing (row 2, which the row
    checks report) is judged at where its answer starts, so a prompt mismatch still shows. And what lies between
    the prompt and the supervised span, or what the prompt shares with it, is told apart from the answer's own
    start: text that is not part of the answer is a prompt of training's own (row 11), not a tokenization seam
    (row 4); an inference prompt that ends with the answer's start feeds what training teaches the model to
    write (row 11), not a supervised prompt (row 16)."""
    ids = list(ids)
    if answer and answer.strip() and not supervised_positions(labels):
        start = next((k for k in range(len(ids) - 1, -1, -1)
                      if _decode(tokenizer, ids[k:]).strip().startswith(answer.strip())), None)
        if start is None:
            return None
        labels = [IGNORE_INDEX] * start + ids[start:]
    problem = _prompt_problem(tokenizer, ids, labels, list(prompt_ids))
    if problem is None or not (answer and answer.strip()):
        return problem
    sup, n = supervised_positions(labels), len(prompt_ids)
    if problem.check == "answer_start_unsupervised":
        gap = _decode(tokenizer, ids[n:sup[0]]).strip()
        if gap and not answer.strip().startswith(gap):
            return RowProblem("prompt_not_prefix", 11, f"training feeds {gap!r} between the inference prompt and the "
                              "answer; inference does not")
    if problem.check == "prompt_supervised":
        overlap = _decode(tokenizer, ids[sup[0]:n]).strip()
        if overlap and overlap in answer:
            return RowProblem("prompt_not_prefix", 11, f"the inference prompt ends with {overlap!r}, which training "
                              "teaches as the answer's start: the model learns to write it, inference already feeds it")
    return problem


def _prompt_problem(tokenizer, ids: list[int], labels: Sequence[int], prompt: list[int]) -> RowProblem | None:
    sup = supervised_positions(labels)
    n = len(prompt)
    if ids[:n] != prompt:
        finer = _prompt_text_problem(_decode(tokenizer, prompt), _decode(tokenizer, ids[:sup[0]]) if sup else None)
        if finer:
            return finer
        # the same text in other tokens is a tokenization seam; other text is another prompt
        if _decode(tokenizer, ids).startswith(_decode(tokenizer, prompt)):
            return RowProblem("prompt_not_prefix", 4, f"the prompt's ids {prompt[:12]}... are not the row's first ids "
                              f"{ids[:12]}...: the same text tokenized differently across the prompt/answer boundary")
        return RowProblem("prompt_not_prefix", 11, f"the inference prompt's ids are not the training row's prompt: "
                          f"{prompt[:12]}... vs {ids[:12]}...")
    if sup and sup[0] < n and not _decode(tokenizer, ids[sup[0]:n]).strip():
        # what training supervises of the inference prompt is whitespace: the inference prompt ends with a space or
        # newline that the training prompt does not (a strip() in one path, row 21), not a supervised prompt
        return RowProblem("prompt_not_prefix", 21, f"the prompts differ only in whitespace: the inference prompt ends "
                          f"with {_decode(tokenizer, ids[sup[0]:n])!r} more")
    if sup and sup[0] < n:
        return RowProblem("prompt_supervised", 16, f"{n - sup[0]} of the prompt's {n} tokens are supervised "
                          f"(from position {sup[0]})")
    if sup and sup[0] > n:
        return RowProblem("answer_start_unsupervised", 4, f"training supervises from position {sup[0]}, the "
                          f"inference prompt is {n} tokens: the answer's first tokens go unsupervised")
    return None


def row_problems(tokenizer, ids: Sequence[int], labels: Sequence[int], *, prompt_ids: Sequence[int] | None = None,
                 answer: str | None = None, attention_mask: Sequence[int] | None = None) -> list[RowProblem]:
    """Every problem of one row, most basic first; [] for a healthy row.

    A healthy row supervises one span, every supervised label equal to its input id, the span ending in
    EOS; with `answer`, the span (EOS aside) decodes to it; with `prompt_ids`, the row starts with them and
    the span starts right after them; with `attention_mask`, no padded position is supervised."""
    ids, labels = list(ids), [int(x) for x in labels]
    if len(ids) != len(labels):
        return [RowProblem("length_mismatch", 6, f"{len(ids)} input ids but {len(labels)} labels")]
    sup = supervised_positions(labels)
    if not sup:
        return [RowProblem("nothing_supervised", 2, "no label is supervised (every label is -100)")]
    found = []
    if attention_mask is not None:
        padded = [k for k in sup if k < len(attention_mask) and not attention_mask[k]]
        if padded:
            # judged before the answer text: supervised padding would read as "answer mismatch" below
            found.append(RowProblem("padding_supervised", 5, f"{len(padded)} padding positions are supervised "
                                    f"(from position {padded[0]}): mask padding by position, in the labels too"))
            sup = [k for k in sup if k not in set(padded)]
            if not sup:
                return found
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
        if text.find(answer.strip()) > 0:
            # the answer is in the span but text comes before it: the span starts inside the prompt (a tag search
            # that matched the tag in a system prompt), whatever the template adds after the answer
            found.append(RowProblem("prompt_supervised", 16, f"the supervised tokens decode to {text!r}: the prompt "
                                    f"is supervised along with the answer {answer!r}"))
        else:
            found.append(RowProblem("answer_mismatch", 4, f"the supervised tokens decode to {text!r}, not the "
                                    f"answer {answer!r}"))
    return found
