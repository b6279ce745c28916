"""sft_contract.contract's generation helpers and batched-generation check, on the foreign project's tiny
random Llama (tests/foreign_project/sftproj.py) against greedy decoding done by hand, one forward pass a token."""

import dataclasses
import os
from types import SimpleNamespace

import pytest
import torch

from sft_contract.contract import (
    ContractViolation,
    SFTContract,
    Tolerance,
    check_batch,
    check_batched_generation,
    check_first_steps,
    check_prompt_identity,
    check_row,
    check_rows_stay_apart,
    check_save_and_reload,
    default_trainer,
    first_divergence,
    greedy_with_margins,
    left_padded_greedy,
    token_losses,
    train_a_few_steps,
    varied_lengths,
)
from tests.conftest import load_foreign_project

QUESTIONS = ["what is 1 plus 3?", "what is 300 plus 1000?", "what is 40 plus 25?"]  # three prompt lengths


@pytest.fixture(scope="module")
def sftproj():
    return load_foreign_project("sftproj_contract")


@pytest.fixture(scope="module")
def model(sftproj):
    return sftproj.contract().make_base_model().eval()


class OtherIds:
    """The project's tokenizer with its EOS / pad ids replaced, as for a chat model whose end-of-turn token
    is not the model config's eos_token_id."""

    def __init__(self, tok, eos, pad):
        self.tok, self.eos_token_id, self.pad_token_id = tok, eos, pad

    def __call__(self, text, add_special_tokens=True):
        return self.tok(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, rows, skip_special_tokens=False):
        return self.tok.batch_decode(rows, skip_special_tokens=skip_special_tokens)


