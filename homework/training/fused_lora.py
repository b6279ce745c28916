"""LoRA linear layers as one autograd node, for training speed on CPU.

peft computes `base(x) + lora_B(lora_A(x)) * scaling`: the low-rank update is materialised as a
full (tokens x out_features) tensor, scaled elementwise and added, and autograd walks the same
full-size tensors back. With rank 8-16 those passes are memory-bound and cost ~15% of a training
step on 2 cores. Here the update is accumulated into the base matmul's output (`addmm_`), and the
scale is applied to the rank-r activations instead of the full output. Same function, same
gradients (to float rounding); the parameters stay peft's own, so saving, loading and merging are
untouched. Under autocast (bf16 mixed precision: base weights in the autocast dtype, fp32 adapters) the
node runs in the autocast dtype on copies of the adapter weights, whose gradients autograd casts back to the
fp32 masters: peft's path would cast the activations to fp32 and back at every adapter. Layers this does not
cover (dropout, DoRA and other variants, several active adapters, other mixed dtypes, non-Linear bases) keep
peft's forward.
"""

from __future__ import annotations

import types

import torch

FUSED_ATTR = "_homework_fused_lora"


class LoraLinearFunction(torch.autograd.Function):
    """y = x W^T + b + scale * (x A^T) B^T, with hand-written backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale: float):
        x2 = x.reshape(-1, x.shape[-1])
        xa = torch.mm(x2, lora_a.t()).mul_(scale)  # (tokens, r), scaled once here
        y = torch.mm(x2, weight.t()) if bias is None else torch.addmm(bias, x2, weight.t())
        y.addmm_(xa, lora_b.t())
        ctx.save_for_backward(x2, xa, weight, lora_a, lora_b)
        ctx.scale = scale
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad_y):
        x2, xa, weight, lora_a, lora_b = ctx.saved_tensors
        g2 = grad_y.reshape(-1, grad_y.shape[-1])
        g_low = torch.mm(g2, lora_b).mul_(ctx.scale)  # gradient at the (scaled) rank-r bottleneck
        grad_x = grad_w = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(g2, weight).addmm_(g_low, lora_a).view(*grad_y.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:  # frozen in LoRA training; kept for completeness
            grad_w = torch.mm(g2.t(), x2)
        if ctx.needs_input_grad[2]:  # False for a None bias
            grad_bias = g2.sum(0)
        grad_a = torch.mm(g_low.t(), x2)
        grad_b = torch.mm(xa.t(), g2).t()  # (r x tokens)(tokens x out) is faster than the transposed form
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _single_vanilla_adapter(layer, x: torch.Tensor) -> str | None:
    """The adapter name when `layer` can take the fused path for input `x`, else None."""
    if layer.disable_adapters or layer.merged:
        return None
    active = layer.active_adapters
    if len(active) != 1:
        return None
    name = active[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return None
    if not isinstance(layer.lora_dropout[name], torch.nn.Identity):
        return None
    base = layer.base_layer
    if type(base) is not torch.nn.Linear or layer.lora_B[name].bias is not None:
        return None
    a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
    compute = _autocast_dtype(x.device.type)
    if compute is not None:  # mixed precision: the base already in the autocast dtype, the adapter's masters fp32
        return name if base.weight.dtype == compute and a.dtype == b.dtype == torch.float32 else None
    if not (x.dtype == base.weight.dtype == a.dtype == b.dtype):
        return None
    return name


def _fused_forward(self, x, *args, **kwargs):
    name = None if (args or kwargs) else _single_vanilla_adapter(self, x)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer
    a, b = self.lora_A[name].weight, self.lora_B[name].weight
    compute = _autocast_dtype(x.device.type)
    if compute is not None:
        # one cast of each adapter weight per call; autograd returns their gradients to the fp32 masters
        x, a, b = x.to(compute), a.to(compute), b.to(compute)
        bias = base.bias if base.bias is None else base.bias.to(compute)
        with torch.autocast(x.device.type, enabled=False):  # every input is in the compute dtype already
            return LoraLinearFunction.apply(x, base.weight, bias, a, b, float(self.scaling[name]))
    return LoraLinearFunction.apply(x, base.weight, base.bias, a, b, float(self.scaling[name]))


def fuse_lora_layers(model) -> int:
    """Route every peft LoRA Linear in `model` through the fused path; return how many were routed."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.forward = types.MethodType(_fused_forward, module)
            setattr(module, FUSED_ATTR, True)
            count += 1
    return count
