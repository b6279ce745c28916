"""`--lora-layers N` (homework.training.lora.lora_target_modules): LoRA on the last N decoder layers only, so
backpropagation stops at the lowest adapted layer. On a tiny random Llama: fast, no model files."""

import pytest
import torch

from homework.runtime.errors import HomeworkError
from homework.training.config import TrainConfig, saved_train_config
from homework.training.lora import build_lora_model, lora_target_modules
from tests.conftest import random_llama

N_LAYERS = 4


@pytest.fixture
def tiny_llama():
    model = random_llama(64, layers=N_LAYERS, hidden=16, max_position_embeddings=32)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def layer_of(name: str) -> int:
    return int(name.split("layers.")[1].split(".")[0])


@pytest.mark.parametrize("last", [1, 2, N_LAYERS])
def test_targets_are_every_linear_of_the_last_layers_and_nothing_else(tiny_llama, last):
    targets = lora_target_modules(tiny_llama, last)
    linears = [n for n, m in tiny_llama.named_modules() if isinstance(m, torch.nn.Linear) and "layers." in n]
    naive = [n for n in linears if layer_of(n) >= N_LAYERS - last]  # the oracle: filter by layer index
    assert targets == naive and len(targets) == 7 * last  # q, k, v, o, gate, up, down per layer
    assert "lm_head" not in " ".join(targets)


def test_unset_means_all_linear(tiny_llama):
    assert lora_target_modules(tiny_llama, None) == "all-linear"


@pytest.mark.parametrize("last", [0, -1, N_LAYERS + 1])
def test_a_layer_count_the_model_does_not_have_is_a_clear_error(tiny_llama, last):
    with pytest.raises(HomeworkError, match=rf"--lora-layers {last}: the model has {N_LAYERS} decoder layers"):
        lora_target_modules(tiny_llama, last)


def test_a_model_without_a_layer_list_is_a_clear_error():
    with pytest.raises(HomeworkError, match="no list of decoder layers; pass --lora-layers all"):
        lora_target_modules(torch.nn.Sequential(torch.nn.Linear(4, 4)), 1)


@pytest.mark.parametrize(("text", "parsed"), [("all", None), ("15", 15)])
def test_the_cli_takes_a_count_or_all(text, parsed):
    from homework.tools.cli import build_parser

    assert build_parser().parse_args(["train", "--lora-layers", text]).lora_layers == parsed


def test_the_cli_refuses_anything_else(capsys):
    from homework.tools.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--lora-layers", "top"])
    assert "--lora-layers: expected an integer and >= 1 or 'all', got 'top'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # layer 2: no input needs a gradient
@pytest.mark.parametrize("fused", [True, False])
def test_backward_reaches_the_adapted_layers_only_and_trains_them(tiny_llama, fused):
    model = build_lora_model(tiny_llama, TrainConfig(lora_layers=2, lora_rank=4, lora_alpha=8, fused_lora=fused))
    adapted = {layer_of(n) for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {2, 3}
    for name, p in model.named_parameters():  # lora_B starts at zero; give the LoRA path a say in the loss
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    reached = set()
    for i, layer in enumerate(model.get_base_model().model.layers):
        layer.register_full_backward_hook(lambda module, gin, gout, i=i: reached.add(i))
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids, labels=ids).loss.backward()
    assert reached == {2, 3}  # layers 0 and 1 ran forward only
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads.values())


def test_resume_keeps_the_layout_a_checkpoint_was_written_with(tmp_path):
    import dataclasses
    import json

    path = tmp_path / "train_config.json"
    written = dataclasses.asdict(TrainConfig(lora_layers=7, lora_rank=8))
    path.write_text(json.dumps(written))
    assert saved_train_config(path)[0].lora_layers == 7
    del written["lora_layers"]  # a config from before --lora-layers: that run adapted every layer
    path.write_text(json.dumps(written))
    resumed, run_id = saved_train_config(path)
    assert resumed.lora_layers is None and resumed.lora_rank == 8 and run_id is None


def test_the_adapter_is_laid_out_as_the_options_say(tiny_llama):
    # the options that shape the adapter reach peft's config and the layers (alpha / r is the update's scale)
    cfg = TrainConfig(lora_layers=1, lora_rank=4, lora_alpha=12, lora_dropout=0.25, fused_lora=False)
    model = build_lora_model(tiny_llama, cfg)
    lora = model.peft_config["default"]
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias) == (4, 12, 0.25, "none")
    assert str(lora.task_type).endswith("CAUSAL_LM") and not lora.inference_mode
    assert type(model).__name__ == "PeftModelForCausalLM"  # generate() and the causal-LM loss wrappers
    layer = model.get_base_model().model.layers[N_LAYERS - 1].self_attn.q_proj
    assert layer.scaling["default"] == 3.0 and layer.lora_dropout["default"].p == 0.25
    assert any(p.requires_grad for p in model.parameters())


def test_the_decoder_layers_are_the_longest_layer_list_and_errors_name_the_model():
    model = torch.nn.Module()
    model.heads = torch.nn.ModuleList([torch.nn.Linear(4, 4)])  # a short list, first in order and by name
    model.blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(4, 4)) for _ in range(3)])
    assert lora_target_modules(model, 1) == ["blocks.2.0"]

    class Headless(torch.nn.Module):
        pass

    with pytest.raises(HomeworkError, match="--lora-layers 1: Headless has no list of decoder layers"):
        lora_target_modules(Headless(), 1)
    no_linear = torch.nn.Module()
    no_linear.blocks = torch.nn.ModuleList([torch.nn.ReLU(), torch.nn.ReLU()])
    with pytest.raises(HomeworkError, match=r"--lora-layers 1: no nn.Linear in blocks; pass --lora-layers all"):
        lora_target_modules(no_linear, 1)


def test_a_model_peft_cannot_adapt_is_a_clear_error():
    class Opaque(torch.nn.Module):  # no linear layer for "all-linear" to find
        def forward(self, x):
            return x

    with pytest.raises(HomeworkError, match="LoRA could not attach to the model: .+"):
        build_lora_model(Opaque(), TrainConfig(lora_layers=None, fused_lora=False))
