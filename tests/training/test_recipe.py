"""The one recipe: 3 real optimizer steps of exactly what `python -m homework.sft train` trains (issue 14)."""

import pytest
import torch

from homework.training.config import TrainConfig
from homework.training.recipe import build_recipe, training_arguments, use_gradient_checkpointing
from tests.conftest import random_llama


@pytest.mark.integration
@pytest.mark.smoke
@pytest.mark.timeout(600)
def test_three_steps_of_the_shipped_recipe_are_healthy_and_move_only_the_adapter(hw_base_model, hw_tokenizer,
                                                                                 hw_placement, tmp_path):
    """Catalog rows 1, 2, 8, 15 on the shipped default recipe: its LoRA layout, answer format, fused layers,
    sampler, trainer and TrainingArguments; only the schedule is shortened (3 steps of 4 rows, no warm-up)."""
    import copy

    from homework.base_llm import BaseLLM
    from homework.training.fused_lora import FUSED_ATTR
    from homework.training.health import step_problem
    from homework.training.sampling import LengthGroupedSampler
    from homework.training.trainer import SupervisedTrainer

    # shortened: 3 steps of 4 rows (the batch size is a schedule setting, like the warm-up)
    cfg = TrainConfig(limit=12, batch_size=4, max_steps=3, warmup_steps=0, save_steps=0, evaluate=False,
                      progress=False)
    shipped = TrainConfig()
    llm = BaseLLM.from_components(hw_base_model, hw_tokenizer, hw_placement)
    recipe = build_recipe(cfg, tmp_path, llm=llm, base_model=copy.deepcopy(hw_base_model))
    # it is the shipped recipe: the defaults' layout, format, fused layers, trainer and device-class sampler
    assert isinstance(recipe.trainer, SupervisedTrainer)
    assert sum(bool(getattr(m, FUSED_ATTR, False)) for m in recipe.model.modules()) == 7 * shipped.lora_layers
    assert recipe.model.peft_config["default"].r == shipped.lora_rank
    assert all("*" in a for a in recipe.dataset.answers)  # the expression answer format
    sampler = recipe.trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler) == hw_placement.groups_by_length
    before = {n: p.detach().clone() for n, p in recipe.model.named_parameters()}
    trainable = {n for n, p in recipe.model.named_parameters() if p.requires_grad}
    recipe.trainer.train()
    records = recipe.guard.records
    assert len(records) == 3
    for r in records:
        assert step_problem(r) is None, step_problem(r)
        assert r.loss > 0 and torch.isfinite(torch.tensor(r.grad_norm)) and r.grad_norm > 0
    after = dict(recipe.model.named_parameters())
    unmoved = [n for n in trainable if torch.equal(before[n], after[n].detach())]
    assert trainable and not unmoved, f"{len(unmoved)} adapter tensors never moved, e.g. {unmoved[:2]}"
    changed = [n for n in before if n not in trainable and not torch.equal(before[n], after[n].detach())]
    assert not changed, f"frozen weights changed: {changed[:3]}"


@pytest.mark.integration
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_three_steps_in_the_precision_this_machine_chooses_are_healthy(monkeypatch, tmp_path):
    """What `python -m homework.sft train` does here, unpinned: bf16 mixed precision on a CPU with native bf16
    that measures it faster (the base weights in bf16, the adapter in fp32), fp32 elsewhere. Either way three
    steps are healthy and move every adapter tensor."""
    from homework.runtime.device import resolve_placement
    from homework.training.health import step_problem

    monkeypatch.delenv("HOMEWORK_PRECISION", raising=False)
    chosen = resolve_placement("cpu", training=True)
    cfg = TrainConfig(limit=8, batch_size=4, max_steps=3, warmup_steps=0, save_steps=0, evaluate=False,
                      progress=False, device="cpu")
    recipe = build_recipe(cfg, tmp_path)
    assert recipe.placement == chosen and chosen.reason in recipe.describe()
    frozen = {p.dtype for p in recipe.model.parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in recipe.model.named_parameters() if p.requires_grad}
    assert frozen == {chosen.dtype} and {p.dtype for p in trainable.values()} == {torch.float32}
    assert recipe.trainer.args.bf16 == chosen.bf16
    recipe.trainer.train()
    assert len(recipe.guard.records) == 3 and not [step_problem(r) for r in recipe.guard.records if step_problem(r)]
    after = dict(recipe.model.named_parameters())
    assert not [n for n, p in trainable.items() if torch.equal(p, after[n].detach())]


