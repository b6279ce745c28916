"""BaseLLM's own wiring: what it loads, and how generate, answer and the course's test_model use the batched path
(the generation itself is tested on the real model in tests/test_sft.py and the contract battery)."""

import torch

from homework import base_llm
from homework.base_llm import DEFAULT_MAX_NEW_TOKENS, BaseLLM
from homework.runtime.device import Placement
from homework.text.prompt import build_prompt


class _Scripted(BaseLLM):
    """batched_generate replaced by a script: each prompt's continuation names the prompt's length."""

    def __init__(self):
        self.calls = []

    def batched_generate(self, prompts, **kwargs):
        self.calls.append((prompts, kwargs))
        return [f"<answer>{len(p)}</answer>" for p in prompts]


def test_generate_is_one_prompt_of_the_batched_path():
    llm = _Scripted()
    assert llm.generate("abc") == "<answer>3</answer>"
    assert llm.generate("abcd", max_new_tokens=7) == "<answer>4</answer>"
    assert llm.calls == [(["abc"], {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS}), (["abcd"], {"max_new_tokens": 7})]


def test_answer_formats_each_question_and_parses_each_continuation_in_order():
    llm = _Scripted()
    assert llm.answer("2 kg in g?", "a longer question here?") == [float(len(build_prompt("2 kg in g?"))),
                                                                  float(len(build_prompt("a longer question here?")))]
    assert llm.calls[0][0] == [build_prompt("2 kg in g?"), build_prompt("a longer question here?")]


def test_loading_reads_the_named_checkpoint_on_the_named_device_in_its_dtype(monkeypatch):
    monkeypatch.setenv("HOMEWORK_DEVICE", "cuda")  # the argument wins over the environment
    model = torch.nn.Linear(2, 2).train()
    loads = []
    monkeypatch.setattr(base_llm, "resolve_model", lambda spec: f"resolved {spec}")
    monkeypatch.setattr(base_llm, "load_pretrained", lambda spec, dtype, device: loads.append((spec, dtype, device))
                        or (model, "tokenizer"))
    llm = BaseLLM("/my/model", device="cpu")
    assert loads == [("resolved /my/model", torch.float32, torch.device("cpu"))]
    assert llm.model_spec == "resolved /my/model" and llm.tokenizer == "tokenizer"
    assert llm.model is model and not model.training and llm.device == torch.device("cpu")


def test_components_take_their_placement_from_the_model_unless_given(monkeypatch):
    monkeypatch.setenv("HOMEWORK_DEVICE", "cuda")  # the model's own device wins over the environment
    model = torch.nn.Linear(2, 2)
    llm = BaseLLM.from_components(model, "tokenizer", model_spec="spec")
    assert llm.placement == Placement(torch.device("cpu"), torch.float32) and llm.device == torch.device("cpu")
    assert (llm.model, llm.tokenizer, llm.model_spec) == (model, "tokenizer", "spec")
    given = Placement(torch.device("cuda"), torch.bfloat16)  # named, never touched
    assert BaseLLM.from_components(model, "tokenizer", placement=given).device == torch.device("cuda")


def test_the_course_smoke_check_answers_twenty_validation_questions(monkeypatch, capsys):
    from homework.data import Dataset

    asked = []

    class Oracle:
        def answer(self, *questions):
            asked.extend(questions)
            answers = dict(Dataset("valid").data)
            return [answers[q] if i % 2 else float("nan") for i, q in enumerate(questions)]

    monkeypatch.setattr(base_llm, "BaseLLM", Oracle)
    base_llm.test_model()
    assert asked == [q for q, _ in Dataset("valid").data[:20]]
    assert capsys.readouterr().out == "accuracy=0.500 answer_rate=0.500\n"


def _scripted_passes(monkeypatch, mode, greedy):
    """A BaseLLM whose passes are scripted: the free pass returns `greedy`, a constrained pass "fixed <prompt>"."""
    monkeypatch.setenv("HOMEWORK_NAMED_CHECK", mode)
    llm = BaseLLM.from_components(torch.nn.Linear(2, 2), _CharTokenizer())
    calls = []

    def passes(encoded, micro_batch_size, gen_kwargs, constrain=False):
        assert not llm.model.training  # both passes decode in eval mode
        calls.append((encoded, micro_batch_size, gen_kwargs, constrain))
        if constrain:
            return [[f"fixed {''.join(map(chr, e))}"] for e in encoded]
        return [[greedy[''.join(map(chr, e))]] * gen_kwargs["num_return_sequences"] for e in encoded]

    monkeypatch.setattr(llm, "_generate_all", passes)
    return llm, calls


GREEDY = {"a": "mass: kilobyte to gram: <answer>1 * 1000 / 1</answer>",
          "b": "mass: kilogram to gram: <answer>1 * 1000 / 1</answer>",
          "c": "volume: gallon to gallon: <answer>5 * 3.785 / 3.785</answer>"}


