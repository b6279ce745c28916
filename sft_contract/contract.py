"""The SFT contract: what any supervised fine-tuning setup must satisfy, checked on *its* pieces.

A project describes its setup as an `SFTContract` (tokenizer, examples, prompt builder, row tokenizer,
collator, model factory and optionally its trainer, generation and adapter loading); each `check_*`
function raises `ContractViolation`, an AssertionError naming the cause and the failure-catalog row.
The battery (sft_contract.checks) runs them by name; they are plain functions too. torch, transformers
and peft are imported inside the checks that need them.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .catalog import explain
from .rows import IGNORE_INDEX, prompt_problem, row_problems
from .steps import publish, step_problem


class ContractViolation(AssertionError):
    def __init__(self, what: str, row: int):
        super().__init__(f"{what}\n{explain(row)}")
        self.catalog_row = row


@dataclass(frozen=True)
class Tolerance:
    """How far two computations of the same thing may differ in the checks."""

    logits_atol: float  # a model and its save/reload
    greedy_margin: float  # a top-1/top-2 logit gap below which greedy decoding may legitimately differ
    loss_rel: float  # a token's loss in a batch and alone (relative, at least 1 nat of scale)


# For projects that name none: fp32 as measured on CPU, half precision from its rounding (8 mantissa bits).
# A project with its own measurements passes them as SFTContract.tolerance (homework passes homework/runtime/numerics.py's).
DEFAULT_TOLERANCES = {
    "float32": Tolerance(logits_atol=1e-5, greedy_margin=1e-3, loss_rel=1e-4),
    "half": Tolerance(logits_atol=0.125, greedy_margin=0.5, loss_rel=2e-2),
}


@dataclass
class SFTContract:
    """One project's SFT setup. Required: the first six fields; the rest have defaults that suit a
    transformers causal LM with a peft adapter."""

    tokenizer: Any
    examples: Sequence[tuple[str, str]]  # (question, the answer text the model must learn to produce)
    make_model: Callable[[], Any]  # a fresh trainable model (adapter attached), the same initial weights each call
    format_prompt: Callable[[str], str]  # the prompt inference feeds for a question
    tokenize: Callable[[str, str], dict]  # (question, answer) -> {"input_ids", "attention_mask", "labels"}
    collate: Callable[[list[dict]], dict]  # rows -> a batch of tensors, as training collates (and packs) them
    make_trainer: Callable[..., Any] | None = None  # (model, dataset, output_dir, steps) -> a transformers Trainer
    generate: Callable[[Any, list[str], int], list[str]] | None = None  # (model, prompts, max_new) -> texts, batched
    load_adapter: Callable[[Any, str], Any] | None = None  # (base model, directory) -> the trained model again
    make_base_model: Callable[[], Any] | None = None  # the model without adapter (default: make_model's base)
    encode: Callable[[str], list[int]] | None = None  # prompt text -> ids as inference encodes it
    tolerance: Tolerance | None = None  # default: DEFAULT_TOLERANCES by the model's dtype
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

    def tolerance_for(self, dtype) -> Tolerance:
        if self.tolerance is not None:
            return self.tolerance
        return DEFAULT_TOLERANCES["float32" if str(dtype) == "torch.float32" else "half"]


# --------------------------------------------------------------------------- rows and batches


def check_row(contract: SFTContract, question: str, answer: str) -> None:
    """Masking, EOS and fit for one example: one supervised span that decodes to the answer and ends in EOS,
    every supervised label its input id (catalog rows 2-6, 16; the checks are sft_contract.rows')."""
    row = contract.tokenize(question, answer)
    problems = row_problems(contract.tokenizer, row["input_ids"], row["labels"], answer=answer)
    if problems:
        raise ContractViolation(f"{question!r}: {problems[0].what}", problems[0].row)


def check_prompt_identity(contract: SFTContract, question: str, answer: str) -> None:
    """The ids inference feeds for a question are exactly the training row's masked prompt (catalog rows 4, 11, 16)."""
    row = contract.tokenize(question, answer)
    problem = prompt_problem(contract.tokenizer, row["input_ids"], row["labels"], contract.encode_prompt(question))
    if problem:
        raise ContractViolation(f"{question!r}: {problem.what}", problem.row)


def _label_change(row_labels: list[int], got: list[int], eos: int) -> tuple[str, int]:
    """What a collator did to a row's labels: masking only its EOS is pad-by-id masking (row 5)."""
    diff = [k for k, (a, b) in enumerate(zip(row_labels, got)) if a != b]
    if all(row_labels[k] == eos and got[k] == IGNORE_INDEX for k in diff):
        return ("the collator masked the row's EOS label (padding masked by token id, and pad == EOS): the model "
                "never learns to stop", 5)
    return ("the collator rewrote the labels (e.g. rebuilt them from the input ids, or masked by pad id)", 6)


def _find(haystack: list[int], needle: list[int], taken: set[int]) -> int | None:
    n = len(needle)
    for s in range(len(haystack) - n + 1):
        if haystack[s:s + n] == needle and not taken.intersection(range(s, s + n)):
            return s
    return None


def check_batch(contract: SFTContract, rows: list[dict]) -> None:
    """Collation: each row's ids and labels unchanged and nothing else supervised; one row per sequence
    padded with -100 labels and 0 attention by position (so a real EOS survives when pad == EOS), or rows
    packed whole into fewer sequences (catalog rows 5, 6, 17)."""
    batch = contract.collate([copy.deepcopy(r) for r in rows])
    eos = contract.tokenizer.eos_token_id
    ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    if len(ids) == len(rows):
        masks = batch["attention_mask"].tolist() if "attention_mask" in batch else None
        for i, row in enumerate(rows):
            n, row_labels = len(row["input_ids"]), [int(x) for x in row["labels"]]
            if ids[i][:n] != list(row["input_ids"]):
                raise ContractViolation(f"batch row {i}: the collator changed the input ids", 6)
            if labels[i][:n] != row_labels:
                what, catalog_row = _label_change(row_labels, labels[i][:n], eos)
                raise ContractViolation(f"batch row {i}: {what}", catalog_row)
            if any(x != IGNORE_INDEX for x in labels[i][n:]) or (masks and any(m != 0 for m in masks[i][n:])):
                raise ContractViolation(f"batch row {i}: padding is supervised or attended", 5)
        return
    # packed: find each row whole in the concatenated sequences
    flat_ids, flat_labels = sum(ids, []), sum(labels, [])
    taken: set[int] = set()
    for i, row in enumerate(rows):
        row_ids, row_labels = list(row["input_ids"]), [int(x) for x in row["labels"]]
        start = _find(flat_ids, row_ids, taken)
        if start is None:
            raise ContractViolation(f"packed batch: row {i} is not in it whole (cut at a sequence end, or "
                                    "reordered)", 17)
        taken.update(range(start, start + len(row_ids)))
        if flat_labels[start:start + len(row_ids)] != row_labels:
            what, catalog_row = _label_change(row_labels, flat_labels[start:start + len(row_ids)], eos)
            raise ContractViolation(f"packed batch, row {i}: {what}", catalog_row)
    extra = [k for k, lab in enumerate(flat_labels) if lab != IGNORE_INDEX and k not in taken]
    if extra:
        raise ContractViolation(f"packed batch: {len(extra)} supervised positions belong to no row (padding or "
                                "separators supervised)", 5)


_MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


def token_losses(model, batch: dict):
    """Each supervised token's cross-entropy in `batch`, in batch order (a 1-D float tensor)."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():  # no KV cache, as in training (transformers reads packed rows from positions only then)
        logits = model(**{k: batch[k].to(device) for k in _MODEL_INPUTS if k in batch}, use_cache=False).logits.float()
    target = batch["labels"].to(device)[:, 1:]
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked[target != IGNORE_INDEX]


def check_rows_stay_apart(contract: SFTContract, model, rows: list[dict]) -> None:
    """Every row trains as if alone: the per-token losses of the rows collated together equal those of each
    row collated by itself. Packing that lets a row attend to the rows before it, or padding that leaks into
    attention, changes them (catalog row 17)."""
    import torch

    model.eval()
    together = token_losses(model, contract.collate([copy.deepcopy(r) for r in rows]))
    alone = torch.cat([token_losses(model, contract.collate([copy.deepcopy(r)])) for r in rows])
    if together.numel() != alone.numel():
        raise ContractViolation(f"the batch supervises {together.numel()} tokens, its rows alone {alone.numel()}", 6)
    # sorted: a packing collator may reorder rows
    a, b = together.sort().values, alone.sort().values
    rel = contract.tolerance_for(next(model.parameters()).dtype).loss_rel
    gap = float(((a - b).abs() / b.abs().clamp(min=1.0)).max()) if a.numel() else 0.0
    if gap > rel:
        raise ContractViolation(f"a row's token losses change when it is collated with others (largest relative "
                                f"difference {gap:.3g} > {rel}): rows in one sequence attend to each other", 17)


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
    logits were within the tolerance's greedy_margin; a padding bug diverges at confident steps."""
    import torch

    generate = contract.generate or (lambda m, ps, n: left_padded_greedy(contract, m, ps, n))
    prompts = [contract.format_prompt(q) for q in questions]
    model.eval()
    batched = generate(model, prompts, max_new_tokens)
    dtype = next(model.parameters()).dtype
    margin = contract.tolerance_for(dtype).greedy_margin
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
    """A stock transformers Trainer for `steps` constant-rate steps of the contract's batch size and
    learning rate, collating with the contract's collator."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=contract.batch_size,
                             learning_rate=contract.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
                             logging_steps=1, report_to="none", save_strategy="no", remove_unused_columns=False,
                             disable_tqdm=True, use_cpu=next(model.parameters()).device.type == "cpu",
                             dataloader_pin_memory=False)
    return Trainer(model=model, args=args, train_dataset=dataset, data_collator=contract.collate)


def _train(contract: SFTContract, model, steps: int | None):
    from .recorder import StepRecorder

    rows = [contract.tokenize(q, a) for q, a in contract.examples]
    recorder = StepRecorder()
    with tempfile.TemporaryDirectory(prefix="sft-contract-") as tmp:
        make = contract.make_trainer or (lambda m, d, o, n: default_trainer(contract, m, d, o, n))
        trainer = make(model, rows, tmp, steps or contract.steps)
        trainer.add_callback(recorder)
        trainer.train()
    publish(recorder.records)
    return recorder


def train_a_few_steps(contract: SFTContract, model, steps: int | None = None):
    """Run `steps` real optimizer steps of the project's trainer on its examples; return the step records
    (also published to whoever listens: sft_contract.steps.listening)."""
    return _train(contract, model, steps).records


def check_first_steps(contract: SFTContract):
    """A few real steps are healthy (sft_contract.steps.step_problem), every trainable tensor moved and no
    frozen one did (catalog rows 1, 2, 8, 15). Returns the step records and the trained model."""

    model = contract.make_model()
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ContractViolation("the model has no trainable parameter", 15)
    recorder = _train(contract, model, None)
    records = recorder.records
    if len(records) != contract.steps:
        raise ContractViolation(f"{len(records)} optimizer steps were logged, not {contract.steps}", 15)
    if recorder.autocast_steps:
        raise ContractViolation(f"the optimizer step ran under autocast (steps {recorder.autocast_steps}): autocast "
                                "wraps the backward and the update, not only the forward", 18)
    for r in records:
        problem = step_problem(r, recorder.warmup_steps)
        if problem:
            raise ContractViolation(f"step {r.step}: {problem[1]}", problem[0])
    problem = movement_problem(before, dict(model.named_parameters()), trainable)
    if problem:
        raise ContractViolation(*problem)
    return records, model


def movement_problem(before: dict, after: dict, trainable: set[str]) -> tuple[str, int] | None:
    """(what, catalog row) when a trainable tensor of `before` is unchanged in `after` (row 8) or a frozen one
    changed (row 15); None when training moved exactly the trainable tensors."""
    import torch

    still = sorted(n for n in trainable if torch.equal(before[n], after[n].detach()))
    if still:
        return f"{len(still)} trainable tensors never moved, e.g. {still[0]}", 8
    moved = sorted(n for n in before if n not in trainable and not torch.equal(before[n], after[n].detach()))
    if moved:
        return f"{len(moved)} frozen tensors changed, e.g. {moved[0]}", 15
    return None


def check_save_and_reload(contract: SFTContract, question: str, trained_model=None) -> None:
    """save -> reload gives the trained model's logits, which differ from the untrained model's (catalog row 14).
    `trained_model`: one already trained (e.g. by check_first_steps); else a fresh one is trained here."""
    import torch

    model = trained_model
    if model is None:
        model = contract.make_model()
        model.train()
        train_a_few_steps(contract, model)
    model.eval()
    ids = torch.tensor([contract.encode_prompt(question)], device=next(model.parameters()).device)
    with torch.no_grad():
        trained = model(input_ids=ids).logits.float()
        if hasattr(model, "disable_adapter"):  # a peft model: its base, without another copy of it
            with model.disable_adapter():
                untrained = model(input_ids=ids).logits.float()
        else:
            base = contract.make_base_model() if contract.make_base_model else contract.make_model()
            untrained = base.to(ids.device).eval()(input_ids=ids).logits.float()
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
    atol = contract.tolerance_for(next(model.parameters()).dtype).logits_atol
    diff, moved = float((again - trained).abs().max()), float((trained - untrained).abs().max())
    if diff > atol:
        raise ContractViolation(f"the reloaded adapter's logits differ from the trained model's by {diff:.3g} "
                                f"(> {atol})", 14)
    if moved <= 2 * atol:
        raise ContractViolation(f"the trained model's logits are the untrained model's (max difference {moved:.3g}): "
                                "the adapter never changed the model", 15)
