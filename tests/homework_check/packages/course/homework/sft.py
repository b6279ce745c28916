from pathlib import Path

import torch

from .base_llm import BaseLLM, make_prompt
from .data import Dataset, benchmark

MAX_LENGTH = 96


def format_example(prompt: str, answer: float) -> dict:
    return {"question": prompt, "answer": f"<answer>{float(answer):.6g}</answer>"}


def tokenize(tokenizer, question: str, answer: str) -> dict:
    prompt = tokenizer(make_prompt(tokenizer, question))["input_ids"]
    target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = prompt + target
    labels = [-100] * len(prompt) + target
    pad = MAX_LENGTH - len(ids)
    return {"input_ids": ids + [tokenizer.pad_token_id] * pad, "attention_mask": [1] * len(ids) + [0] * pad,
            "labels": labels + [-100] * pad}


class TokenizedDataset:
    def __init__(self, tokenizer, data, format_fn):
        self.tokenizer, self.data, self.format_fn = tokenizer, data, format_fn

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        return tokenize(self.tokenizer, **self.format_fn(*self.data[idx]))


def train_model(output_dir: str, **kwargs):
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    llm = BaseLLM()
    model = get_peft_model(llm.model, LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", bias="none",
                                                 task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=4, num_train_epochs=1,
                             learning_rate=1e-3, report_to="none", save_strategy="no")
    trainer = Trainer(model=model, args=args,
                      train_dataset=TokenizedDataset(llm.tokenizer, Dataset("train"), format_example))
    trainer.train()
    trainer.save_model(output_dir)
    test_model(output_dir)


def load() -> BaseLLM:
    from peft import PeftModel

    llm = BaseLLM()
    llm.model = PeftModel.from_pretrained(llm.model, Path(__file__).parent / "sft_model").to(llm.device)
    llm.model.eval()
    return llm


def test_model(ckpt_path: str):
    llm = load()
    print("accuracy", benchmark(llm, Dataset("valid"), 100))


if __name__ == "__main__":
    from fire import Fire

    Fire({"train": train_model, "test": test_model, "load": load})