def by_hand(model, ids, eos, max_new):
    """Greedy decoding of one prompt alone: the generated ids (EOS included) and each step's top-two logit gap."""
    ids, out, margins = list(ids), [], []
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1].float()
            top = logits.topk(2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            if out[-1] == eos:
                break
    return out, margins


def _contract(sftproj, eos=None, pad=2):
    """The project's contract with the default generation (no `generate` of its own). With `eos`, a token the
    model emits early in one prompt and not in another ends generation (else the model never stops)."""
    c = sftproj.contract()
    return dataclasses.replace(c, generate=None, tokenizer=OtherIds(c.tokenizer, 2 if eos is None else eos, pad))


def _stopping_token(sftproj, model):
    """A token the first prompt emits and the second does not, within 8 tokens."""
    c = _contract(sftproj)
    first, second = (by_hand(model, c.encode_prompt(q), None, 8)[0] for q in QUESTIONS[:2])
    return next(t for t in first if t not in second)


def test_left_padded_greedy_gives_each_prompt_what_it_gives_alone(sftproj, model):
    c = _contract(sftproj, eos=_stopping_token(sftproj, model))
    alone = [by_hand(model, c.encode_prompt(q), c.tokenizer.eos_token_id, 8)[0] for q in QUESTIONS]
    assert len({len(ids) for ids in alone}) > 1  # one stopped early: the others went on past its EOS
    expected = [c.tokenizer.decode(ids, skip_special_tokens=True) for ids in alone]
    assert left_padded_greedy(c, model, [c.format_prompt(q) for q in QUESTIONS], 8) == expected
    assert left_padded_greedy(c, model, [c.format_prompt(QUESTIONS[1])], 3) == [
        c.tokenizer.decode(alone[1][:3], skip_special_tokens=True)]


def test_without_a_pad_token_generation_pads_with_eos(sftproj, model):
    c = _contract(sftproj, pad=None)
    alone = [by_hand(model, c.encode_prompt(q), 2, 6)[0] for q in QUESTIONS]
    expected = [c.tokenizer.decode(ids, skip_special_tokens=True) for ids in alone]
    assert left_padded_greedy(c, model, [c.format_prompt(q) for q in QUESTIONS], 6) == expected


def test_greedy_with_margins_gives_the_ids_and_each_steps_top_two_gap(sftproj, model):
    c = _contract(sftproj, eos=_stopping_token(sftproj, model))
    for q, max_new in ((QUESTIONS[0], 8), (QUESTIONS[1], 5)):
        ids, margins = greedy_with_margins(c, model, c.format_prompt(q), max_new)
        want_ids, want_margins = by_hand(model, c.encode_prompt(q), c.tokenizer.eos_token_id, max_new)
        assert ids == want_ids and margins == pytest.approx(want_margins, abs=1e-4)
        assert all(m >= 0 for m in margins)


def _diverging(c, model, change):
    """A project `generate` that is greedy, but changes the texts of a batch by `change` (a padding bug)."""

    def generate(m, prompts, max_new):
        texts = [left_padded_greedy(c, m, [p], max_new)[0] for p in prompts]
        return [change(t) for t in texts] if len(prompts) > 1 else texts

    return dataclasses.replace(c, generate=generate)


def test_batched_generation_passes_when_batched_equals_alone(sftproj, model):
    c = _contract(sftproj)
    check_batched_generation(c, model, QUESTIONS)
    check_batched_generation(_diverging(c, model, lambda t: t), model, QUESTIONS, max_new_tokens=3)


def test_in_fp32_any_batched_difference_is_a_violation(sftproj, model):
    c = dataclasses.replace(_contract(sftproj), tolerance=Tolerance(logits_atol=1.0, greedy_margin=1e9, loss_rel=1.0))
    bad = _diverging(c, model, lambda t: t[:1] + "?" + t[2:])
    with pytest.raises(ContractViolation, match=r"^batched generation gave '.\?.*' where the prompt alone gave '.*' "
                                                r"\(padding between prompt and continuation\?\)\n") as err:
        check_batched_generation(bad, model, QUESTIONS)  # no rounding excuse in fp32, whatever the margin
    assert err.value.catalog_row == 12


@pytest.fixture(scope="module")
def half_model(sftproj):
    return sftproj.contract().make_base_model().to(torch.bfloat16).eval()


def _half(sftproj, margin):
    return dataclasses.replace(_contract(sftproj), tolerance=Tolerance(logits_atol=1.0, greedy_margin=margin,
                                                                       loss_rel=1.0))


def test_in_half_precision_a_divergence_is_allowed_only_at_a_near_tie(sftproj, half_model):
    """bf16: batched texts that leave the one-by-one texts at step 1 pass when step 1's top-two gaps are below
    greedy_margin, and fail when one is not."""
    swap = lambda t: t[:1] + "?" + t[2:]  # noqa: E731
    c = _half(sftproj, 0.0)
    widest = max(greedy_with_margins(c, half_model, c.format_prompt(q), 3)[1][1] for q in QUESTIONS[:2])
    check_batched_generation(_diverging(_half(sftproj, widest * 1.01), half_model, swap), half_model, QUESTIONS[:2],
                             max_new_tokens=3)
    with pytest.raises(ContractViolation, match="batched generation gave"):
        check_batched_generation(_diverging(_half(sftproj, widest), half_model, swap), half_model, QUESTIONS[:2],
                                 max_new_tokens=3)


def test_in_half_precision_a_batched_text_that_runs_on_is_a_violation(sftproj, half_model):
    """Past the last step of the one-by-one run there is no margin to excuse it."""
    c = _half(sftproj, 1e9)
    with pytest.raises(ContractViolation, match="batched generation gave"):
        check_batched_generation(_diverging(c, half_model, lambda t: t + "x"), half_model, QUESTIONS[:2],
                                 max_new_tokens=4)


# --------------------------------------------------------------------------- rows and batches, on stand-ins


class CharTokenizer:
    """One id per character (ord); EOS = 0 and BOS = 1 are special."""

    eos_token_id = pad_token_id = 0
    SPECIAL = {0: "</s>", 1: "<s>"}

    def decode(self, ids, skip_special_tokens=False):
        return "".join("" if (i in self.SPECIAL and skip_special_tokens) else self.SPECIAL.get(i) or chr(i) for i in ids)

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [ord(c) for c in text]}


