"""The SFT contract: what any supervised fine-tuning setup must satisfy, checked on *its* pieces.

A project describes its setup as an `SFTContract` (tokenizer, examples, prompt builder, row tokenizer,
collator, model factory and optionally its trainer, generation and adapter loading); each `check_*`
function raises `ContractViolation`, an AssertionError naming the cause and the failure-catalog row.
The pytest plugin (homework.pytest_plugin) runs them as a battery; they are plain functions too.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .catalog import explain

IGNORE_INDEX = -100


class ContractViolation(AssertionError):
    def __init__(self, what: str, row: int):
        super().__init__(f"{what}\n{explain(row)}")
        self.catalog_row = row


@dataclass
class SFTContract:
    """One project's SFT setup. Required: the first six fields; the rest have defaults that suit a
    transformers causal LM with a peft adapter."""

    tokenizer: Any
    examples: Sequence[tuple[str, str]]  # (question, the answer text the model must learn to produce)
    make_model: Callable[[], Any]  # a fresh trainable model (adapter attached), the same initial weights each call
    format_prompt: Callable[[str], str]  # the prompt inference feeds for a question
    tokenize: Callable[[str, str], dict]  # (question, answer) -> {"input_ids", "attention_mask", "labels"}
    collate: Callable[[list[dict]], dict]  # rows -> a batch of tensors, as training collates them
    make_trainer: Callable[..., Any] | None = None  # (model, dataset, output_dir, steps) -> a transformers Trainer
    generate: Callable[[Any, list[str], int], list[str]] | None = None  # (model, prompts, max_new) -> texts, batched
    load_adapter: Callable[[Any, str], Any] | None = None  # (base model, directory) -> the trained model again
    make_base_model: Callable[[], Any] | None = None  # the model without adapter (default: make_model's base)
    encode: Callable[[str], list[int]] | None = None  # prompt text -> ids as inference encodes it
    steps: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 4
    name: str = "project"

    def encode_text(self, text: str) -> list[int]:
        """Prompt text -> the ids inference feeds (the project's `encode`, else no special tokens added)."""
        if self.encode is not None:
            return list(self.encode(text))
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompt(self, question: str) -> list[int]:
        return self.encode_text(self.format_prompt(question))


# --------------------------------------------------------------------------- rows and batches


def supervised_positions(labels) -> list[int]:
    return [k for k, lab in enumerate(labels) if lab != IGNORE_INDEX]


def check_row(contract: SFTContract, question: str, answer: str) -> None:
    """Masking and EOS for one example: one supervised span that decodes to the answer and ends in EOS,
    everything before it masked, every label either -100 or its input id, and the row supervises
    something (catalog rows 2, 4, 5, 6)."""
    row = contract.tokenize(question, answer)
    ids, labels = list(row["input_ids"]), [int(x) for x in row["labels"]]
    if len(ids) != len(labels):
        raise ContractViolation(f"{question!r}: {len(ids)} input ids but {len(labels)} labels", 6)
    sup = supervised_positions(labels)
    if not sup:
        raise ContractViolation(f"{question!r}: no label is supervised (every label is -100)", 2)
    changed = [k for k in sup if labels[k] != ids[k]]
    if changed:
        raise ContractViolation(f"{question!r}: labels at positions {changed[:5]} differ from their input ids", 6)
    eos = contract.tokenizer.eos_token_id
    if labels[sup[-1]] != eos:
        raise ContractViolation(f"{question!r}: the last supervised label is {labels[sup[-1]]}, not EOS ({eos}); "
                                "the model never learns to stop", 5)
    if sup != list(range(sup[0], sup[-1] + 1)):
        raise ContractViolation(f"{question!r}: the supervised positions {sup} are not one answer span", 4)
    text = contract.tokenizer.decode([ids[k] for k in sup[:-1]], skip_special_tokens=False)
    if text.strip() != answer.strip():
        raise ContractViolation(f"{question!r}: the supervised tokens decode to {text!r}, not the answer {answer!r}", 4)


def check_prompt_identity(contract: SFTContract, question: str, answer: str) -> None:
    """The ids inference feeds for a question are exactly the training row's masked prompt (catalog rows 4, 11)."""
    row = contract.tokenize(question, answer)
    ids, sup = list(row["input_ids"]), supervised_positions(row["labels"])
    prompt = contract.encode_prompt(question)
    if ids[:len(prompt)] != prompt:
        raise ContractViolation(f"{question!r}: the inference prompt's ids are not the training row's prompt: "
                                f"{prompt[:12]}... vs {ids[:12]}...", 11)
    if not sup or sup[0] != len(prompt):
        raise ContractViolation(f"{question!r}: training supervises from position {sup[0] if sup else None}, the "
                                f"inference prompt is {len(prompt)} tokens", 4)


def check_batch(contract: SFTContract, rows: list[dict]) -> None:
    """Collation: each row's ids and labels unchanged, padded with -100 labels and 0 attention by position,
    so a real EOS survives even when pad == EOS (catalog rows 5, 6)."""
    batch = contract.collate([copy.deepcopy(r) for r in rows])
    width = batch["input_ids"].shape[1]
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        got_ids, got_labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        got_mask = batch["attention_mask"][i].tolist()
        if got_ids[:n] != list(row["input_ids"]):
            raise ContractViolation(f"batch row {i}: the collator changed the input ids", 6)
        if got_labels[:n] != [int(x) for x in row["labels"]]:
            raise ContractViolation(f"batch row {i}: the collator rewrote the labels (e.g. rebuilt them from the "
                                    "input ids, or masked by pad id)", 6)
        if any(x != IGNORE_INDEX for x in got_labels[n:width]) or any(m != 0 for m in got_mask[n:width]):
            raise ContractViolation(f"batch row {i}: padding is supervised or attended", 5)


# --------------------------------------------------------------------------- generation


def left_padded_greedy(contract: SFTContract, model, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Batched greedy generation with left padding (the default `generate`)."""
    import torch

    tok = contract.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = [contract.encode_text(p) for p in prompts]
    width = max(len(e) for e in encoded)
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=pad)
    return tok.batch_decode(out[:, width:], skip_special_tokens=True)


def greedy_with_margins(contract: SFTContract, model, prompt: str, max_new_tokens: int):
    """One prompt alone, greedily: its generated ids and, per step, the gap between the top two logits."""
    import torch

    tok = contract.tokenizer
    ids = torch.tensor([contract.encode_text(prompt)], device=next(model.parameters()).device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, output_logits=True, return_dict_in_generate=True,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    top2 = [step[0].float().topk(2).values for step in out.logits]
    return out.sequences[0, ids.shape[1]:].tolist(), [float(t[0] - t[1]) for t in top2]


def first_divergence(batched_text: str, single_ids: list[int], tokenizer) -> int | None:
    """The first generated step at which a batched text leaves the one-by-one ids; None when it never does.

    Stopping counts: a batched text that goes on where the one-by-one run emitted EOS diverged at that step.
    """
    for k, token in enumerate(single_ids):
        if token == tokenizer.eos_token_id:
            return None if batched_text == tokenizer.decode(single_ids[:k]) else k
        if not batched_text.startswith(tokenizer.decode(single_ids[:k + 1], skip_special_tokens=True)):
            return k
    return None if batched_text == tokenizer.decode(single_ids, skip_special_tokens=True) else len(single_ids)


def varied_lengths(contract: SFTContract, n: int) -> list[str]:
    """Up to n example questions whose prompts differ in length (a batch of equal lengths pads nothing),
    the shortest and longest first."""
    by_length = {}
    for q, _ in contract.examples:
        by_length.setdefault(len(contract.encode_prompt(q)), q)
    lengths = sorted(by_length)
    picked = [lengths[0], lengths[-1], *lengths[1:-1]][:n] if len(lengths) > 1 else lengths
    return [by_length[k] for k in picked]


def check_batched_generation(contract: SFTContract, model, questions: Sequence[str], max_new_tokens: int = 8) -> None:
    """Batched greedy output equals one-by-one output (catalog row 12). In half precision a different batch
    shape may round a near-tie the other way: there a divergence is allowed only at a step whose top-two
    logits were within the dtype's tolerance (homework/numerics.py); a padding bug diverges at confident steps."""
    import torch

    from .numerics import tolerance_for

    generate = contract.generate or (lambda m, ps, n: left_padded_greedy(contract, m, ps, n))
    prompts = [contract.format_prompt(q) for q in questions]
    model.eval()
    batched = generate(model, prompts, max_new_tokens)
    dtype = next(model.parameters()).dtype
    margin = tolerance_for(dtype).greedy_margin
    for prompt, text in zip(prompts, batched):
        single = generate(model, [prompt], max_new_tokens)[0]
        if text == single:
            continue
        if dtype != torch.float32:  # in fp32 there is no rounding excuse: the texts must be equal
            ids, margins = greedy_with_margins(contract, model, prompt, max_new_tokens)
            step = first_divergence(text, ids, contract.tokenizer)
            if step is None or (step < len(margins) and margins[step] < margin):
                continue
        raise ContractViolation(f"batched generation gave {text!r} where the prompt alone gave {single!r} "
                                "(padding between prompt and continuation?)", 12)


# --------------------------------------------------------------------------- training


def default_trainer(contract: SFTContract, model, dataset, output_dir: str, steps: int):
    """A stock transformers Trainer, with this project's TrainingArguments for a few constant-rate steps."""
    from .health import HealthGuard
    from .recipe import few_steps_trainer

    return few_steps_trainer(model, dataset, contract.collate, output_dir, steps, guard=HealthGuard(stop=False),
                             learning_rate=contract.learning_rate, batch_size=contract.batch_size, plain=True)


def train_a_few_steps(contract: SFTContract, model, steps: int | None = None):
    """Run `steps` real optimizer steps of the project's trainer on its examples; return the step records."""
    from .health import HealthGuard

    steps = steps or contract.steps
    rows = [contract.tokenize(q, a) for q, a in contract.examples]
    guard = HealthGuard(stop=False)
    with tempfile.TemporaryDirectory(prefix="sft-contract-") as tmp:
        make = contract.make_trainer or (lambda m, d, o, n: default_trainer(contract, m, d, o, n))
        trainer = make(model, rows, tmp, steps)
        trainer.add_callback(guard)
        trainer.train()
    return guard.records


def check_first_steps(contract: SFTContract):
    """A few real steps are healthy (the one definition, health.step_problem), every trainable tensor moved
    and no frozen one did (catalog rows 1, 2, 8, 15). Returns the step records and the trained model."""
    import torch

    from .health import step_problem

    model = contract.make_model()
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ContractViolation("the model has no trainable parameter", 15)
    records = train_a_few_steps(contract, model)
    if len(records) != contract.steps:
        raise ContractViolation(f"{len(records)} optimizer steps were logged, not {contract.steps}", 15)
    for r in records:
        problem = step_problem(r)
        if problem:
            raise ContractViolation(f"step {r.step}: {problem[1]}", problem[0])
    after = dict(model.named_parameters())
    still = sorted(n for n in trainable if torch.equal(before[n], after[n].detach()))
    if still:
        raise ContractViolation(f"{len(still)} trainable tensors never moved, e.g. {still[0]}", 8)
    moved = sorted(n for n in before if n not in trainable and not torch.equal(before[n], after[n].detach()))
    if moved:
        raise ContractViolation(f"{len(moved)} frozen tensors changed, e.g. {moved[0]}", 15)
    return records, model


def check_save_and_reload(contract: SFTContract, question: str, trained_model=None) -> None:
    """save -> reload gives the trained model's logits, which differ from the untrained model's (catalog row 14).
    `trained_model`: one already trained (e.g. by check_first_steps); else a fresh one is trained here."""
    import torch

    from .numerics import tolerance_for

    model = trained_model
    if model is None:
        model = contract.make_model()
        model.train()
        train_a_few_steps(contract, model)
    model.eval()
    ids = torch.tensor([contract.encode_prompt(question)], device=next(model.parameters()).device)
    base = contract.make_base_model() if contract.make_base_model else contract.make_model()
    base.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits.float()
        untrained = base.to(ids.device)(input_ids=ids).logits.float()
    with tempfile.TemporaryDirectory(prefix="sft-contract-adapter-") as tmp:
        model.save_pretrained(tmp)
        fresh = contract.make_base_model() if contract.make_base_model else contract.make_model().unload()
        if contract.load_adapter:
            reloaded = contract.load_adapter(fresh, tmp)
        else:
            from peft import PeftModel

            reloaded = PeftModel.from_pretrained(fresh, tmp)
        reloaded = reloaded.to(ids.device).eval()
        with torch.no_grad():
            again = reloaded(input_ids=ids).logits.float()
    atol = tolerance_for(next(model.parameters()).dtype).logits_atol
    diff, moved = float((again - trained).abs().max()), float((trained - untrained).abs().max())
    if diff > atol:
        raise ContractViolation(f"the reloaded adapter's logits differ from the trained model's by {diff:.3g} "
                                f"(> {atol})", 14)
    if moved <= 2 * atol:
        raise ContractViolation(f"the trained model's logits are the untrained model's (max difference {moved:.3g}): "
                                "the adapter never changed the model", 15)
