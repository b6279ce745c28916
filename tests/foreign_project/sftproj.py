"""A small SFT project that is not homework (of this repository it imports only the SFT contract kit): a
tiny random Llama, a character tokenizer, its own prompt format and a stock transformers Trainer.
SFTPROJ_BUG=<name> seeds one bug."""

import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Trainer, TrainingArguments

from sft_contract import SFTContract

BUG = os.environ.get("SFTPROJ_BUG", "")
CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ?:.,+*/-=\n"
EXAMPLES = [(f"what is {a} plus {b}?", str(a + b)) for a in (1, 2, 40, 300) for b in (3, 6, 25, 1000)]


def make_tokenizer():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")  # pad == eos, as in SmolLM2


def contract():
    tok = make_tokenizer()
    pad = tok.pad_token_id

    def enc(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    def make_base_model():
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                             bos_token_id=1, eos_token_id=2, pad_token_id=2, initializer_range=0.2)
        return LlamaForCausalLM(config)

    def make_model():
        base = make_base_model()
        torch.manual_seed(1)
        return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                               lora_dropout=0.0, task_type="CAUSAL_LM"))

    def train_prompt(q):
        return f"Q: {q}\nA:"

    def format_prompt(q):  # what inference feeds
        return f"Question: {q}\nA:" if BUG == "prompt_mismatch" else train_prompt(q)

    def tokenize(q, a):
        prompt, answer = enc(train_prompt(q)), enc(" " + a) + [tok.eos_token_id]
        ids = prompt + answer
        labels = [-100] * len(prompt) + answer
        if BUG == "eos_masked":  # "mask the padding" by id, when pad == eos
            labels = [-100 if t == pad else t for t in labels]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in rows])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
        labels = torch.tensor([list(r["labels"]) + [-100] * (width - len(r["labels"])) for r in rows])
        if BUG == "collator_rewrites_labels":  # what DataCollatorForLanguageModeling does
            labels = ids.clone()
            labels[mask == 0] = -100
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def make_trainer(model, dataset, output_dir, steps):
        args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=4,
                                 learning_rate=1e-2, logging_steps=1, report_to="none", use_cpu=True,
                                 save_strategy="no", remove_unused_columns=False, disable_tqdm=True)
        return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate)

    def generate(model, prompts, max_new_tokens):
        encoded = [enc(p) for p in prompts]
        width = max(len(e) for e in encoded)
        right = BUG == "right_padding"
        ids = torch.tensor([(e + [pad] * (width - len(e))) if right else ([pad] * (width - len(e)) + e) for e in encoded])
        mask = torch.tensor([([1] * len(e) + [0] * (width - len(e))) if right else ([0] * (width - len(e)) + [1] * len(e))
                             for e in encoded])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tok.eos_token_id, pad_token_id=pad)
        return tok.batch_decode(out[:, width:], skip_special_tokens=True)

    return SFTContract(tokenizer=tok, examples=EXAMPLES, make_model=make_model, format_prompt=format_prompt,
                       tokenize=tokenize, collate=collate, make_trainer=make_trainer, generate=generate,
                       make_base_model=make_base_model,
                       load_adapter=lambda base, path: PeftModel.from_pretrained(base, path), name="sftproj")