def _ids(text):
    return [ord(c) for c in text]


def _tokenize(q, a, *, label=lambda ids: ids):
    prompt, answer = _ids(f"{q}="), _ids(a) + [0]
    return {"input_ids": prompt + answer, "attention_mask": [1] * len(prompt + answer),
            "labels": [-100] * len(prompt) + label(answer)}


def _stand_in(**kw):
    return SFTContract(**{"tokenizer": CharTokenizer(), "examples": [("1+1", "2"), ("10+10", "20")], "make_model": None,
                          "format_prompt": lambda q: f"{q}=", "tokenize": _tokenize, "collate": None, **kw})


def test_check_row_names_the_question_and_the_first_problem():
    c = _stand_in(tokenize=lambda q, a: _tokenize(q, a, label=lambda ids: [7] * len(ids)))  # rewritten, no EOS
    with pytest.raises(ContractViolation) as err:
        check_row(c, "1+1", "2")
    assert err.value.catalog_row == 6
    assert str(err.value).startswith("'1+1': labels at positions [4, 5] differ from their input ids\n[failure catalog row 6]")
    check_row(_stand_in(), "1+1", "2")


def test_check_row_compares_the_supervised_span_with_the_answer():
    c = _stand_in(tokenize=lambda q, a: _tokenize(q, "3"))  # a healthy row, for another answer
    with pytest.raises(ContractViolation, match="^'1\\+1': the supervised tokens decode to '3', not the answer '2'"):
        check_row(c, "1+1", "2")


def test_check_prompt_identity_names_the_question_and_the_prompt_problem():
    check_prompt_identity(_stand_in(), "1+1", "2")
    c = _stand_in(format_prompt=lambda q: f"Q: {q}=")
    with pytest.raises(ContractViolation, match="^'1\\+1': the inference prompt's ids are not the training row's") as err:
        check_prompt_identity(c, "1+1", "2")
    assert err.value.catalog_row == 11


def test_encode_text_adds_no_special_tokens_unless_the_project_encodes_itself():
    assert _stand_in().encode_text("ab") == [97, 98]
    assert _stand_in().encode_prompt("1") == [49, 61]
    assert _stand_in(encode=lambda text: (5, *_ids(text))).encode_prompt("1") == [5, 49, 61]


ROWS = [_tokenize("1+1", "2"), _tokenize("10+10", "20"), _tokenize("1+1", "2")]  # the last two: one length, twice


def _pad(rows, *, label_pad=-100, mask=True, in_place=False):
    width = max(len(r["input_ids"]) for r in rows)
    if in_place:  # a collator that extends the rows it is given
        for r in rows:
            extra = width - len(r["input_ids"])
            r["input_ids"] += [0] * extra
            r["labels"] += [label_pad] * extra
            r["attention_mask"] += [0] * extra
    ids = [r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows]
    labels = [r["labels"] + [label_pad] * (width - len(r["labels"])) for r in rows]
    batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if mask:
        batch["attention_mask"] = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                                for r in rows])
    return batch


def _violation(collate, rows=ROWS):
    with pytest.raises(ContractViolation) as err:
        check_batch(_stand_in(collate=collate), rows)
    return str(err.value).split("\n")[0], err.value.catalog_row


def test_check_batch_names_each_padding_fault():
    check_batch(_stand_in(collate=_pad), ROWS)
    check_batch(_stand_in(collate=lambda rows: _pad(rows, mask=False)), ROWS)  # positions only: nothing to attend
    assert _violation(lambda rows: {**_pad(rows), "input_ids": _pad(rows)["input_ids"] + 1}) == (
        "batch row 0: the collator changed the input ids", 6)
    assert _violation(lambda rows: _pad(rows, label_pad=0)) == ("batch row 0: padding is supervised or attended", 5)
    attended = lambda rows: {**_pad(rows), "attention_mask": torch.ones_like(_pad(rows)["input_ids"])}  # noqa: E731
    assert _violation(attended) == ("batch row 0: padding is supervised or attended", 5)


