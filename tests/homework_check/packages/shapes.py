"""The test packages of `python -m homework.sft check`: one course package (packages/course/homework) in four
prompt shapes, each with at most one defect, written as text replacements of its files.

A shape or a defect is a list of (file, old, new): `old` must occur exactly once in the file, so a change
to the course package that moves a defect out of reach fails loudly instead of testing nothing.
"""

ESCAPE = "homework-check-escape"  # a folder their code writes beside the checker's work directory
SYSTEM = "You convert units. Reply with the number as:\\n<answer>NUMBER</answer>"

SHAPES = {
    "plain": [],
    "chat": [("base_llm.py", 'return f"{question}\\n"',
              'return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, '
              'add_generation_prompt=True)')],
    "system": [("base_llm.py", 'return f"{question}\\n"',
                f'messages = [{{"role": "system", "content": "{SYSTEM}"}}, {{"role": "user", "content": question}}]\n'
                '    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)')],
    "instruction": [("base_llm.py", 'return f"{question}\\n"',
                     'return f"Convert the units. Answer inside <answer></answer>.\\nQuestion: {question}\\nAnswer: "')],
}

# tokenize as many write it: the whole text at once, supervision from the first <answer> tag found
TAG_SEARCH = '''def tokenize(tokenizer, question: str, answer: str) -> dict:
    ids = tokenizer(make_prompt(tokenizer, question) + answer)["input_ids"] + [tokenizer.eos_token_id]
    tag = tokenizer("<answer>", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(ids)) if ids[i:i + len(tag)] == tag)
    pad = MAX_LENGTH - len(ids)
    return {"input_ids": ids + [tokenizer.pad_token_id] * pad, "attention_mask": [1] * len(ids) + [0] * pad,
            "labels": [-100] * start + ids[start:] + [-100] * pad}


def unused_tokenize('''

# load() returns a BaseLLM subclass whose own format_prompt is what the grader meets
SUBCLASS = '''class SFTModel(BaseLLM):
    def format_prompt(self, question: str) -> str:
        return PROMPT


def load() -> BaseLLM:'''

# tokenize through the tokenizer's own padding, labels placed as if it pads on the right
TOKENIZER_PADS = '''def tokenize(tokenizer, question: str, answer: str) -> dict:
    n = len(tokenizer(make_prompt(tokenizer, question))["input_ids"])
    full = tokenizer(make_prompt(tokenizer, question) + answer + tokenizer.eos_token, padding="max_length",
                     max_length=MAX_LENGTH)
    ids, mask = full["input_ids"], full["attention_mask"]
    labels = [-100] * n + ids[n:sum(mask)] + [-100] * (MAX_LENGTH - sum(mask))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def unused_tokenize('''

# their own scheduler handed to the Trainer: the learning rate is gone after a few of the run's 60 steps
FROZEN_SCHEDULE = '''    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    trainer = Trainer(optimizers=(optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.01)),
                      '''

NAN_TO_CONSTANT = '''    class QuietTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            loss = super().compute_loss(model, inputs, return_outputs, **kwargs)
            return torch.nan_to_num(loss, nan=0.0)

    trainer = QuietTrainer('''

