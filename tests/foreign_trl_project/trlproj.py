"""An SFT project built on TRL, not on homework (of this repository it imports only the SFT contract kit).

Prompt/completion data trained with trl's SFTTrainer and SFTConfig: completion-only loss, LoRA r=4 on the
small causal LM whose directory TRLPROJ_MODEL names, and the project's own collator. TRLPROJ_BUG=<name>
seeds one misconfiguration that TRL users report:

    prompt_supervised  completion_only_loss=False: the prompt is trained on too (trl#1507, open-r1#648)
    eos_masked         the collator masks labels by pad id, and pad == EOS (trl#1623, the thread of trl PR #3091)
    chat_template      inference wraps the question in the chat template; training did not (dvgodoy/FineTuningLLMs#5)
    packing_wrapped    packing=True, packing_strategy="wrapped": packed rows attend to each other (trl#1230, #3067)
"""

import copy
import os
from functools import cache

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer, pack_dataset
from trl.data_utils import common_prefix_length

from sft_contract import SFTContract

BUGS = ("prompt_supervised", "eos_masked", "chat_template", "packing_wrapped")
EXAMPLES = [("What is 2 + 3?", "5"), ("What is 12 + 30?", "42"), ("Name the capital of France.", "Paris"),
            ("What is 100 minus 1?", "99"), ("Spell cat backwards.", "tac"), ("What colour is a clear sky?", "blue"),
            ("What is 7 times 6?", "42"), ("What is 9 + 10?", "19")]
MAX_LENGTH = 256  # long enough that packing never cuts one of these rows


@cache
def base_model(location: str):
    """Loaded once per process; every model the contract hands out is a copy."""
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    model.requires_grad_(False)
    return model


def prompt_of(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def contract(bug: str | None = None) -> SFTContract:
    bug = os.environ.get("TRLPROJ_BUG", "") if bug is None else bug
    if bug and bug not in BUGS:
        raise ValueError(f"TRLPROJ_BUG={bug!r}; known: {BUGS}")
    location = os.environ["TRLPROJ_MODEL"]
    tok = AutoTokenizer.from_pretrained(location)
    pad = tok.pad_token_id  # == eos_token_id for SmolLM2-Instruct
    completion_only = bug != "prompt_supervised"
    packing = bug == "packing_wrapped"

    def sft_config(output_dir: str, steps: int) -> SFTConfig:
        # bf16 and gradient checkpointing are SFTConfig's defaults; on CPU neither is wanted
        return SFTConfig(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=4, learning_rate=2e-3,
                         lr_scheduler_type="constant", logging_steps=1, report_to="none", save_strategy="no",
                         use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True, seed=0,
                         completion_only_loss=completion_only, max_length=MAX_LENGTH, packing=packing,
                         packing_strategy="wrapped")

    def tokenize(question: str, answer: str) -> dict:
        """One prompt/completion example as SFTTrainer prepares it (trl 1.x, non-conversational): EOS appended
        to the completion, prompt and prompt+completion tokenized, the completion from where they diverge,
        labels from the completion mask when completion_only_loss. make_trainer checks TRL agrees."""
        prompt, completion = prompt_of(question), f" {answer}{tok.eos_token}"
        prompt_ids, ids = tok(prompt)["input_ids"], tok(prompt + completion)["input_ids"]
        start = common_prefix_length(prompt_ids, ids)
        completion_mask = [int(k >= start) for k in range(len(ids))]
        labels = [t if m or not completion_only else -100 for t, m in zip(ids, completion_mask)]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "completion_mask": completion_mask, "labels": labels}

    def pad_batch(rows: list[dict]) -> dict:
        """The project's collator: right padding, labels padded with -100."""
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([list(r["input_ids"]) + [pad] * (width - len(r["input_ids"])) for r in rows])
        labels = torch.tensor([list(r["labels"]) + [-100] * (width - len(r["labels"])) for r in rows])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
        if bug == "eos_masked":  # "ignore the padding in the loss", by id
            labels[ids == pad] = -100
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def pack(rows: list[dict]) -> list[dict]:
        """What SFTTrainer does to the training rows when packing is on."""
        data = Dataset.from_list([{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in rows])
        return pack_dataset(data, MAX_LENGTH, "wrapped").to_list()

    def collate(rows: list[dict]) -> dict:
        return pad_batch(pack(rows) if packing else rows)

    def make_base_model():
        return copy.deepcopy(base_model(location))

    def make_model():
        torch.manual_seed(0)
        return get_peft_model(make_base_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                            lora_dropout=0.0, task_type="CAUSAL_LM"))

    def make_trainer(model, rows, output_dir, steps):
        # TRL builds the labels from the completion mask itself, by its own config
        data = Dataset.from_list([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]} for r in rows])
        trainer = SFTTrainer(model=model, args=sft_config(output_dir, steps), train_dataset=data,
                             processing_class=tok, data_collator=pad_batch)
        if not packing and trainer.train_dataset["labels"] != [r["labels"] for r in rows]:
            raise RuntimeError("this project's rows and the rows TRL prepared differ: update tokenize() for this "
                               "version of trl")
        return trainer

    def format_prompt(question: str) -> str:
        if bug == "chat_template":
            return tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           tokenize=False)
        return prompt_of(question)

    def generate(model, prompts: list[str], max_new_tokens: int) -> list[str]:
        tok.padding_side = "left"
        batch = tok(prompts, return_tensors="pt", padding=True).to(next(model.parameters()).device)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        return tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    return SFTContract(tokenizer=tok, examples=EXAMPLES, make_model=make_model, format_prompt=format_prompt,
                       tokenize=tokenize, collate=collate, make_trainer=make_trainer, generate=generate,
                       make_base_model=make_base_model, encode=lambda text: tok(text)["input_ids"],
                       load_adapter=lambda base, path: PeftModel.from_pretrained(base, path),
                       name=f"trlproj{f' ({bug})' if bug else ''}")