def test_constrain_decodes_again_only_the_wrong_heads_with_beams_and_keeps_the_order(monkeypatch):
    llm, calls = _scripted_passes(monkeypatch, "constrain", GREEDY)
    assert llm.batched_generate(["a", "b", "c"], micro_batch_size=7) == ["fixed a", GREEDY["b"], "fixed c"]
    (free, _, free_kwargs, free_held), (again, size, kwargs, held) = calls
    assert free == [[ord("a")], [ord("b")], [ord("c")]] and not free_held and "num_beams" not in free_kwargs
    assert again == [[ord("a")], [ord("c")]] and size == 7 and held
    assert kwargs == dict(free_kwargs, num_beams=base_llm.HEAD_BEAMS) and base_llm.HEAD_BEAMS > 1
    assert llm.model.training  # restored


def test_no_second_pass_without_constrain_a_wrong_head_sampling_or_several_sequences(monkeypatch):
    llm, calls = _scripted_passes(monkeypatch, "repair", GREEDY)
    assert llm.batched_generate(["a", "c"]) == [GREEDY["a"], GREEDY["c"]] and len(calls) == 1
    llm, calls = _scripted_passes(monkeypatch, "constrain", GREEDY)
    assert llm.batched_generate(["b"]) == [GREEDY["b"]] and len(calls) == 1
    assert llm.batched_generate(["a"], temperature=0.7) == [GREEDY["a"]] and len(calls) == 2
    assert llm.batched_generate(["a"], num_return_sequences=2) == [[GREEDY["a"]] * 2] and len(calls) == 3


def test_the_head_grammar_holds_a_random_model_to_heads_that_can_be_right(hw_tokenizer):
    from homework.text.head_grammar import valid_heads
    from homework.text.prompt import encode
    from tests.conftest import random_llama

    llm = BaseLLM.from_components(random_llama(vocab_size=len(hw_tokenizer), hidden=16), hw_tokenizer)
    encoded = [encode(hw_tokenizer, build_prompt(q)) for q in ("2 kg in g?", "How many feet are in 3 m?", "L->gal 5")]
    kwargs = dict(max_new_tokens=24, do_sample=False, num_return_sequences=1, temperature=None, top_p=None, top_k=None)
    heads = valid_heads()
    free = [texts[0] for texts in llm._generate_all(encoded, 2, kwargs)]
    held = [texts[0] for texts in llm._generate_all(encoded, 2, dict(kwargs, num_beams=2), constrain=True)]
    assert not any(text.startswith(heads) for text in free)
    assert all(text.startswith(heads) for text in held), held


class _CharTokenizer:
    """One id per character; id 0 pads, id 1 ends a sequence."""

    pad_token_id, eos_token_id = 0, 1

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def batch_decode(self, rows, skip_special_tokens=False):
        special = (0, 1) if skip_special_tokens else ()
        return ["".join(chr(t) for t in row.tolist() if t not in special) for row in rows]


class _EchoModel(torch.nn.Module):
    """generate() continues each row with what it was given: the tokens its attention mask marks as real, the pad
    and end ids it was told, and the sequence's number; the end id, then padding, closes each continuation."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def generate(self, input_ids, attention_mask, eos_token_id=None, pad_token_id=None, num_return_sequences=1,
                 **kwargs):
        assert input_ids.dtype == attention_mask.dtype == torch.long  # the types transformers documents
        assert torch.is_inference_mode_enabled()  # no autograd graph kept while generating
        self.calls.append(input_ids.shape)
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            real = "".join(chr(t) for t, m in zip(ids, mask) if m == 1)
            for k in range(num_return_sequences):
                rows.append(ids + [ord(c) for c in f"<{real}|{pad_token_id}|{eos_token_id}|{k}>"] + [1])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [0] * (width - len(r)) for r in rows])


def test_micro_batches_are_left_padded_by_length_and_each_prompt_gets_its_own_continuation():
    model = _EchoModel()
    llm = BaseLLM.from_components(model, _CharTokenizer())
    prompts = ["a long prompt", "b", "c medium", "d", "e long prompt"]
    out = llm.batched_generate(prompts, micro_batch_size=2)
    assert out == [f"<{p}|0|1|0>" for p in prompts]  # real tokens exactly, pad and end ids passed, specials dropped
    assert model.calls == [(2, 1), (2, 13), (1, 13)]  # sorted by length (unsorted: 13, 8, 13 wide)
    assert llm.batched_generate(prompts[:2], num_return_sequences=2, temperature=0.5) == [
        [f"<{p}|0|1|{k}>" for k in range(2)] for p in prompts[:2]]


def test_a_tokenizer_without_a_pad_token_pads_with_its_end_token():
    class NoPad(_CharTokenizer):
        pad_token_id = None

    llm = BaseLLM.from_components(_EchoModel(), NoPad())
    assert llm.batched_generate(["ab", "c"]) == ["<ab|1|1|0>", "<c|1|1|0>"]