def test_training_arguments_come_from_one_function(hw_placement, tmp_path):
    """Every trainer of the project is given these arguments; the NaN filter is off in all of them."""
    args = training_arguments(TrainConfig(max_steps=3, save_steps=0), tmp_path, hw_placement)
    assert args.logging_nan_inf_filter is False and args.logging_steps == 1 and args.max_steps == 3
    assert args.save_strategy == "no" and args.bf16 == hw_placement.bf16


# --------------------------------------------------------------------------- the recipe's decisions (fast)
# On a tiny random Llama with the project's tokenizer: no model files are loaded.

def _cpu(dtype=torch.float32):
    from homework.runtime.device import Placement

    return Placement(torch.device("cpu"), dtype)


@pytest.fixture
def tiny_llm(hw_tokenizer):
    from homework.base_llm import BaseLLM

    model = random_llama(len(hw_tokenizer), layers=2, max_position_embeddings=256)
    for p in model.parameters():
        p.requires_grad_(False)
    return BaseLLM.from_components(model, hw_tokenizer, _cpu())


def test_training_arguments_carry_every_option_of_the_config(tmp_path):
    cfg = TrainConfig(batch_size=3, grad_accum=2, epochs=2.0, max_steps=7, learning_rate=1e-3, lr_scheduler="linear",
                      warmup_steps=2, weight_decay=0.1, save_steps=5, seed=11, progress=False)
    args = training_arguments(cfg, tmp_path / "ckpt", _cpu())
    assert args.output_dir == str(tmp_path / "ckpt")
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.num_train_epochs) == (3, 2, 2.0)
    assert (args.max_steps, args.learning_rate, args.lr_scheduler_type, args.warmup_steps) == (7, 1e-3, "linear", 2)
    assert (args.weight_decay, args.seed, args.data_seed) == (0.1, 11, 11)
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", 5, 2)
    # every step logged, and a NaN never hidden behind a running mean (catalog row 1)
    assert (args.logging_steps, args.logging_nan_inf_filter) == (1, False)
    assert (args.bf16, args.use_cpu, args.disable_tqdm, args.report_to) == (False, True, True, [])
    assert (args.dataloader_num_workers, args.remove_unused_columns) == (0, False)
    assert (args.average_tokens_across_devices, args.ddp_find_unused_parameters) == (True, False)
    assert args.gradient_checkpointing is False


def test_training_arguments_follow_checkpointing_saving_progress_and_precision(tmp_path):
    args = training_arguments(TrainConfig(save_steps=0, progress=True), tmp_path, _cpu(torch.bfloat16), True)
    assert (args.save_strategy, args.disable_tqdm, args.bf16) == ("no", False, True)
    assert args.gradient_checkpointing is True and args.gradient_checkpointing_kwargs == {"use_reentrant": False}


@pytest.mark.parametrize("setting, expected", [("on", True), ("true", True), (True, True), ("off", False),
                                               ("false", False), (False, False), ("auto", True)])
def test_gradient_checkpointing_as_set_even_on_a_small_gpu(monkeypatch, setting, expected):
    from types import SimpleNamespace

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=2**30))
    small_gpu = SimpleNamespace(device=torch.device("cuda", 0))
    assert use_gradient_checkpointing(SimpleNamespace(gradient_checkpointing=setting), small_gpu) is expected


def test_gradient_checkpointing_is_off_automatically_on_a_cpu():
    assert use_gradient_checkpointing(TrainConfig(), _cpu()) is False
    assert use_gradient_checkpointing(TrainConfig(gradient_checkpointing="on"), _cpu()) is True


@pytest.mark.parametrize("memory, expected", [(4 * 2**30, True), (8 * 2**30 - 1, True), (8 * 2**30, False),
                                              (80 * 2**30, False)])