def test_a_collator_that_extends_its_rows_in_place_cannot_hide_supervised_padding():
    assert _violation(lambda rows: _pad(rows, label_pad=0, in_place=True)) == (
        "batch row 0: padding is supervised or attended", 5)


def test_check_batch_tells_a_masked_eos_from_rewritten_labels():
    def relabel(change):
        def collate(rows):
            batch = _pad(rows)
            batch["labels"][0] = torch.tensor(change(batch["labels"][0].tolist(), rows[0]))
            return batch
        return collate

    eos_at = len(ROWS[0]["input_ids"]) - 1
    masked_eos = relabel(lambda labels, row: labels[:eos_at] + [-100] + labels[eos_at + 1:])
    assert _violation(masked_eos) == ("batch row 0: the collator masked the row's EOS label (padding masked by token "
                                      "id, and pad == EOS): the model never learns to stop", 5)
    all_masked = relabel(lambda labels, row: [-100] * len(labels))  # the answer's label too, not only the EOS
    assert _violation(all_masked) == ("batch row 0: the collator rewrote the labels (e.g. rebuilt them from the input "
                                      "ids, or masked by pad id)", 6)


def _pack(rows, *, order=None, extra=(), relabel=None):
    rows = [rows[i] for i in (order or range(len(rows)))]
    ids = sum((r["input_ids"] for r in rows), []) + [9] * len(extra)
    labels = sum((r["labels"] for r in rows), []) + list(extra)
    if relabel:
        labels = relabel(labels)
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels])}


def test_packed_rows_are_found_whole_in_any_order_even_when_two_are_equal():
    check_batch(_stand_in(collate=_pack), ROWS)
    check_batch(_stand_in(collate=lambda rows: _pack(rows, order=[2, 1, 0])), ROWS)
    check_batch(_stand_in(collate=lambda rows: _pack(rows, order=[1, 0, 2])), ROWS)
    check_batch(_stand_in(collate=lambda rows: _pack(rows, extra=[-100])), ROWS)  # an unsupervised separator


def test_check_batch_names_each_packing_fault():
    assert _violation(lambda rows: _pack(rows, extra=[9, 9])) == (
        "packed batch: 2 supervised positions belong to no row (padding or separators supervised)", 5)
    eos_at = len(ROWS[0]["input_ids"]) - 1
    assert _violation(lambda rows: _pack(rows, relabel=lambda labels: labels[:eos_at] + [-100] + labels[eos_at + 1:]))[
        1] == 5
    first = len(ROWS[1]["labels"])  # the longer row, packed first
    rewritten = lambda rows: _pack(rows, order=[1, 0, 2], relabel=lambda labels: labels[:first] + [  # noqa: E731
        7 if x != -100 else x for x in labels[first:]])  # the rows packed after it
    assert _violation(rewritten) == ("packed batch, row 0: the collator rewrote the labels (e.g. rebuilt them from the "
                                     "input ids, or masked by pad id)", 6)
    assert _violation(lambda rows: _pack(rows[:2])) == (
        "packed batch: row 2 is not in it whole (cut at a sequence end, or reordered)", 17)


# --------------------------------------------------------------------------- token losses, rows kept apart


def test_token_losses_are_each_supervised_tokens_cross_entropy(model):
    ids = torch.tensor([[5, 6, 7, 0, 9], [8, 0, 4, 5, 2]])
    labels = torch.tensor([[-100, -100, 7, 0, 9], [-100, 0, 4, -100, -100]])  # id 0 is a token like any other
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none")
    got = token_losses(model, batch)
    assert got.shape == (5,) and torch.allclose(got, expected[labels[:, 1:] != -100], atol=1e-5)