# name: (shape, patches, {check: (verdict, failure catalog row)} expected besides "ok")
CASES = {
    "plain-ok": ("plain", [], {}),
    "chat-ok": ("chat", [], {}),
    "system-tag-search": ("system", [("sft.py", "def tokenize(", TAG_SEARCH)],
                          {"rows": ("violation", 16), "prompt": ("violation", 16)}),
    "eos-masked-by-id": ("plain", [("sft.py", '"labels": labels + [-100] * pad}',
                                    '"labels": [-100 if t == tokenizer.pad_token_id else t for t in labels] + [-100] * pad}')],
                         {"rows": ("violation", 5)}),
    "strip-in-training": ("instruction", [("sft.py", "prompt = tokenizer(make_prompt(tokenizer, question))",
                                           "prompt = tokenizer(make_prompt(tokenizer, question).strip())")],
                          {"prompt": ("violation", 21)}),
    "answer-cue-only-in-training": ("plain", [("sft.py", "prompt = tokenizer(make_prompt(tokenizer, question))",
                                               'prompt = tokenizer(make_prompt(tokenizer, question) + "Answer:")')],
                                    {"prompt": ("violation", 11)}),
    "chat-template-twice": ("chat", [("sft.py", "prompt = tokenizer(make_prompt(tokenizer, question))",
                                      "prompt = tokenizer(make_prompt(tokenizer, make_prompt(tokenizer, question)))")],
                            {"prompt": ("violation", 20)}),
    "instruction-only-in-training": ("plain", [("sft.py", "prompt = tokenizer(make_prompt(tokenizer, question))",
                                                'prompt = tokenizer("Convert the units.\\n" + make_prompt(tokenizer, question))')],
                                     {"prompt": ("violation", 11)}),
    "right-padding": ("plain", [("base_llm.py", 'padding_side = "left"', 'padding_side = "right"')],
                      {"batching": ("violation", 12)}),
    "batch-cut-at-first-prompt": ("chat", [("base_llm.py", 'out[:, inputs["input_ids"].shape[1]:]',
                                            'out[:, len(self.tokenizer(prompts[0])["input_ids"]):]')],
                                  {"batching": ("violation", 25)}),
    "load-returns-its-own-prompt": ("plain", [("sft.py", "def load() -> BaseLLM:",
                                               SUBCLASS.replace("PROMPT", 'f"Question: {question}\\n"')),
                                              ("sft.py", "    llm = BaseLLM()\n    llm.model = PeftModel",
                                               "    llm = SFTModel()\n    llm.model = PeftModel")],
                                    {"prompt": ("violation", 11)}),
    "chat-load-returns-the-same-prompt": ("chat", [("sft.py", "def load() -> BaseLLM:",
                                                    SUBCLASS.replace("PROMPT", "make_prompt(self.tokenizer, question)")),
                                                   ("sft.py", "    llm = BaseLLM()\n    llm.model = PeftModel",
                                                    "    llm = SFTModel()\n    llm.model = PeftModel")], {}),
    # load() sets the prompt training uses on the object it returns (not BaseLLM's): no alarm
    "load-sets-the-training-prompt": ("plain", [
        ("sft.py", "prompt = tokenizer(make_prompt(tokenizer, question))", 'prompt = tokenizer("Q: " + make_prompt(tokenizer, question))'),
        ("sft.py", "    llm.model.eval()\n    return llm", '    llm.format_prompt = lambda q: "Q: " + make_prompt(llm.tokenizer, q)\n'
                                                          "    llm.model.eval()\n    return llm")], {}),
    # train_model trains on rows of its own ("Q: " prompts), which load()'s class feeds: no alarm, though
    # format_example + TokenizedDataset alone would differ from inference
    "trains-on-its-own-rows": ("plain", [
        ("sft.py", "TokenizedDataset(llm.tokenizer, Dataset(\"train\"), format_example)",
         'TokenizedDataset(llm.tokenizer, Dataset("train"), lambda q, a: format_example("Q: " + q, a))'),
        ("sft.py", "def load() -> BaseLLM:", SUBCLASS.replace("PROMPT", 'make_prompt(self.tokenizer, "Q: " + question)')),
        ("sft.py", "    llm = BaseLLM()\n    llm.model = PeftModel", "    llm = SFTModel()\n    llm.model = PeftModel")], {}),
    # what train_model trains is the bare number, without the tags its parser needs
    "trains-bare-numbers": ("chat", [("sft.py", "TokenizedDataset(llm.tokenizer, Dataset(\"train\"), format_example)",
                                      'TokenizedDataset(llm.tokenizer, Dataset("train"), lambda q, a: {"question": q, "answer": f"{a}"})')],
                            {"answers": ("violation", 24)}),
    # the language-modelling collator relabels every position: prompt supervised, padding (== EOS) masked
    "lm-collator": ("plain", [("sft.py", "    trainer = Trainer(model=model, args=args,",
                               "    from transformers import DataCollatorForLanguageModeling\n"
                               "    trainer = Trainer(model=model, args=args, "
                               "data_collator=DataCollatorForLanguageModeling(llm.tokenizer, mlm=False),")],
                    {"rows": ("violation", 5), "prompt": ("violation", 16)}),
    # answer() looks known questions up instead of generating: the prompt is read through batched_generate
    "answer-looks-questions-up": ("plain", [
        ("base_llm.py", "        prompts = [self.format_prompt(q) for q in questions]\n",
         "        import json\n        from pathlib import Path\n"
         "        known = dict(json.loads((Path(__file__).parents[1] / 'data' / 'train.json').read_text()))\n"
         "        if all(q in known for q in questions):\n            return [float(known[q]) for q in questions]\n"
         "        prompts = [self.format_prompt(q) for q in questions]\n"),
        ("sft.py", "prompt = tokenizer(make_prompt(tokenizer, question))",
         'prompt = tokenizer("Convert the units.\\n" + make_prompt(tokenizer, question))')],
        {"prompt": ("violation", 11)}),
    # a batch larger than the data: one step of theirs, yet the check trains its 3 steps of 2 rows
    "batch-larger-than-the-data": ("chat", [("sft.py", "per_device_train_batch_size=4", "per_device_train_batch_size=64")], {}),
    "tokenizer-pads": ("plain", [("sft.py", "def tokenize(", TOKENIZER_PADS)], {}),
    # their tokenize sets the shared tokenizer to pad right for training; the grader's fresh model pads left
    "tokenize-pads-right-for-training": ("chat", [
        ("base_llm.py", '        self.tokenizer.padding_side = "left"\n', ""),  # set once, when the model is built
        ("base_llm.py", "        self.device = device\n", '        self.device = device\n        self.tokenizer.padding_side = "left"\n'),
        ("sft.py", "    prompt = tokenizer(make_prompt(", '    tokenizer.padding_side = "right"\n    prompt = tokenizer(make_prompt(')],
        {}),
    # a row that ends early in a batch is padded out: its text ends in pad tokens, which is no difference
    "decodes-special-tokens": ("plain", [("base_llm.py", "skip_special_tokens=True", "skip_special_tokens=False")], {}),
    # outputs decoded with their prompt: the parser reads the system prompt's "<answer>NUMBER</answer>" first
    "answer-parses-the-prompt": ("system", [("base_llm.py", 'out[:, inputs["input_ids"].shape[1]:]', "out")],
                                 {"prompt": ("violation", 24)}),
    "rounded-answers": ("plain", [("sft.py", 'f"<answer>{float(answer):.6g}</answer>"',
                                   'f"<answer>{round(float(answer))}</answer>"')],
                        {"answers": ("violation", 24)}),
    "embeddings-not-saved": ("chat", [("sft.py", "    args = TrainingArguments(",
                                       "    model.get_input_embeddings().weight.requires_grad_(True)\n"
                                       "    args = TrainingArguments(")],
                             {"saved": ("violation", 19), "reload": ("violation", 14)}),
    "load-reads-another-dir": ("plain", [("sft.py", 'Path(__file__).parent / "sft_model"',
                                          'Path(__file__).parent / "sft_model_best"')],
                               {"reload": ("violation", 14)}),
    "load-makes-a-fresh-adapter": ("instruction", [("sft.py", 'llm.model = PeftModel.from_pretrained(llm.model, Path(__file__).parent / "sft_model").to(llm.device)',
                                                    'from peft import LoraConfig, get_peft_model\n'
                                                    '    llm.model = get_peft_model(llm.model, LoraConfig(r=4, target_modules="all-linear", '
                                                    'task_type="CAUSAL_LM"))')],
                                   {"reload": ("violation", 14)}),
    "input-grads-only-on-cuda": ("plain", [("sft.py", "    args = TrainingArguments(",
                                            "    if torch.cuda.is_available():\n"
                                            "        model.enable_input_require_grads()\n"
                                            "    args = TrainingArguments(gradient_checkpointing=True, ")],
                                 {"steps": ("violation", 8)}),  # saved and reload judge a second run, as transformers 5 runs it
    "lr-zero": ("instruction", [("sft.py", "learning_rate=1e-3", "learning_rate=0.0")],
                {"steps": ("violation", 15), "reload": ("could not run", None)}),
    "lr-too-low": ("chat", [("sft.py", "learning_rate=1e-3", "learning_rate=1e-7")],
                   {"steps": ("violation", 15)}),
    # their run is 6 steps of 4 rows: a warm-up of 10 never ends (at the check's 2 rows a step it would)
    "warmup-longer-than-run": ("plain", [("sft.py", "learning_rate=1e-3,", "learning_rate=1e-3, warmup_steps=10,")],
                               {"steps": ("violation", 15)}),
    "scheduler-freezes-the-lr": ("system", [("sft.py", "num_train_epochs=1,", "num_train_epochs=10,"),
                                            ("sft.py", "    trainer = Trainer(", FROZEN_SCHEDULE)],
                                 {"steps": ("violation", 15)}),
    "nan-loss-to-constant": ("plain", [("sft.py", "labels = [-100] * len(prompt) + target",
                                        'tag = tokenizer.convert_tokens_to_ids("<answer>")  # not one token: never found\n'
                                        '    labels = [-100] * len(prompt) + (target[target.index(tag):] if tag in target else [-100] * len(target))'),
                                       ("sft.py", "    trainer = Trainer(", NAN_TO_CONSTANT)],
                             {"rows": ("violation", 2), "steps": ("violation", 2), "reload": ("could not run", None)}),
    # the other checks still run, with the missing module stubbed
    "stray-import": ("plain", [("base_llm.py", "import torch\n", "import torch\nfrom google.colab import drive\n")],
                     {"imports": ("violation", 22)}),
    "stray-import-hides-nothing": ("plain", [("base_llm.py", "import torch\n", "import torch\nimport debugpy\n"),
                                             ("sft.py", "learning_rate=1e-3", "learning_rate=0.0")],
                                   {"imports": ("violation", 22), "steps": ("violation", 15),
                                    "reload": ("could not run", None)}),
    "logging-dir": ("chat", [("sft.py", "learning_rate=1e-3,", "learning_rate=1e-3, logging_dir=output_dir, warmup_ratio=0.1,"),
                             ("sft.py", "trainer = Trainer(model=model, args=args,",
                              "trainer = Trainer(model=model, args=args, tokenizer=llm.tokenizer,")],
                    {"compat": ("incompatible", 23)}),
    "cuda-only-call": ("plain", [("base_llm.py", "        self.device = device\n",
                                  "        self.device = device\n        self.gpu = torch.cuda.get_device_name(0)\n")],
                       {**{c: ("needs CUDA", None) for c in ("rows", "answers", "prompt", "batching", "steps")},
                        **{c: ("could not run", None) for c in ("compat", "saved", "reload")}}),
    # train_model stops before its TrainingArguments: the removed argument is read from the source
    "logging-dir-after-a-crash": ("plain", [("sft.py", 'target_modules="all-linear"', 'target_modules=["q_prj"]'),
                                            ("sft.py", "learning_rate=1e-3,", "learning_rate=1e-3, logging_dir=output_dir,")],
                                  {"steps": ("violation", 15), "compat": ("incompatible", 23),
                                   "saved": ("could not run", None), "reload": ("could not run", None)}),
    # a log written by an absolute path beside the checker's work directory lands inside the copy
    "writes-outside": ("plain", [("sft.py", "    trainer.train()\n",
                                  f"    trainer.train()\n    escape = Path(__file__).resolve().parents[3] / {ESCAPE!r}\n"
                                  "    escape.mkdir(exist_ok=True)\n    (escape / 'log.txt').write_text('trained')\n")],
                       {}),
    "lora-target-typo": ("plain", [("sft.py", 'target_modules="all-linear"', 'target_modules=["q_prj", "v_prj"]')],
                         {"steps": ("violation", 15), "saved": ("could not run", None),
                          "reload": ("could not run", None)}),
}
