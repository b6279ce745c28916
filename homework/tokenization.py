"""Turning (question, formatted answer) into input ids and labels that supervise only the answer."""

from __future__ import annotations

from dataclasses import dataclass

from .collate import IGNORE_INDEX
from .errors import DataError
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
