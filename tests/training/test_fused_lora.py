"""The fused LoRA linear must be peft's LoRA linear, value for value and gradient for gradient."""

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from homework.training.fused_lora import LoraLinearFunction, fuse_lora_layers
from tests.conftest import on_device_of


class Tiny(torch.nn.Module):
    def __init__(self, d_in, d_hidden, d_out, bias):
        super().__init__()
        self.up = torch.nn.Linear(d_in, d_hidden, bias=bias)
        self.down = torch.nn.Linear(d_hidden, d_out, bias=bias)

    def forward(self, x):
        return self.down(torch.nn.functional.silu(self.up(x)))


def peft_pair(d_in, d_hidden, d_out, bias, rank, alpha, dropout=0.0, seed=0, **config):
    """(reference peft model, fused copy), with lora_B randomised so the update is not zero; `config`: more
    LoraConfig fields."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(Tiny(d_in, d_hidden, d_out, bias),
                           LoraConfig(target_modules=["up", "down"], r=rank, lora_alpha=alpha, lora_dropout=dropout,
                                      **config))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)
    fused = copy.deepcopy(model)
    assert fuse_lora_layers(fused) == 2
    return model, fused


def forward_backward(model, x):
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()  # a loss that weighs outputs unequally
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), x.grad, grads


@given(d_in=st.integers(1, 24), d_hidden=st.integers(1, 24), d_out=st.integers(1, 24), rank=st.integers(1, 8),
       alpha=st.integers(1, 64), bias=st.booleans(), lead=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_fused_matches_peft_values_and_gradients(d_in, d_hidden, d_out, rank, alpha, bias, lead, seed):
    reference, fused = peft_pair(d_in, d_hidden, d_out, bias, rank, alpha, seed=seed)
    x = torch.randn(*lead, d_in, generator=torch.Generator().manual_seed(seed))
    out_r, gx_r, grads_r = forward_backward(reference, x)
    out_f, gx_f, grads_f = forward_backward(fused, x)
    assert out_f.shape == out_r.shape
    torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx_f, gx_r, rtol=1e-4, atol=1e-5)
    assert grads_f.keys() == grads_r.keys() and any("lora_A" in k for k in grads_f)
    for name in grads_r:
        torch.testing.assert_close(grads_f[name], grads_r[name], rtol=1e-4, atol=1e-5, msg=name)


def count_fused_calls(monkeypatch) -> list:
    calls = []
    apply = LoraLinearFunction.apply

    def counting(*args):
        calls.append(args[0].shape)
        return apply(*args)

    monkeypatch.setattr(LoraLinearFunction, "apply", counting)
    return calls


def test_the_fused_path_is_taken_and_frozen_weights_get_no_gradient(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    _, fused = peft_pair(6, 5, 4, True, 2, 4)
    out = fused(torch.randn(3, 6))
    assert len(calls) == 2  # both LoRA layers
    out.sum().backward()
    base = fused.get_base_model()
    assert base.up.weight.grad is None and base.up.bias.grad is None
    assert base.up.lora_A["default"].weight.grad is not None


def test_gradients_for_unfrozen_base_weights_match_autograd():
    torch.manual_seed(0)
    x, w, b = torch.randn(7, 5), torch.randn(3, 5), torch.randn(3)
    a, bb = torch.randn(2, 5), torch.randn(3, 2)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b, a, bb)]
    LoraLinearFunction.apply(*leaves, 0.5).square().sum().backward()
    ref = [t.clone().requires_grad_(True) for t in (x, w, b, a, bb)]
    (ref[0] @ ref[1].t() + ref[2] + 0.5 * (ref[0] @ ref[3].t()) @ ref[4].t()).square().sum().backward()
    for got, want in zip(leaves, ref):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-5)


FALLBACK_CONFIG = {"dropout": {"dropout": 0.5}, "dora": {"use_dora": True}, "lora_bias": {"lora_bias": True}}


@pytest.mark.parametrize("case", ["dropout", "disabled", "merged", "dtype", "dora", "lora_bias", "call_options"])
@pytest.mark.filterwarnings("ignore:`lora_bias=True` was passed")  # the layers have no bias of their own
def test_layers_the_fused_path_does_not_cover_fall_back_to_peft(case, monkeypatch):
    calls = count_fused_calls(monkeypatch)
    reference, fused = peft_pair(6, 5, 4, False, 2, 4, **FALLBACK_CONFIG.get(case, {}))
    x = torch.randn(2, 6)
    if case == "lora_bias":  # a bias peft adds to the update (zero at init): give it a value
        for m in (reference, fused):
            for layer in (m.get_base_model().up, m.get_base_model().down):
                torch.nn.init.constant_(layer.lora_B["default"].bias, 0.3)
    if case == "disabled":
        for m in (reference, fused):
            m.base_model.disable_adapter_layers()
    if case == "merged":
        for m in (reference, fused):
            m.base_model.merge_adapter()
    if case == "dtype":  # adapter in float64 on a float32 layer: peft casts, the fused path steps aside
        for m in (reference, fused):
            for layer in (m.get_base_model().up, m.get_base_model().down):
                layer.lora_A["default"].double()
                layer.lora_B["default"].double()
    for m in (reference, fused):
        m.eval()  # dropout becomes deterministic, but stays an nn.Dropout the fused path does not take
    # a mixed batch names each row's adapter: the first row without one; peft's forward reads the option
    options = {"adapter_names": ["__base__", "default"]} if case == "call_options" else {}
    out = fused(x, **options)
    assert calls == []
    torch.testing.assert_close(out, reference(x, **options))


def test_a_trainable_base_weight_without_a_bias_gets_its_gradient():
    torch.manual_seed(1)
    x, w, a, b = torch.randn(4, 5), torch.randn(3, 5), torch.randn(2, 5), torch.randn(3, 2)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, a, b)]
    LoraLinearFunction.apply(leaves[0], leaves[1], None, leaves[2], leaves[3], 2.0).square().sum().backward()
    ref = [t.clone().requires_grad_(True) for t in (x, w, a, b)]
    (ref[0] @ ref[1].t() + 2.0 * (ref[0] @ ref[2].t()) @ ref[3].t()).square().sum().backward()
    assert leaves[1].grad is not None
    for got, want in zip(leaves, ref):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-5)


def test_every_routed_layer_carries_the_marker_others_read():
    from peft.tuners.lora.layer import Linear as LoraLinear

    from homework.training.fused_lora import FUSED_ATTR

    _, fused = peft_pair(6, 5, 4, True, 2, 4)
    layers = [m for m in fused.modules() if type(m) is LoraLinear]
    assert len(layers) == 2 and all(getattr(m, FUSED_ATTR) is True for m in layers)


def test_fused_model_survives_deepcopy_and_saves_peft_adapter(tmp_path):
    reference, fused = peft_pair(6, 5, 4, True, 2, 4)
    clone = copy.deepcopy(fused)
    x = torch.randn(2, 6)
    torch.testing.assert_close(clone(x), reference(x))
    fused.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "adapter_model.safetensors" in names


@pytest.mark.integration
def test_fused_real_model_gives_peft_loss_and_gradients(lora_factory, hw_tokenizer, hw_train_rows, hw_placement,
                                                        monkeypatch):
    """On the embedded model and a real batch: the same supervised loss and LoRA gradients as peft.

    In fp32 every LoRA linear takes the fused path. Under bf16 (CUDA) the base weights are bf16 and peft
    keeps the adapters in fp32, so every layer must fall back to peft's own forward, unchanged."""
    from homework.training.collate import DynamicPaddingCollator
    from homework.training.trainer import supervised_loss

    calls = count_fused_calls(monkeypatch)
    rows = DynamicPaddingCollator(hw_tokenizer.pad_token_id)([hw_train_rows[i] for i in range(4)])
    results = []
    for fuse in (False, True):
        model = lora_factory(r=8, alpha=32)
        batch = on_device_of(model, rows)
        for name, p in model.named_parameters():  # a non-zero update, so the LoRA path shapes the loss
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.01, generator=torch.Generator(p.device).manual_seed(len(name)))
        n_layers = fuse_lora_layers(model) if fuse else 0
        loss, _ = supervised_loss(model, batch)
        loss.backward()
        results.append((loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    assert n_layers == 30 * 7  # every all-linear target of SmolLM2-135M was routed
    # the fused path runs where base and adapter share a dtype (fp32); elsewhere each layer falls back
    assert len(calls) == (n_layers if hw_placement.dtype == torch.float32 else 0)
    (loss_peft, grads_peft), (loss_fused, grads_fused) = results
    assert loss_fused == pytest.approx(loss_peft, rel=1e-5)
    for name, g in grads_peft.items():
        torch.testing.assert_close(grads_fused[name], g, rtol=1e-3, atol=1e-6, msg=name)


@pytest.mark.integration
@pytest.mark.parametrize("fused", [True, False])
def test_train_models_lora_layers_are_fused_by_default(hw_base_model, fused):
    from homework.training.config import TrainConfig
    from homework.training.fused_lora import FUSED_ATTR
    from homework.training.lora import build_lora_model

    cfg = TrainConfig(fused_lora=fused)
    model = build_lora_model(copy.deepcopy(hw_base_model), cfg)
    marked = sum(bool(getattr(m, FUSED_ATTR, False)) for m in model.modules())
    adapted = 7 * (cfg.lora_layers or 30)  # q, k, v, o, gate, up, down in each adapted layer of 30
    assert marked == (adapted if fused else 0) and adapted > 0
    assert TrainConfig().fused_lora is True


def test_under_bf16_autocast_the_fused_path_runs_in_bf16_and_trains_the_fp32_adapter(monkeypatch):
    """bf16 mixed precision (the base in bf16, the adapter's masters in fp32, autocast around the forward):
    the fused node is taken, its output is bf16 like peft's, values and adapter gradients agree with peft's
    within bf16 rounding, and the gradients land on the fp32 masters in fp32."""
    calls = count_fused_calls(monkeypatch)
    reference, fused = peft_pair(48, 40, 32, True, 4, 8)
    for m in (reference, fused):
        for name, p in m.named_parameters():
            if "lora_" not in name:
                p.data = p.data.to(torch.bfloat16)
    x = torch.randn(2, 5, 48)
    results = []
    for m in (reference, fused):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(forward_backward(m, x))
    assert len(calls) == 2
    (ref_out, ref_dx, ref_grads), (out, dx, grads) = results
    assert out.dtype == ref_out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref_out.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(dx.float(), ref_dx.float(), rtol=2e-2, atol=2e-2)
    assert set(grads) == set(ref_grads) and all("lora_" in n for n in grads)
    for name, grad in grads.items():  # bf16 rounds each element: compare the whole tensor's error
        assert grad.dtype == torch.float32, name
        assert (grad - ref_grads[name]).norm() <= 2e-2 * ref_grads[name].norm(), name


def test_under_autocast_a_base_in_fp32_falls_back_to_peft(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    _, fused = peft_pair(6, 5, 4, False, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused(torch.randn(2, 6))
    assert calls == []  # casting the base weight at every call would cost more than peft's path
