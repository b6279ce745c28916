"""The project's own SFT contract is the shipped recipe: the kit's whole battery passes on it (on a tiny random
Llama with the real tokenizer, so it runs in the fast tier), and each part of the contract is the part
`python -m homework.sft train` uses -- the answer format, the tokenization, the adapter, the trainer."""

import pytest
import torch

from homework.tools.project_contract import BATCH, EXAMPLES, contract
from sft_contract.checks import CHECKS


@pytest.fixture
def tiny_contract(tiny_model_dir):
    # built in each test (a fraction of a second on the tiny model), not once per module: mutmut maps a function
    # to the tests that call it, and a module-scoped fixture would map `contract` to the first test alone
    return contract(model=str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize("check", CHECKS, ids=str)
def test_the_kits_battery_passes_on_the_shipped_recipe(check, tiny_contract):
    check(tiny_contract, examples=3)


def test_the_project_contract_is_the_shipped_recipe(tiny_contract, tiny_model_dir):
    from homework.data import Dataset
    from homework.runtime.errors import DataError
    from homework.runtime.numerics import tolerance_for
    from homework.text.formats import answer_formatter
    from homework.text.prompt import build_prompt
    from homework.text.tokenization import tokenize_row
    from homework.training.config import TrainConfig

    c, cfg = tiny_contract, TrainConfig()
    fmt = answer_formatter(cfg.answer_format)
    rows = Dataset(cfg.train_file).data[:EXAMPLES]
    assert list(c.examples) == [(fmt(q, a)["question"], fmt(q, a)["answer"]) for q, a in rows]
    assert c.learning_rate == cfg.learning_rate and c.batch_size == BATCH < cfg.batch_size
    assert c.steps == 3 and c.name == "homework (shipped default recipe)"
    known = tolerance_for(torch.float32)
    assert (c.tolerance.logits_atol, c.tolerance.greedy_margin, c.tolerance.loss_rel) == \
        (known.logits_atol, known.greedy_margin, known.loss_rel)
    question, answer = c.examples[0]
    assert c.tokenize(question, answer) == tokenize_row(c.tokenizer, question, answer, max_length=cfg.max_length,
                                                        pad=False).as_dict()
    assert c.format_prompt(question) == build_prompt(question)
    with pytest.raises(DataError, match="max_length"):  # as training refuses a row its answer does not fit in
        c.tokenize(question, " 1" * cfg.max_length)
    batch = c.collate([c.tokenize(q, a) for q, a in c.examples[:2]])
    assert batch["labels"].shape == batch["input_ids"].shape and (batch["labels"] == -100).any()


def test_the_contracts_models_are_the_shipped_adapter_seeded_on_an_untouched_base(tiny_contract):
    from homework.training.config import TrainConfig

    cfg = TrainConfig()
    a, b = tiny_contract.make_model(), tiny_contract.make_model()
    lora_a = {n: p for n, p in a.named_parameters() if "lora_A" in n}
    assert lora_a and all(torch.equal(p, dict(b.named_parameters())[n]) for n, p in lora_a.items())
    layers = sorted({int(n.split(".layers.")[1].split(".")[0]) for n in lora_a})
    assert layers == list(range(16 - cfg.lora_layers, 16))
    assert next(iter(lora_a.values())).shape[0] == cfg.lora_rank
    assert all(p.requires_grad == ("lora_" in n) for n, p in a.named_parameters())
    base = tiny_contract.make_base_model()
    assert not any("lora" in n for n, _ in base.named_modules()), "the base model carries an adapter"
    other = tiny_contract.make_base_model()
    assert all(p is not q for p, q in zip(base.parameters(), other.parameters())), "two base models share weights"
    assert not any(p.requires_grad for p in base.parameters()), "the base model's weights would train"


def test_the_contracts_trainer_is_the_shipped_trainer_with_the_battery_schedule(tiny_contract, tmp_path):
    from homework.training.health import HealthGuard
    from homework.training.trainer import SupervisedTrainer

    c = tiny_contract
    model = c.make_model()
    rows = [c.tokenize(q, a) for q, a in c.examples[:4]]
    trainer = c.make_trainer(model, rows, str(tmp_path), 2)
    assert isinstance(trainer, SupervisedTrainer)
    args = trainer.args
    assert (args.output_dir, args.max_steps, args.learning_rate, args.per_device_train_batch_size, args.warmup_steps,
            args.save_strategy, args.disable_tqdm) == (str(tmp_path), 2, c.learning_rate, BATCH, 0, "no", True)
    guard, = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, HealthGuard)]
    assert guard.stop is False, "the battery reads a bad run's records; a guard that stops it hides the cause"
    assert trainer.group_by_length is True  # on CPU, as the shipped recipe
    trainer.train()
    assert not any(tmp_path.iterdir()), "the battery's trainer saved something"
    prompts = [c.format_prompt(q) for q, _ in c.examples[:2]]
    short, longer = c.generate(model, prompts, 3), c.generate(model, prompts, 12)
    assert len(short) == 2 and all(isinstance(t, str) for t in short)
    # greedy: the longer generation continues the shorter one, so the token limit reached the generator
    assert all(b.startswith(a) for a, b in zip(short, longer)) and any(len(a) < len(b) for a, b in zip(short, longer))


def test_the_contract_loads_on_the_device_it_is_given(tiny_model_dir):
    from homework.runtime.errors import HomeworkError

    if torch.cuda.is_available():
        pytest.skip("the refusal needs a machine without CUDA")
    with pytest.raises(HomeworkError, match="cuda"):
        contract(model=str(tiny_model_dir), device="cuda")


def test_the_doctors_reload_check_fails_a_reload_that_loses_one_layers_adapter(tiny_contract):
    """`doctor`'s save/reload check is the kit's, with this project's bound (homework/runtime/numerics.py). A reload
    that loses one layer's adapter of the fifteen -- a change of a few thousandths, small beside the logits, as
    after a few real steps -- must fail it, naming catalog row 14 (the whole reload passes: the battery's check)."""
    import copy
    import dataclasses

    from peft import PeftModel

    from sft_contract import ContractViolation
    from sft_contract.contract import check_save_and_reload

    c = tiny_contract
    model = c.make_model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # as a few steps would leave them: nonzero, small
                p.copy_(torch.randn(p.shape, generator=gen) * 1e-4)
    layers = sorted({int(n.split(".layers.")[1].split(".")[0]) for n, _ in model.named_parameters() if "lora_B" in n})
    lost_layer = f".layers.{layers[len(layers) // 2]}."

    def losing_one_layer(reloaded):
        with torch.no_grad():
            for name, p in reloaded.named_parameters():
                if lost_layer in name and "lora_B" in name:
                    p.zero_()
        return reloaded

    question = c.examples[0][0]
    ids = torch.tensor([c.encode_prompt(question)])
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        gap = float((losing_one_layer(copy.deepcopy(model))(input_ids=ids).logits - trained).abs().max())
    assert gap < 1e-2 * float(trained.abs().max()), gap  # small beside the logits: a relative bound would pass it
    lossy = dataclasses.replace(c, load_adapter=lambda base, path: losing_one_layer(PeftModel.from_pretrained(base, path)))
    with pytest.raises(ContractViolation, match=r"^the reloaded adapter's logits differ") as err:
        check_save_and_reload(lossy, question, model)
    assert err.value.catalog_row == 14, gap
