"""Putting LoRA adapters on a model: which linear layers, and the fused forward (fused_lora.py)."""

from __future__ import annotations

import re

from ..runtime.errors import HomeworkError


def lora_target_modules(model, last_layers: int | None):
    """LoRA targets: every linear layer of the decoder ("all-linear"), or those of its last N layers only.

    With the first layers frozen whole, backpropagation stops at the lowest adapted layer, so those
    layers cost one forward pass instead of a forward and a backward. The decoder layers are the
    model's longest ModuleList (`model.layers` in Llama-style models).
    """
    if last_layers is None:
        return "all-linear"
    import torch

    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        raise HomeworkError(f"--lora-layers {last_layers}: {type(model).__name__} has no list of decoder layers; "
                            f"pass --lora-layers all")
    prefix, layers = max(lists, key=lambda item: len(item[1]))
    if not 1 <= last_layers <= len(layers):
        raise HomeworkError(f"--lora-layers {last_layers}: the model has {len(layers)} decoder layers; "
                            f"pass a number from 1 to {len(layers)}, or all")
    first = len(layers) - last_layers
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    targets = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and (m := pattern.match(name)) and int(m.group(1)) >= first]
    if not targets:
        raise HomeworkError(f"--lora-layers {last_layers}: no nn.Linear in {prefix}; pass --lora-layers all")
    return targets


def build_lora_model(model, cfg):
    """`model` with LoRA adapters as `cfg` (a TrainConfig) lays them out; fused unless cfg.fused_lora is False."""
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(model, cfg.lora_layers)
    lora = LoraConfig(task_type="CAUSAL_LM", target_modules=targets, bias="none", r=cfg.lora_rank,
                      lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, inference_mode=False)
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as exc:
        raise HomeworkError(f"LoRA could not attach to the model: {exc}") from exc
    if cfg.fused_lora:
        from .fused_lora import fuse_lora_layers

        fuse_lora_layers(peft_model)
    return peft_model
