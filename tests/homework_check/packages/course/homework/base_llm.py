import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

checkpoint = "HuggingFaceTB/SmolLM2-360M-Instruct"
device = "cuda" if torch.cuda.is_available() else "cpu"


def make_prompt(tokenizer, question: str) -> str:
    return f"{question}\n"


class BaseLLM:
    def __init__(self, checkpoint=checkpoint):
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint).to(device)
        self.device = device

    def format_prompt(self, question: str) -> str:
        return make_prompt(self.tokenizer, question)

    def parse_answer(self, answer: str) -> float:
        try:
            return float(answer.split("<answer>")[1].split("</answer>")[0])
        except (IndexError, ValueError):
            return float("nan")

    def generate(self, prompt: str) -> str:
        return self.batched_generate([prompt])[0]

    def batched_generate(self, prompts, num_return_sequences=None, temperature=0):
        self.tokenizer.padding_side = "left"
        inputs = self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
        n = num_return_sequences or 1
        out = self.model.generate(**inputs, max_new_tokens=40, do_sample=temperature > 0,
                                  temperature=temperature or None, num_return_sequences=n,
                                  eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        if num_return_sequences is None:
            return texts
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    def answer(self, *questions) -> list[float]:
        prompts = [self.format_prompt(q) for q in questions]
        return [self.parse_answer(g) for g in self.batched_generate(prompts)]