def _sftproj_rows(sftproj):
    c = sftproj.contract()
    return c, [c.tokenize(q, a) for q, a in (c.examples[0], c.examples[-1])]  # two lengths


def test_rows_that_supervise_nothing_have_no_losses_to_compare(sftproj, model):
    c, rows = _sftproj_rows(sftproj)
    rows = [{**r, "labels": [-100] * len(r["labels"])} for r in rows]
    check_rows_stay_apart(c, model, rows)


def test_a_batch_that_supervises_more_than_its_rows_is_a_violation(sftproj, model):
    c, rows = _sftproj_rows(sftproj)

    def supervises_padding(rows):
        batch = c.collate(rows)
        if len(rows) > 1:
            batch["labels"] = torch.where(batch["attention_mask"] == 0, batch["input_ids"], batch["labels"])
        return batch

    alone = sum(sum(x != -100 for x in r["labels"]) for r in rows)
    width = max(len(r["input_ids"]) for r in rows)
    padded = 2 * width - sum(len(r["input_ids"]) for r in rows)
    with pytest.raises(ContractViolation) as err:
        check_rows_stay_apart(dataclasses.replace(c, collate=supervises_padding), model, rows)
    assert err.value.catalog_row == 6
    assert str(err.value).startswith(f"the batch supervises {alone + padded} tokens, its rows alone {alone}\n")


def test_first_divergence_ignores_special_tokens_the_batched_text_drops():
    assert first_divergence("ab", [97, 1, 98], CharTokenizer()) is None  # a generated <s> decodes to nothing
    assert first_divergence("abcd", [97, 98, 99], CharTokenizer()) == 3  # ran on past the one-by-one run's last step


# --------------------------------------------------------------------------- training, with a stand-in trainer


class StandInTrainer:
    """What the contract needs of a transformers Trainer (add_callback, train), driving the callbacks as the
    Trainer does: a plain SGD step of the mean squared output per step, logging `losses`."""

    def __init__(self, model, dataset, output_dir, steps, *, losses=None, lr=0.1, warmup=0, step=None):
        self.model, self.dataset, self.output_dir, self.steps = model, dataset, output_dir, steps
        self.losses, self.lr, self.warmup, self.step, self.callbacks = losses, lr, warmup, step, []

    def add_callback(self, callback):
        self.callbacks.append(callback)

    def train(self):
        args = SimpleNamespace(get_warmup_steps=lambda max_steps: self.warmup)
        state = SimpleNamespace(max_steps=self.steps, global_step=0)
        for cb in self.callbacks:
            cb.on_train_begin(args, state, None)
        for k in range(self.steps):
            self.model.zero_grad()
            self.model(torch.ones(1, 2)).pow(2).mean().backward()
            for cb in self.callbacks:
                cb.on_pre_optimizer_step(args, state, None, model=self.model)
            with torch.no_grad():
                (self.step or self._sgd)(self.model)
            state.global_step += 1
            loss = self.losses[k] if self.losses else 2.0 - 0.1 * k
            lr = 0.0 if state.global_step <= self.warmup else self.lr
            for cb in self.callbacks:
                cb.on_log(args, state, None, logs={"loss": loss, "learning_rate": lr})

    def _sgd(self, model):
        for p in model.parameters():
            if p.grad is not None:
                p -= self.lr * p.grad


def _linear():
    torch.manual_seed(0)
    return torch.nn.Linear(2, 1)


def _training(make_model=_linear, **trainer_kw):
    made = []

    def make_trainer(model, dataset, output_dir, steps):
        made.append(StandInTrainer(model, dataset, output_dir, steps, **trainer_kw))
        return made[-1]

    c = _stand_in(make_model=make_model, make_trainer=make_trainer, steps=3)
    return c, made


