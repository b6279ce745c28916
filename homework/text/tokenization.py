"""Turning (question, formatted answer) into input ids and labels that supervise only the answer."""

from __future__ import annotations

from dataclasses import dataclass

from sft_contract.rows import IGNORE_INDEX  # torch's cross-entropy ignore_index, defined once in the kit

from ..runtime.errors import DataError
from .prompt import build_prompt, encode

DEFAULT_MAX_LENGTH = 128  # the course's fixed length; every generated row fits in ~45


@dataclass
class TokenizedRow:
    input_ids: list[int]
    attention_mask: list[int]
    labels: list[int]

    def as_dict(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}


class AnswerDoesNotFit(DataError):
    def __init__(self, message: str, prompt_tokens: int, answer_tokens: int, max_length: int):
        super().__init__(message)
        self.prompt_tokens, self.answer_tokens, self.max_length = prompt_tokens, answer_tokens, max_length


def tokenize_row(tokenizer, question: str, answer: str, max_length: int | None = DEFAULT_MAX_LENGTH,
                 pad: bool = True) -> TokenizedRow:
    """Prompt ids (masked with -100) + answer ids + EOS (supervised), optionally right-padded.

    The prompt and the answer are encoded separately and concatenated, so the prompt's ids are by
    construction a prefix of the row (catalog row 4) and identical to what inference feeds the model.
    A row whose answer would be cut by max_length is refused, never truncated into an all -100 row
    (catalog rows 2-3).
    """
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token; the model could never learn to stop")
    prompt = encode(tokenizer, build_prompt(question))
    target = encode(tokenizer, answer) + [tokenizer.eos_token_id]
    total = len(prompt) + len(target)
    if max_length is not None and total > max_length:
        raise AnswerDoesNotFit(
            f"question is {len(prompt)} tokens and the answer + EOS {len(target)}: {total} > max_length={max_length}, "
            "so the answer would be cut off. Shorten the question or raise max_length.",
            len(prompt), len(target), max_length,
        )
    ids = prompt + target
    labels = [IGNORE_INDEX] * len(prompt) + target
    mask = [1] * total
    if pad and max_length is not None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        extra = max_length - total
        ids += [pad_id] * extra
        labels += [IGNORE_INDEX] * extra  # by position: pad_id may equal EOS (catalog row 5)
        mask += [0] * extra
    return TokenizedRow(ids, mask, labels)


def tokenize(tokenizer, question: str, answer: str, max_length: int | None = DEFAULT_MAX_LENGTH,
             pad: bool = True) -> dict[str, list[int]]:
    """input_ids/attention_mask/labels for one example; only `answer` + EOS are supervised."""
    return tokenize_row(tokenizer, question, answer, max_length=max_length, pad=pad).as_dict()


class TokenizedDataset:
    """Tokenizes every row up front, so bad rows are refused before training starts (format_fn: the
    course's format_example unless given).

    pad=True (default) pads every row to max_length, which `default_data_collator` needs (the seed
    recipe); pad=False leaves rows ragged for DynamicPaddingCollator (what train_model uses).
    """

    def __init__(self, tokenizer, data, format_fn=None, max_length: int | None = DEFAULT_MAX_LENGTH,
                 pad: bool = True):
        from .formats import format_example

        self.tokenizer = tokenizer
        self.data = data
        self.format_fn = format_fn = format_fn or format_example
        self.source = str(getattr(data, "path", "") or "") or None
        self.max_length = max_length
        self.questions: list[str] = []
        self.answers: list[str] = []
        self.rows: list[dict] = []
        too_long = []
        for i in range(len(data)):
            formatted = format_fn(*data[i])
            try:
                row = tokenize(tokenizer, formatted["question"], formatted["answer"], max_length=max_length, pad=pad)
            except AnswerDoesNotFit as exc:
                too_long.append((i, exc))
                continue
            self.questions.append(formatted["question"])
            self.answers.append(formatted["answer"])
            self.rows.append(row)
        if too_long:
            where = self.source or "the dataset"
            listed = "\n".join(
                f"  {where}, row {i}: prompt {e.prompt_tokens} + answer {e.answer_tokens} tokens > max_length={e.max_length}"
                for i, e in too_long[:8]
            )
            more = f"\n  (+{len(too_long) - 8} more rows)" if len(too_long) > 8 else ""
            raise DataError(
                f"{len(too_long)} row(s) cannot fit their answer in max_length={max_length}; training on them would "
                f"supervise nothing (failure catalog row 3):\n{listed}{more}\n"
                "Fix: shorten or remove those questions, or raise max_length."
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> dict[str, list[int]]:
        return self.rows[idx]
