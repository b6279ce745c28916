"""This project's own SFT contract: the shipped default recipe, for the SFT contract kit's battery and `doctor`.

pytest.ini names it (`sft_contract = homework.tools.project_contract:contract`), so `pytest -m "not slow"` runs
the battery -- 3 real optimizer steps included -- on exactly what `python -m homework.sft train` trains:
its LoRA layout, answer format, fused layers, trainer, sampler and TrainingArguments.
"""

from __future__ import annotations

EXAMPLES = 16  # rows of data/train.json the battery draws from
BATCH = 4  # the battery's steps use a small batch to stay quick; tests/training/test_recipe.py runs the default one


def contract(model: str | None = None, device: str | None = None, *, llm=None):
    """The SFTContract of the shipped recipe. `llm`: an already-loaded BaseLLM to reuse (doctor passes its own)."""
    import copy
    import dataclasses

    import torch

    from sft_contract import SFTContract, Tolerance

    from ..base_llm import BaseLLM
    from ..data import Dataset
    from ..runtime.numerics import tolerance_for
    from ..text.formats import answer_formatter
    from ..text.tokenization import tokenize_row
    from ..training.collate import DynamicPaddingCollator
    from ..training.config import TrainConfig
    from ..training.health import HealthGuard
    from ..training.lora import build_lora_model
    from ..training.recipe import build_trainer, training_arguments

    # the shipped defaults; only the schedule is shortened (no warm-up in a 3-step run, a small batch) and
    # nothing is saved
    cfg = TrainConfig(model=model, device=device, warmup_steps=0, save_steps=0, progress=False, evaluate=False,
                      batch_size=BATCH)
    llm = llm or BaseLLM(cfg.model, cfg.device, cfg.precision, training=True)
    tok, placement = llm.tokenizer, llm.placement
    base = llm.model
    for p in base.parameters():
        p.requires_grad_(False)
    formatter = answer_formatter(cfg.answer_format)
    examples = [(f["question"], f["answer"]) for f in (formatter(q, a) for q, a in Dataset(cfg.train_file).data[:EXAMPLES])]
    group = placement.groups_by_length if cfg.group_by_length is None else cfg.group_by_length
    known = tolerance_for(placement.dtype)  # the one source of this project's tolerances
    tolerance = Tolerance(logits_atol=known.logits_atol, greedy_margin=known.greedy_margin, loss_rel=known.loss_rel)

    def make_model():
        torch.manual_seed(cfg.seed)
        return build_lora_model(copy.deepcopy(base), cfg)

    def make_trainer(model, dataset, output_dir, steps):
        args = training_arguments(dataclasses.replace(cfg, max_steps=steps), output_dir, placement)
        return build_trainer(model, args, dataset, DynamicPaddingCollator(tok.pad_token_id),
                             guard=HealthGuard(stop=False), group_by_length=group)

    def generate(model, prompts, max_new_tokens):
        return BaseLLM.from_components(model, tok, placement).batched_generate(prompts, max_new_tokens=max_new_tokens)

    return SFTContract(
        tokenizer=tok, examples=examples, make_model=make_model, format_prompt=llm.format_prompt,
        tokenize=lambda q, a: tokenize_row(tok, q, a, max_length=cfg.max_length, pad=False).as_dict(),
        collate=DynamicPaddingCollator(tok.pad_token_id), make_trainer=make_trainer, generate=generate,
        make_base_model=lambda: copy.deepcopy(base), tolerance=tolerance, learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size, name="homework (shipped default recipe)",
    )