def test_first_steps_train_the_contracts_rows_and_return_the_records_and_model():
    from sft_contract.steps import listening

    c, made = _training()
    with listening() as published:
        records, model = check_first_steps(c)
    assert [r.step for r in records] == [1, 2, 3] and published == records
    trainer = made[0]
    assert trainer.model is model and trainer.steps == 3 and trainer.dataset == [_tokenize(q, a) for q, a in c.examples]
    assert trainer.output_dir and not os.path.exists(trainer.output_dir)  # a temporary directory, removed
    assert model.training and all(r.grad_norm > 0 for r in records)
    assert [r.step for r in train_a_few_steps(c, _linear(), 2)] == [1, 2] and made[-1].steps == 2


def _weight_only(model):
    model.weight -= 0.1 * model.weight.grad


@pytest.mark.parametrize("kw, row, words", [
    ({"losses": [2.0, float("nan"), 1.0]}, 1, "^step 2: the loss is nan\n"),
    ({"step": _weight_only}, 8, "^1 trainable tensors never moved, e.g. bias\n"),
    ({"step": lambda model: None}, 8, "^2 trainable tensors never moved, e.g. bias\n"),
    ({"lr": 0.0}, 15, "^step 1: the learning rate is still 0.0 after 0 warmup steps\n"),
], ids=["nan-loss", "one-never-moved", "none-moved", "no-learning-rate"])
def test_first_steps_name_what_went_wrong(kw, row, words):
    c, _ = _training(**kw)
    with pytest.raises(ContractViolation, match=words) as err:
        check_first_steps(c)
    assert err.value.catalog_row == row


def test_first_steps_name_an_optimizer_step_under_autocast():
    """Catalog row 18: autocast around the whole training (backward and update too) trains nothing while every
    step looks healthy. The same trainer with autocast around nothing passes."""

    class UnderAutocast(StandInTrainer):
        def train(self):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                super().train()

    c, _ = _training()
    check_first_steps(c)
    wrapped = dataclasses.replace(c, make_trainer=lambda m, d, o, n: UnderAutocast(m, d, o, n))
    with pytest.raises(ContractViolation, match=r"^the optimizer step ran under autocast \(steps \[1, 2, 3\]\)") as err:
        check_first_steps(wrapped)
    assert err.value.catalog_row == 18


def test_a_warmup_excuses_a_zero_learning_rate_only_during_it():
    c, _ = _training(warmup=2)
    assert [r.learning_rate for r in check_first_steps(c)[0]] == [0.0, 0.0, 0.1]


def test_frozen_tensors_must_stay_and_something_must_train():
    def frozen_bias():
        model = _linear()
        model.bias.requires_grad_(False)
        return model

    def everything(model):
        model.weight -= 0.1 * model.weight.grad
        model.bias += 1.0  # a frozen tensor changed, e.g. by weight decay on every parameter

    c, _ = _training(make_model=frozen_bias, step=everything)
    with pytest.raises(ContractViolation, match="^1 frozen tensors changed, e.g. bias\n") as err:
        check_first_steps(c)
    assert err.value.catalog_row == 15
    c, _ = _training(make_model=lambda: _linear().requires_grad_(False))
    with pytest.raises(ContractViolation, match="^the model has no trainable parameter\n") as err:
        check_first_steps(c)
    assert err.value.catalog_row == 15


def test_every_optimizer_step_must_be_logged():
    c, made = _training()
    short = dataclasses.replace(c, make_trainer=lambda m, d, o, n: StandInTrainer(m, d, o, n - 1))
    with pytest.raises(ContractViolation, match="^2 optimizer steps were logged, not 3\n") as err:
        check_first_steps(short)
    assert err.value.catalog_row == 15