def test_gradient_checkpointing_is_on_automatically_only_on_a_gpu_under_8_gib(monkeypatch, memory, expected):
    from types import SimpleNamespace

    gpu = torch.device("cuda", 1)
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: asked.append(device) or SimpleNamespace(total_memory=memory))
    assert use_gradient_checkpointing(TrainConfig(), SimpleNamespace(device=gpu)) is expected
    assert asked == [gpu]
    assert use_gradient_checkpointing(TrainConfig(gradient_checkpointing="off"), SimpleNamespace(device=gpu)) is False


def test_the_stock_trainer_cannot_train_packed_rows(tiny_llm, tmp_path):
    from homework.training.recipe import build_trainer

    args = training_arguments(TrainConfig(max_steps=1, save_steps=0), tmp_path, _cpu())
    with pytest.raises(ValueError, match=r"^the stock Trainer cannot train packed batches: use packing with "
                                         r"plain=False$"):
        build_trainer(tiny_llm.model, args, [], None, guard=None, plain=True, packing=True)


def test_few_steps_trainer_trains_at_a_constant_rate_on_the_models_device(tiny_llm, tmp_path):
    from transformers import Trainer

    from homework.training.health import HealthGuard
    from homework.training.recipe import few_steps_trainer
    from homework.training.trainer import SupervisedTrainer

    guard, extra = HealthGuard(), object()
    trainer = few_steps_trainer(tiny_llm.model, ["row"], "collator", tmp_path, 5, guard=guard, learning_rate=0.0,
                                batch_size=3, grad_accum=2, seed=7, group_by_length=True)
    args = trainer.args
    assert isinstance(trainer, SupervisedTrainer) and trainer.health_guard is guard and trainer.group_by_length
    assert guard in trainer.callback_handler.callbacks and extra not in trainer.callback_handler.callbacks
    assert (trainer.train_dataset, trainer.data_collator) == (["row"], "collator")
    assert args.output_dir == str(tmp_path) and (args.max_steps, args.learning_rate) == (5, 0.0)  # a rate of 0 too
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.seed) == (3, 2, 7)
    assert (args.lr_scheduler_type, args.warmup_steps, args.save_strategy) == ("constant", 0, "no")
    assert (args.bf16, args.use_cpu, args.disable_tqdm, args.gradient_checkpointing) == (False, True, True, False)
    warm = few_steps_trainer(tiny_llm.model, ["row"], "collator", tmp_path, 5, guard=guard, learning_rate=1e-3,
                             batch_size=3, warmup_steps=2, bf16=True, gradient_checkpointing=True, plain=True)
    assert type(warm) is Trainer and guard in warm.callback_handler.callbacks
    assert (warm.train_dataset, warm.data_collator) == (["row"], "collator")
    assert (warm.args.lr_scheduler_type, warm.args.warmup_steps) == ("constant_with_warmup", 2)
    assert (warm.args.bf16, warm.args.gradient_checkpointing, warm.args.learning_rate) == (True, True, 1e-3)
    assert (warm.args.gradient_accumulation_steps, warm.args.seed) == (1, 0)
    assert few_steps_trainer(tiny_llm.model, [], "c", tmp_path, 1, guard=guard, learning_rate=1e-3,
                             batch_size=1).group_by_length is False
    with pytest.raises(ValueError, match="stock Trainer cannot train packed batches"):
        few_steps_trainer(tiny_llm.model, [], "c", tmp_path, 1, guard=guard, learning_rate=1e-3, batch_size=1,
                          plain=True, packing=True)


def _rows_file(tmp_path, n=6):
    import json

    path = tmp_path / "rows.json"
    path.write_text(json.dumps([[f"How many gram are in {i + 1}{' big' * i} kilogram?", 1000.0 * (i + 1)]
                                for i in range(n)]))
    return str(path)


def test_the_training_split_is_the_first_limit_rows(tmp_path):
    from homework.training.recipe import training_split

    path = _rows_file(tmp_path)
    assert len(training_split(TrainConfig(train_file=path)).data) == 6
    assert [a for _, a in training_split(TrainConfig(train_file=path, limit=2)).data] == [1000.0, 2000.0]


