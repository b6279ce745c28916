"""syrupy snapshots: tokenized examples, prompts, LoRA layout and a golden 3-step trajectory.

Regenerate deliberately with `pytest tests/test_snapshots.py --snapshot-update`.
"""

import platform

import peft
import pytest
import torch
import transformers

from homework.sft import format_example, tokenize
from homework.text.expression_format import format_example_expression, format_example_named
from homework.text.prompt import build_prompt

CANONICAL = [("How many gram are there per 6 kg?", 6000.0), ("Convert 2.5 hours to minutes.", 150.0),
             ("What is 3 miles in km?", 4.828032), ("So 9 Metric tons would be how many LB?", 19841.6041211)]


def test_formatted_prompts_and_answers(snapshot):
    assert [{"prompt": build_prompt(q), **format_example(q, a),
             "expression_answer": format_example_expression(q, a)["answer"],
             "named_answer": format_example_named(q, a)["answer"]} for q, a in CANONICAL] == snapshot


def test_tokenized_canonical_examples(hw_tokenizer, snapshot):
    rows = [tokenize(hw_tokenizer, **fmt(q, a), max_length=64) for q, a in CANONICAL
            for fmt in (format_example, format_example_expression, format_example_named)]
    assert rows == snapshot


def test_lora_targets_and_trainable_parameters(lora_model, snapshot):
    targets = sorted({name.split(".")[-2] for name, _ in lora_model.named_modules() if name.endswith("lora_A")})
    trainable = sum(p.numel() for p in lora_model.parameters() if p.requires_grad)
    assert {"targets": targets, "trainable_parameters": trainable,
            "config_targets": sorted(lora_model.peft_config["default"].target_modules)} == snapshot


@pytest.fixture
def cpu_fp32_lora_model(lora_model, hw_placement, hw_model_spec, hw_settings):
    """The fixture's LoRA model on CPU in fp32: the session's own where that is its placement, else a fresh
    fp32 load (a bf16 model cast up would carry bf16 rounding into the weights)."""
    if (hw_placement.device.type, hw_placement.dtype) == ("cpu", torch.float32):
        return lora_model
    from peft import LoraConfig, get_peft_model

    from homework.runtime.model_source import load_pretrained

    base, _ = load_pretrained(hw_model_spec, torch.float32, torch.device("cpu"))
    torch.manual_seed(hw_settings["seed"])  # as lora_factory seeds it
    return get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", bias="none", r=4,
                                           lora_alpha=16, lora_dropout=0.0, inference_mode=False)).train()


@pytest.mark.integration
def test_golden_three_step_trajectory(train_steps, cpu_fp32_lora_model, tolerant_snapshot):
    """Seeded 3-step run in CPU fp32 -- on every runner, a CUDA one included (its CPU runs it); floats within
    an absolute and a mean tolerance, environment recorded.

    Catalog rows 1, 10, 15: a change in loss normalisation, masking or the optimizer moves these numbers.
    The CUDA path's numerics are held by the per-dtype tolerances of homework/runtime/numerics.py instead."""
    # this project's seeded sampler fixes the data order: the stock Trainer's random order differs between
    # transformers versions (4.57.6 drew other rows than 4.52.1 and 5.x), ours does not
    records = train_steps(3, model=cpu_fp32_lora_model, learning_rate=1e-3, seed=0, group_by_length=True)
    assert next(cpu_fp32_lora_model.parameters()).device.type == "cpu"
    data = {
        "loss": [r.loss for r in records],
        "grad_norm": [r.grad_norm for r in records],
        "learning_rate": [r.learning_rate for r in records],
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__, "device": "cpu/float32",
                        "python": platform.python_version()},
    }
    assert data == tolerant_snapshot


@pytest.mark.integration
def test_golden_three_step_trajectory_in_bf16_mixed_precision(train_steps, hw_model_spec, hw_settings,
                                                              bf16_tolerant_snapshot):
    """The same seeded run as the fp32 golden trajectory, as a CPU with native bf16 trains it by default: base
    weights in bf16, autocast around the forward, the adapter in fp32. Recorded apart, with its own measured
    tolerance; on a CPU that emulates bf16 (never chosen there) it is skipped, saying so."""
    from peft import LoraConfig, get_peft_model

    from homework.runtime.model_source import load_pretrained
    from homework.runtime.precision import NATIVE_BF16_FLAGS, cpu_identity

    cpu = cpu_identity()
    if not cpu.native_bf16:
        pytest.skip(f"bf16 reference: {cpu.model} has no native bf16 ({'/'.join(NATIVE_BF16_FLAGS)})")
    base, _ = load_pretrained(hw_model_spec, torch.bfloat16, torch.device("cpu"))
    for p in base.parameters():
        p.requires_grad_(False)
    torch.manual_seed(hw_settings["seed"])
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", bias="none", r=4,
                                            lora_alpha=16, lora_dropout=0.0, inference_mode=False)).train()
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    records = train_steps(3, model=model, learning_rate=1e-3, seed=0, group_by_length=True, bf16=True)
    data = {
        "loss": [r.loss for r in records],
        "grad_norm": [r.grad_norm for r in records],
        "learning_rate": [r.learning_rate for r in records],
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__, "device": "cpu/bfloat16 (autocast)", "cpu": cpu.model,
                        "native_bf16": list(cpu.native_bf16), "python": platform.python_version()},
    }
    assert data == bf16_tolerant_snapshot
