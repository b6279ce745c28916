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