def test_tokenized_rows_follow_the_answer_format_and_the_row_faults(hw_tokenizer, tmp_path, monkeypatch):
    from homework.text.tokenization import IGNORE_INDEX
    from homework.training.recipe import tokenized_rows

    path = _rows_file(tmp_path)
    rows = tokenized_rows(TrainConfig(train_file=path, limit=2, answer_format="number"), hw_tokenizer)
    assert len(rows) == 2 and rows.answers == ["<answer>1000</answer>", "<answer>2000</answer>"]
    assert hw_tokenizer.eos_token_id in rows[0]["labels"]
    assert len(rows[0]["input_ids"]) < len(rows[1]["input_ids"]) < 64  # ragged: padded later, per batch
    monkeypatch.setenv("HOMEWORK_FAULT", "eos_masked")
    named = tokenized_rows(TrainConfig(train_file=path, limit=1), hw_tokenizer)  # the default format: named
    assert named.answers == ["mass: kilogram to gram: <answer>1 * 1000 / 1</answer>"]
    from homework.data import Dataset

    (tmp_path / "given").mkdir()
    given = Dataset(_rows_file(tmp_path / "given", n=3))
    assert len(tokenized_rows(TrainConfig(train_file=path), hw_tokenizer, given)) == 3  # the rows given, not the file
    masked = tokenized_rows(TrainConfig(train_file=path, answer_format="number"), hw_tokenizer)
    assert len(masked) == 6 and hw_tokenizer.eos_token_id not in masked[0]["labels"]
    assert any(t != IGNORE_INDEX for t in masked[0]["labels"])


def test_tokenized_rows_refuse_a_row_longer_than_max_length(hw_tokenizer, tmp_path):
    from homework.runtime.errors import DataError
    from homework.training.recipe import tokenized_rows

    with pytest.raises(DataError, match=r"6 row\(s\) cannot fit their answer in max_length=8"):
        tokenized_rows(TrainConfig(train_file=_rows_file(tmp_path), max_length=8), hw_tokenizer)


def _tiny_cfg(tmp_path, **options):
    return TrainConfig(**{**dict(train_file=_rows_file(tmp_path), limit=4, batch_size=2, max_steps=1, save_steps=0,
                                 lora_rank=4, lora_alpha=8, lora_layers=1, answer_format="number", progress=False),
                          **options})


def test_build_recipe_puts_the_adapter_rows_collator_and_trainer_together(tiny_llm, tmp_path, monkeypatch):
    from homework.runtime import allocator
    from homework.training.collate import DynamicPaddingCollator
    from homework.training.health import HealthGuard
    from homework.training.trainer import SupervisedTrainer

    kept = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: kept.append(1))
    callback = HealthGuard()
    cfg = _tiny_cfg(tmp_path, seed=3)
    recipe = build_recipe(cfg, tmp_path / "ckpt", llm=tiny_llm, callbacks=[callback])
    assert kept == [1]  # on a CPU: freed activation memory is kept for the next step
    assert (recipe.config, recipe.llm, recipe.placement) == (cfg, tiny_llm, tiny_llm.placement)
    assert len(recipe.dataset) == 4 and recipe.dataset.answers[0] == "<answer>1000</answer>"
    assert recipe.model.peft_config["default"].r == 4 and recipe.model.get_base_model() is tiny_llm.model
    assert recipe.trainable_parameters() == sum(p.numel() for n, p in recipe.model.named_parameters() if "lora_" in n)
    assert all(".layers.1." in n for n, p in recipe.model.named_parameters() if p.requires_grad)
    collator = recipe.collator
    assert type(collator) is DynamicPaddingCollator and collator.refuse_unsupervised
    assert collator.pad_token_id == tiny_llm.tokenizer.pad_token_id
    trainer = recipe.trainer
    assert isinstance(trainer, SupervisedTrainer) and trainer.train_dataset is recipe.dataset
    assert trainer.data_collator is collator and trainer.health_guard is recipe.guard
    assert recipe.guard in trainer.callback_handler.callbacks and callback in trainer.callback_handler.callbacks
    assert trainer.args.output_dir == str(tmp_path / "ckpt") and (trainer.args.max_steps, trainer.args.seed) == (1, 3)
    assert isinstance(recipe.guard, HealthGuard) and recipe.guard.verbose_epochs is False
    # the CPU defaults: length-grouped batches, no gradient checkpointing
    assert recipe.group_by_length is True and trainer.group_by_length is True and recipe.use_checkpointing is False


