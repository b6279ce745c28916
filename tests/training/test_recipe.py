"""The one recipe: 3 real optimizer steps of exactly what `python -m homework.sft train` trains (issue 14)."""

import pytest
import torch

from homework.training.config import TrainConfig
from homework.training.recipe import build_recipe, training_arguments

pytestmark = pytest.mark.integration


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


def test_training_arguments_come_from_one_function(hw_placement, tmp_path):
    """Every trainer of the project is given these arguments; the NaN filter is off in all of them."""
    args = training_arguments(TrainConfig(max_steps=3, save_steps=0), tmp_path, hw_placement)
    assert args.logging_nan_inf_filter is False and args.logging_steps == 1 and args.max_steps == 3
    assert args.save_strategy == "no" and args.bf16 == hw_placement.bf16