def test_the_stock_trainer_runs_the_contracts_steps_at_a_constant_rate(sftproj, model, tmp_path):
    c = dataclasses.replace(sftproj.contract(), batch_size=2, learning_rate=1e-2)
    rows = [c.tokenize(q, a) for q, a in c.examples[:2]]
    trainer = default_trainer(c, model, rows, str(tmp_path), 5)
    a = trainer.args
    assert (a.output_dir, a.max_steps, a.per_device_train_batch_size, a.learning_rate, a.lr_scheduler_type,
            a.warmup_steps, a.logging_steps) == (str(tmp_path), 5, 2, 1e-2, "constant", 0, 1)
    assert trainer.train_dataset is rows and trainer.data_collator is c.collate
    # no checkpoints, no reporting integrations, no progress bar; the rows' own columns kept; on the model's device
    assert (a.save_strategy, a.report_to, a.disable_tqdm, a.remove_unused_columns, a.use_cpu,
            a.dataloader_pin_memory) == ("no", [], True, False, True, False)


# --------------------------------------------------------------------------- save and reload


def _adapted(sftproj, scale=0.5):
    """The project's adapter model with its LoRA B matrices set as training would (nonzero): a changed model."""
    c = sftproj.contract()
    model = c.make_model()
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * scale)
    return c, model


def test_save_and_reload_gives_the_trained_logits(sftproj):
    c, model = _adapted(sftproj)
    check_save_and_reload(c, c.examples[0][0], model)
    check_save_and_reload(dataclasses.replace(c, load_adapter=None), c.examples[0][0], model)  # peft's own loading


def test_a_reload_that_loses_the_adapter_is_a_violation(sftproj):
    c, model = _adapted(sftproj)
    lost = dataclasses.replace(c, load_adapter=lambda base, path: base)
    with pytest.raises(ContractViolation, match=r"^the reloaded adapter's logits differ from the trained model's by "
                                                r"[0-9.e-]+ \(> 1e-05\)\n") as err:
        check_save_and_reload(lost, c.examples[0][0], model)
    assert err.value.catalog_row == 14


def test_an_adapter_that_never_changed_the_model_is_a_violation(sftproj):
    c, model = _adapted(sftproj, scale=0.0)  # LoRA B still zero: the untrained model
    with pytest.raises(ContractViolation, match=r"^the trained model's logits are the untrained model's \(max "
                                                r"difference 0\): the adapter never changed the model\n") as err:
        check_save_and_reload(c, c.examples[0][0], model)
    assert err.value.catalog_row == 15


def _later_only(c, change):
    """A project `generate` whose batch changes only the texts after the first (a bug that spares row 0)."""

    def generate(m, prompts, max_new):
        texts = [left_padded_greedy(c, m, [p], max_new)[0] for p in prompts]
        return texts[:1] + [change(t) for t in texts[1:]] if len(prompts) > 1 else texts

    return dataclasses.replace(c, generate=generate)


def test_every_prompt_of_the_batch_is_compared(sftproj, model, half_model):
    swap = lambda t: t[:1] + "?" + t[2:]  # noqa: E731
    with pytest.raises(ContractViolation, match="batched generation gave"):
        check_batched_generation(_later_only(_contract(sftproj), swap), model, QUESTIONS[:2], max_new_tokens=3)
    # bf16: the first prompt's divergence is a near-tie (allowed); the second's must still be judged
    c = _half(sftproj, 0.0)
    step1 = {q: greedy_with_margins(c, half_model, c.format_prompt(q), 3)[1][1] for q in QUESTIONS[:2]}
    tie_first = sorted(step1, key=step1.get)  # the nearer tie first
    between = _half(sftproj, sum(step1.values()) / 2)
    assert step1[tie_first[0]] < between.tolerance.greedy_margin < step1[tie_first[1]]
    with pytest.raises(ContractViolation, match="batched generation gave"):
        check_batched_generation(_diverging(between, half_model, swap), half_model, tie_first, max_new_tokens=3)