def test_the_adapter_initialisation_follows_the_seed(tiny_llm, tmp_path):
    def lora_a(seed):
        model = build_recipe(_tiny_cfg(tmp_path, seed=seed), tmp_path, llm=tiny_llm,
                             base_model=copy.deepcopy(tiny_llm.model)).model
        return next(p for n, p in model.named_parameters() if "lora_A" in n).detach().clone()

    import copy

    assert torch.equal(lora_a(1), lora_a(1)) and not torch.equal(lora_a(1), lora_a(2))


def test_build_recipe_follows_its_switches(tiny_llm, tmp_path, monkeypatch):
    import copy

    from homework.training.packing import PackingCollator

    base = copy.deepcopy(tiny_llm.model)
    rows = ["given rows"]
    cfg = _tiny_cfg(tmp_path, packing=True, group_by_length=False, gradient_checkpointing="on", progress=True)
    from homework.runtime import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # several processes: the guard stops a bad batch
    cfg.train_file = str(tmp_path / "no-such-file.json")  # rows given: the file is not read
    recipe = build_recipe(cfg, tmp_path, llm=tiny_llm, base_model=base, dataset=rows)
    assert recipe.model.get_base_model() is base and recipe.dataset is rows and recipe.trainer.train_dataset is rows
    assert type(recipe.collator) is PackingCollator and recipe.collator.refuse_unsupervised is False
    assert recipe.group_by_length is False and recipe.trainer.group_by_length is False
    assert recipe.use_checkpointing is True and recipe.trainer.args.gradient_checkpointing is True
    assert recipe.guard.verbose_epochs is True
    assert base.get_input_embeddings()._forward_hooks  # the inputs require grad (catalog row 8)
    padded = build_recipe(_tiny_cfg(tmp_path), tmp_path, llm=tiny_llm, base_model=copy.deepcopy(tiny_llm.model))
    assert type(padded.collator).__name__ == "DynamicPaddingCollator" and padded.collator.refuse_unsupervised is False
    monkeypatch.setattr(distributed, "world_size", lambda: 1)
    padded = build_recipe(_tiny_cfg(tmp_path), tmp_path, llm=tiny_llm, base_model=copy.deepcopy(tiny_llm.model))
    assert padded.collator.refuse_unsupervised is True


def test_build_recipe_loads_the_configured_model_on_the_configured_device(tiny_llm, tmp_path, monkeypatch):
    from homework import base_llm

    loaded = []
    monkeypatch.setattr(base_llm, "BaseLLM", lambda *a, **k: loaded.append((a, k)) or tiny_llm)
    recipe = build_recipe(_tiny_cfg(tmp_path, model="/models/mine", device="cpu", precision="bf16"), tmp_path)
    assert loaded == [(("/models/mine", "cpu", "bf16"), {"training": True})] and recipe.llm is tiny_llm


def test_build_recipe_applies_the_config_and_model_faults(tiny_llm, tmp_path, monkeypatch):
    import copy

    monkeypatch.setenv("HOMEWORK_FAULT", "zero_lr,frozen_adapter")
    recipe = build_recipe(_tiny_cfg(tmp_path), tmp_path, llm=tiny_llm, base_model=copy.deepcopy(tiny_llm.model))
    assert recipe.config.learning_rate == 0.0 and recipe.trainer.args.learning_rate == 0.0
    assert recipe.trainable_parameters() == 0


