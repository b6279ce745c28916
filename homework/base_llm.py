"""BaseLLM: load a causal LM and answer questions with it (the course interface)."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .runtime.device import resolve_placement
from .runtime.model_source import load_pretrained, resolve_model
from .text.answers import named_check, parse_answer
from .text.head_grammar import head_is_wrong, head_trie
from .text.prompt import build_prompt, encode

# "<answer>101 * 3155760000 / 31557600</answer>" + EOS is ~32 tokens; a tight budget keeps evaluation fast.
DEFAULT_MAX_NEW_TOKENS = 40  # the longest named answer in the data is 37 tokens, + EOS
HEAD_BEAMS = 4  # beams for the re-decoding of a wrong head: the kind word may have been the wrong step


class _HeadGrammar(LogitsProcessor):
    """Masks, row by row, every token that would take a generation out of the head grammar (head_grammar.py),
    from its first token until its head is complete."""

    def __init__(self, trie, width: int):
        self.trie, self.width = trie, width

    def __call__(self, input_ids, scores):
        for row, generated in enumerate(input_ids[:, self.width:].tolist()):
            allowed = self.trie.allowed(generated)
            if allowed is not None:
                keep = scores[row, allowed].clone()
                scores[row] = float("-inf")
                scores[row, allowed] = keep
        return scores


class BaseLLM:
    def __init__(self, checkpoint: str | None = None, device: str | None = None, precision: str | None = None,
                 training: bool = False):
        # training=True: the weights the recipe trains on (bf16 on a CPU that computes it natively and faster);
        # otherwise the precision generation is fastest in (resolve_placement)
        self.placement = resolve_placement(device, precision, training=training)
        self.model_spec = resolve_model(checkpoint)
        self.model, self.tokenizer = load_pretrained(self.model_spec, self.placement.dtype, self.placement.device)
        self.model.eval()
        self.device = self.placement.device

    @classmethod
    def from_components(cls, model, tokenizer, placement=None, model_spec=None) -> BaseLLM:
        """Wrap an already-loaded model and tokenizer (fixtures, tests, a just-trained model)."""
        llm = cls.__new__(cls)
        llm.model, llm.tokenizer = model, tokenizer
        llm.placement = placement or resolve_placement(next(model.parameters()).device.type)
        llm.device = llm.placement.device
        llm.model_spec = model_spec
        return llm

    def format_prompt(self, question: str) -> str:
        return build_prompt(question)

    def parse_answer(self, answer: str) -> float:
        return parse_answer(answer)

    def generate(self, prompt: str, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> str:
        return self.batched_generate([prompt], max_new_tokens=max_new_tokens)[0]

    def batched_generate(
        self,
        prompts: list[str],
        num_return_sequences: int | None = None,
        temperature: float = 0.0,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        micro_batch_size: int = 128,
    ) -> list[str] | list[list[str]]:
        """Generate continuations of `prompts` (already formatted).

        Left-pads each micro-batch (right padding would put pad tokens between prompt and
        continuation, catalog row 12), sorts by length to pad less, and returns results in input order.
        Greedy unless temperature > 0. With num_return_sequences, returns one list per prompt. Under the default
        named check ("constrain"), a greedy answer whose head is never right is decoded again inside the head
        grammar, with HEAD_BEAMS beams.
        """
        if not prompts:
            return []
        n_ret = num_return_sequences or 1
        encoded = [encode(self.tokenizer, p) for p in prompts]
        sample = temperature > 0
        gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=sample, num_return_sequences=n_ret)
        if sample:
            gen_kwargs["temperature"] = temperature
        else:  # avoid warnings about sampling settings inherited from generation_config
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        # inference_mode as a block, not a decorator: mutmut leaves decorated functions unmutated
        with torch.inference_mode():
            was_training = self.model.training
            self.model.eval()
            try:
                outputs = self._generate_all(encoded, micro_batch_size, gen_kwargs)
                if not sample and n_ret == 1 and named_check() == "constrain":
                    # A head that is never right is decoded again inside the head grammar (head_grammar.py).
                    wrong = [i for i, texts in enumerate(outputs) if head_is_wrong(texts[0])]
                    if wrong:
                        redone = self._generate_all([encoded[i] for i in wrong], micro_batch_size,
                                                    dict(gen_kwargs, num_beams=HEAD_BEAMS), constrain=True)
                        for i, texts in zip(wrong, redone):
                            outputs[i] = texts
            finally:
                self.model.train(was_training)
        if num_return_sequences is None:
            return [o[0] for o in outputs]
        return outputs

    def _generate_all(self, encoded: list[list[int]], micro_batch_size: int, gen_kwargs: dict,
                      constrain: bool = False) -> list[list[str]]:
        """Continuations of the encoded prompts, one list per prompt, in input order: sorted by length to pad
        less, left-padded in micro-batches."""
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        outputs: list[list[str]] = [[] for _ in encoded]
        n_ret = gen_kwargs["num_return_sequences"]
        for start in range(0, len(order), micro_batch_size):
            idx = order[start:start + micro_batch_size]
            texts = self._generate_batch([encoded[i] for i in idx], gen_kwargs, constrain)
            for row, i in enumerate(idx):
                outputs[i] = texts[row * n_ret:(row + 1) * n_ret]
        return outputs

    def _generate_batch(self, seqs: list[list[int]], gen_kwargs: dict, constrain: bool) -> list[str]:
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(seq) for seq in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        extra = {"logits_processor": LogitsProcessorList([_HeadGrammar(head_trie(tok), width)])} if constrain else {}
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  eos_token_id=tok.eos_token_id, pad_token_id=pad_id, **gen_kwargs, **extra)
        return tok.batch_decode(out[:, width:], skip_special_tokens=True)

    def answer(self, *questions: str) -> list[float]:
        prompts = [self.format_prompt(q) for q in questions]
        return [self.parse_answer(g) for g in self.batched_generate(prompts)]


def test_model():
    """Smoke-check the base model on a few validation questions (course entry point)."""
    from .data import Dataset, benchmark

    llm = BaseLLM()
    result = benchmark(llm, Dataset("valid"), 20)
    from .runtime import report

    report.result(f"accuracy={result.accuracy:.3f} answer_rate={result.answer_rate:.3f}")


if __name__ == "__main__":
    test_model()