def test_generation_is_greedy_and_padded_as_asked_whatever_the_models_generation_config(sftproj, model):
    """Chat models often ship a generation_config that samples, or names another pad token."""
    import copy

    sampling = copy.deepcopy(model)
    sampling.generation_config.do_sample, sampling.generation_config.top_k = True, 0
    sampling.generation_config.pad_token_id = None
    c = _contract(sftproj, eos=_stopping_token(sftproj, model))
    prompts = [c.format_prompt(q) for q in QUESTIONS]
    torch.manual_seed(0)
    assert left_padded_greedy(c, sampling, prompts, 8) == left_padded_greedy(c, model, prompts, 8)
    assert greedy_with_margins(c, sampling, prompts[0], 8) == greedy_with_margins(c, model, prompts[0], 8)


def test_varied_lengths_takes_the_extremes_then_the_rest_in_length_order():
    examples = [("1+1", "2"), ("100+1", "101"), ("10+1", "11"), ("1000+1", "1001"), ("2+2", "4")]
    c = _stand_in(examples=examples)
    assert varied_lengths(c, 4) == ["1+1", "1000+1", "10+1", "100+1"]
    assert varied_lengths(c, 3) == ["1+1", "1000+1", "10+1"]
    assert varied_lengths(_stand_in(examples=[("1+1", "2"), ("2+2", "4")]), 2) == ["1+1"]  # one length: one question


def test_save_and_reload_of_a_model_without_an_adapter_compares_with_the_base_model(sftproj):
    from transformers import LlamaForCausalLM

    c = sftproj.contract()
    model = c.make_base_model()
    with torch.no_grad():
        model.lm_head.weight.add_(torch.randn_like(model.lm_head.weight))  # "trained": not the fresh base model
    full = dataclasses.replace(c, load_adapter=lambda base, path: LlamaForCausalLM.from_pretrained(path))
    check_save_and_reload(full, c.examples[0][0], model)
    untrained = c.make_base_model()
    with pytest.raises(ContractViolation, match="the adapter never changed the model"):
        check_save_and_reload(full, c.examples[0][0], untrained)


LOST = "layers.1.self_attn.v_proj.lora_B"  # one tensor of the four the foreign project's adapter has


def _without_one_tensor(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if LOST in name:
                p.zero_()
    return model


def test_a_reload_that_loses_part_of_the_adapter_fails_however_large_the_logits(sftproj):
    """Catalog row 14, in its quiet form: a reload that drops one lora_B tensor of four. On a model whose logits
    are large (~100, SmolLM2's are ~30) and whose lost part moves them by far less than that, a bound that grew
    with |logits| would let the reload pass. The bound is absolute: it fails."""
    import copy

    from peft import PeftModel

    c, model = _adapted(sftproj)
    base_of = c.make_base_model
    scale = 30.0  # the output head scaled: every logit ~30x, on the trained model and on every base alike

    def large_logits_base():
        base = base_of()
        with torch.no_grad():
            base.lm_head.weight.mul_(scale)
        return base

    with torch.no_grad():
        model.get_base_model().lm_head.weight.mul_(scale)
        for name, p in model.named_parameters():
            if LOST in name:
                p.mul_(1e-6)  # the part that is lost moved the model only a little
    c = dataclasses.replace(c, make_base_model=large_logits_base,
                            load_adapter=lambda base, path: _without_one_tensor(PeftModel.from_pretrained(base, path)))
    atol = c.tolerance_for(torch.float32).logits_atol
    ids = torch.tensor([c.encode_prompt(c.examples[0][0])])
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        lost = _without_one_tensor(copy.deepcopy(model))(input_ids=ids).logits
    gap, size = float((lost - trained).abs().max()), float(trained.abs().max())
    assert size > 50 and atol < gap < atol * size, (gap, size)  # forgiven by any bound scaled by |logits|
    with pytest.raises(ContractViolation, match=r"^the reloaded adapter's logits differ from the trained model's by "
                                                r"[0-9.e-]+ \(> 1e-05\)\n") as err:
        check_save_and_reload(c, c.examples[0][0], model)
    assert err.value.catalog_row == 14
    check_save_and_reload(dataclasses.replace(c, load_adapter=None), c.examples[0][0], model)  # a whole reload passes