def test_a_bad_training_file_fails_before_any_model_loads(tmp_path, monkeypatch):
    from homework import base_llm
    from homework.runtime.errors import DataError

    bad = tmp_path / "bad.json"
    bad.write_text('[["How many g in 1 kg?", "a thousand"]]')
    monkeypatch.setattr(base_llm, "BaseLLM", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(DataError, match="not a number"):
        build_recipe(TrainConfig(train_file=str(bad)), tmp_path)


def _described(**options):
    from types import SimpleNamespace

    from homework.training.recipe import Recipe

    config = TrainConfig(**{**dict(batch_size=4, lora_rank=8, lora_alpha=16, lora_layers=2), **options})
    model = torch.nn.Linear(10, 100)  # 1,100 parameters, 1,000 of them trainable
    model.bias.requires_grad_(False)
    spec = options.pop("spec", SimpleNamespace(describe=lambda: "tiny (test)"))
    llm = SimpleNamespace(model_spec=spec, placement=_cpu())
    return Recipe(config, llm, model, [1, 2, 3], None, None, None, use_checkpointing=False, group_by_length=True)


def test_describe_names_model_device_rows_batch_adapter_and_switches(monkeypatch):
    from homework.runtime import distributed

    assert _described().describe() == (
        "model tiny (test) on cpu/float32; 3 rows in batch 4; LoRA r=8 alpha=16 on the last 2 layers: "
        "1,000 trainable parameters; gradient checkpointing off; length-grouped batches on")
    recipe = _described(grad_accum=2, lora_layers=None, packing=True)
    recipe.llm.model_spec, recipe.use_checkpointing, recipe.group_by_length = None, True, False
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert recipe.describe() == (
        "model ? on cpu/float32; 3 rows in 2 processes x batch 4 x accumulation 2; LoRA r=8 alpha=16 on every layer: "
        "1,000 trainable parameters; gradient checkpointing on; length-grouped batches off; rows packed without padding")


def test_preflight_passes_healthy_rows_and_refuses_unsupervised_ones(tiny_llm, tmp_path, monkeypatch):
    import copy
    import warnings

    from homework.runtime.errors import PreflightError
    from homework.training.recipe import run_preflight

    cfg = _tiny_cfg(tmp_path)
    healthy = build_recipe(cfg, tmp_path, llm=tiny_llm, base_model=copy.deepcopy(tiny_llm.model))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_preflight(healthy) == []
    assert not [w for w in caught if "pre-flight" in str(w.message)]
    monkeypatch.setenv("HOMEWORK_FAULT", "labels_all_masked")
    recipe = build_recipe(cfg, tmp_path, llm=tiny_llm, base_model=copy.deepcopy(tiny_llm.model))
    with pytest.raises(PreflightError, match=rf"rows with no supervised token[\s\S]*{cfg.train_file}:0"):
        run_preflight(recipe)


@pytest.mark.parametrize("fault, words", [("frozen_adapter", "no trainable parameters"),
                                          ("half_precision", "trainable parameters are not fp32")])
def test_preflight_refuses_a_model_that_cannot_train(tiny_llm, tmp_path, monkeypatch, fault, words):
    import copy

    from homework.runtime.errors import PreflightError
    from homework.training.recipe import run_preflight

    monkeypatch.setenv("HOMEWORK_FAULT", fault)
    recipe = build_recipe(_tiny_cfg(tmp_path), tmp_path, llm=tiny_llm, base_model=copy.deepcopy(tiny_llm.model))
    with pytest.raises(PreflightError, match=words):
        run_preflight(recipe)


def test_preflight_scans_the_recipes_rows_model_and_device_and_warns_of_what_it_lets_pass(monkeypatch):
    import warnings
    from types import SimpleNamespace

    from homework.training import health
    from homework.training.recipe import run_preflight

    scans = []
    warning = health.Finding("warning", "a doubtful row", "why it is doubtful", [1])
    monkeypatch.setattr(health, "preflight_scan", lambda *args, **kwargs: scans.append((args, kwargs)) or [warning])
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    dataset = SimpleNamespace(source="given.json", questions=["q"], answers=["a"])
    recipe = SimpleNamespace(dataset=dataset, model=model, llm=SimpleNamespace(tokenizer="tok", placement=_cpu()),
                             config=TrainConfig(train_file="configured.json"))
    recipe.placement = recipe.llm.placement
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_preflight(recipe) == [warning]
    assert scans == [(("tok", dataset), dict(model=model, device=torch.device("cpu"), dtype=torch.bfloat16,
                                              source="given.json", questions=["q"], answers=["a"]))]
    [shown] = [w for w in caught if "pre-flight" in str(w.message)]
    assert str(shown.message) == "pre-flight: " + health.format_findings([warning], "given.json")
    recipe.dataset = [{"input_ids": [1], "labels": [1]}]  # plain rows: the configured file names them
    run_preflight(recipe)
    assert scans[-1][1]["source"] == "configured.json" and scans[-1][1]["questions"] is None
    assert scans[-1][1]["answers"] is None
