"""The one prompt builder: training (sft.tokenize) and inference (BaseLLM) both call it.

`Question: ` + the question + a newline, no chat template: the chat template's default system prompt would
add ~30 tokens per row (more than the question itself) and the model learns the format from SFT.
The short lead matters: SmolLM2 adds no BOS token, and the first token of a sequence is where attention
parks (an attention sink), so a question that opened with its quantity ("40 gram, in mg?") had that
quantity's first digit copied wrong ("10 * ..."): measured, see README.
Encoding is one function too, so the ids seen in training and at inference are the same ids.
"""

from __future__ import annotations

PROMPT_LEAD = "Question: "


def build_prompt(question: str) -> str:
    # Normalising whitespace keeps the prompt/answer token boundary clean: the prompt always ends
    # in exactly one "\n", which the tokenizer never merges with the "<" of "<answer>".
    return PROMPT_LEAD + " ".join(str(question).split()) + "\n"


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added (SmolLM2 adds no BOS; others might)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer, question: str) -> list[int]:
    return encode(tokenizer, build_prompt(question))
