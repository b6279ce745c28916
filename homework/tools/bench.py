"""Throughput benchmark: the seed recipe against this project's trainer, in one process and one run.

    python -m homework.tools.bench [--steps 10] [--batch-size N] [--json FILE]

Variants, all on the same rows, model, seed and batch size; each adds one change to the one before:
  seed      pad every row to 128, gradient checkpointing, default_data_collator, plain Trainer, peft LoRA
            r=16 alpha=32 on every linear layer (the project's earlier default; the seed's LoRA size
            barely matters next to its padding)
  dynamic   pad to the longest row in the batch instead, no checkpointing (full logits)
  head      + logits only at supervised positions (SupervisedTrainer)
  grouped   + batches grouped by length
  packed    head's trainer with each batch's rows packed into one row (no padding at all; attention
            kept inside each row: homework/training/packing.py) instead of padded: a side branch, compared
            with head (packing_gain) and with seed (packed_speedup); fused builds on grouped
  fused     + fused LoRA linears and glibc malloc keeping freed memory
            (the malloc setting is process-wide, so this variant and the next always run last)
  project   + the project's LoRA layout, TrainConfig's defaults: adapters on the last decoder layers
            only, at a higher rank (backpropagation stops at the lowest adapted layer): what
            train_model does in fp32
  bf16      project in bf16 mixed precision: the frozen base weights stored in bf16, autocast around the
            forward (TrainingArguments(bf16=True)), the adapter and optimizer in fp32; what train_model
            does on a CPU that computes bf16 natively. Skipped, saying why, on a CPU that emulates bf16.
Every variant but bf16 runs in fp32, whatever the machine would choose.
The first step of each variant is a warm-up and not timed. Compare ratios, not absolute seconds.

The batch size defaults to 32, the seed recipe's (the course's, and the one the baseline figures in
docs/speed.md were measured with), so the trainers are compared on the seed's workload.
`python -m homework.sft train` trains with batch 16 (more optimizer steps in its one epoch pay in
accuracy); `--batch-size 16` measures that setting.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import threading
import time

from ..runtime import report
from ..runtime.atomic import atomic_write_json

ALL_LAYERS_LORA = dict(lora_layers=None, lora_rank=16, lora_alpha=32)  # every variant but `project`
SEED_BATCH_SIZE = 32  # the seed recipe's batch (the course's; baseline figures: docs/speed.md)
VARIANTS = ("seed", "dynamic", "head", "grouped", "packed", "fused", "project", "bf16")
# (without, with, key): the gain of each single change, printed and written when both ran
GAINS = (("seed", "dynamic", "dynamic_padding_gain"), ("dynamic", "head", "supervised_head_gain"),
         ("head", "grouped", "length_grouping_gain"), ("grouped", "fused", "fused_lora_allocator_gain"),
         ("fused", "project", "lora_layout_gain"), ("head", "packed", "packing_gain"), ("project", "bf16", "bf16_gain"))


class PeakRSS:
    """Peak resident memory while the block runs, sampled from /proc (Linux) every 20 ms."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(0.02)

    def __enter__(self):
        self.peak = self.current()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


class PageFaults:
    """Minor page faults of this process while the block runs (the allocator setting's effect, which
    depends on the machine's memory management: measured here, not asserted in a test)."""

    def __enter__(self):
        import resource

        self._start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        return self

    def __exit__(self, *exc):
        import resource

        self.count = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self._start


class CountingCollator:
    """Wraps a collator and records the real (attention) tokens of every batch it builds."""

    def __init__(self, inner):
        self.inner = inner
        self.tokens: list[int] = []

    def __call__(self, features):
        batch = self.inner(features)
        # a packed batch has no padding, hence no mask: every position is a real token
        mask = batch.get("attention_mask")
        self.tokens.append(int(mask.sum()) if mask is not None else batch["input_ids"].numel())
        return batch


def profile_table(prof, top: int) -> list[dict]:
    """The `top` operators by self CPU time of a torch.profiler run, with their share of the total."""
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in events[:top]]


def run_variant(name: str, base_model, tokenizer, data, steps: int, batch_size: int, seed: int,
                profile: int = 0) -> dict:
    import torch
    from transformers import default_data_collator

    from ..base_llm import BaseLLM
    from ..text.formats import format_example
    from ..text.tokenization import TokenizedDataset
    from ..training.collate import DynamicPaddingCollator
    from ..training.config import TrainConfig
    from ..training.lora import build_lora_model
    from ..training.packing import PackingCollator
    from ..training.recipe import build_recipe
    from ..training.smoke import run_steps

    padded = name == "seed"
    rows = TokenizedDataset(tokenizer, data, format_example, max_length=128, pad=padded)
    if name in ("project", "bf16"):
        # the shipped recipe itself (TrainConfig's defaults: layout, fused layers, device-class grouping,
        # allocator setting), on the same rows, batch and learning rate as the other variants
        from ..runtime.device import Placement

        cfg = TrainConfig(batch_size=batch_size, learning_rate=2e-4, warmup_steps=0, lr_scheduler="constant",
                          max_steps=steps + 1, save_steps=0, seed=seed, progress=False, evaluate=False)
        device = next(base_model.parameters()).device
        dtype = torch.bfloat16 if name == "bf16" else torch.float32
        base = copy.deepcopy(base_model).to(dtype)
        llm = BaseLLM.from_components(base, tokenizer, placement=Placement(device, dtype))
        with tempfile.TemporaryDirectory(prefix="homework-bench-") as tmp:
            recipe = build_recipe(cfg, tmp, llm=llm, base_model=base, dataset=rows)
            recipe.trainer.data_collator = counter = CountingCollator(recipe.trainer.data_collator)
            model, trainable = recipe.model, recipe.trainable_parameters()
            import contextlib

            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as profiler

            watch = profiler(activities=[ProfilerActivity.CPU]) if profile else contextlib.nullcontext()
            with PeakRSS() as rss, PageFaults() as faults, watch as prof:
                recipe.trainer.train()
        records = recipe.guard.records
    else:
        torch.manual_seed(seed)
        cfg = TrainConfig(fused_lora=name == "fused", **ALL_LAYERS_LORA)  # one LoRA layout for the others
        model = build_lora_model(copy.deepcopy(base_model), cfg)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        model.train()
        if name == "packed":
            counter = CountingCollator(PackingCollator())
        else:
            counter = CountingCollator(default_data_collator if padded else DynamicPaddingCollator(tokenizer.pad_token_id))
        kwargs = dict(learning_rate=2e-4, batch_size=batch_size, seed=seed, collator=counter)
        if name == "seed":
            kwargs.update(gradient_checkpointing=True, plain_trainer=True)
        elif name == "dynamic":
            kwargs.update(plain_trainer=True)
        elif name in ("grouped", "fused"):
            kwargs.update(group_by_length=True)
        elif name == "packed":
            kwargs.update(packing=True)
        if name == "fused" and next(model.parameters()).device.type == "cpu":
            from ..runtime import allocator

            allocator.keep_freed_memory()  # as the recipe does; process-wide, so fused and project run last
        with PeakRSS() as rss, PageFaults() as faults:
            records = run_steps(model, tokenizer, rows, steps + 1, **kwargs)
    timed = records[1:]
    seconds = sum(r.step_time_s for r in timed)
    # batches in step order; the first is the untimed warm-up, and the loader may prefetch one extra
    real_tokens = sum(counter.tokens[1:len(records)])
    result = {
        "variant": name, "steps": len(timed), "seconds_per_step": seconds / len(timed),
        "real_tokens_per_s": real_tokens / seconds, "peak_rss_mb": rss.peak / 2**20,
        "page_faults_per_step": faults.count / len(records),
        "losses": [r.loss for r in records],
        "lora": {"layers": cfg.lora_layers or "all", "rank": cfg.lora_rank, "alpha": cfg.lora_alpha,
                 "fused": cfg.fused_lora, "trainable_parameters": trainable},
    }
    if profile and name in ("project", "bf16"):
        result["profile"] = profile_table(prof, profile)  # every step, the warm-up included
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m homework.tools.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per variant (after 1 warm-up)")
    p.add_argument("--batch-size", type=int, default=SEED_BATCH_SIZE, help="rows per step for every variant")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_path", default=None, help="write the figures to this JSON file")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile the project and bf16 variants (torch.profiler) and print their N costliest operators")
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant(s) {sorted(unknown)}: choose from {', '.join(VARIANTS)}")

    import torch
    import transformers

    from ..base_llm import BaseLLM
    from ..data import Dataset
    from ..runtime import precision

    llm = BaseLLM(args.model, precision="fp32")
    for prm in llm.model.parameters():
        prm.requires_grad_(False)
    data = Dataset("train")
    data.data = data.data[: args.batch_size * (args.steps + 1)]
    results = {}
    # VARIANTS order, whatever the command line's: the allocator setting of the last two must not reach the others
    cpu = precision.cpu_identity()
    for name in [v for v in VARIANTS if v in args.variants.split(",")]:
        if name == "bf16" and llm.device.type == "cpu" and not cpu.native_bf16:
            report.notice(f"bench: bf16 skipped: {cpu.model} has no native bf16 ({', '.join(precision.NATIVE_BF16_FLAGS)})")
            continue
        report.notice(f"bench: {name}: {args.steps + 1} steps of batch {args.batch_size} ...")
        results[name] = run_variant(name, llm.model, llm.tokenizer, data, args.steps, args.batch_size, args.seed,
                                    args.profile)
    report.result(f"{'variant':<9} {'s/step':>8} {'real tok/s':>11} {'peak RSS MB':>12} {'faults/step':>12}")
    for r in results.values():
        report.result(f"{r['variant']:<9} {r['seconds_per_step']:8.2f} {r['real_tokens_per_s']:11.1f} {r['peak_rss_mb']:12.0f} "
              f"{r['page_faults_per_step']:12.0f}")
    out = {
        "results": results,
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "device": llm.placement.describe(), "threads": torch.get_num_threads(),
                        "cpu": cpu.model, "native_bf16": list(cpu.native_bf16), "machine": platform.machine(),
                        "batch_size": args.batch_size},
    }
    if "seed" in results and "project" in results:
        out["speedup"] = results["project"]["real_tokens_per_s"] / results["seed"]["real_tokens_per_s"]
        report.result(f"speedup (project / seed, real tokens/s): {out['speedup']:.1f}x")
    if "seed" in results and "packed" in results:
        out["packed_speedup"] = results["packed"]["real_tokens_per_s"] / results["seed"]["real_tokens_per_s"]
        report.result(f"packed speedup (packed / seed, real tokens/s): {out['packed_speedup']:.2f}x")
    for a, b, key in GAINS:
        if a in results and b in results:
            out[key] = results[b]["real_tokens_per_s"] / results[a]["real_tokens_per_s"]
            report.result(f"{key.replace('_', ' ')} ({b} / {a}): {out[key]:.2f}x")
    for r in results.values():
        for row in r.get("profile", []):
            report.result(f"profile {r['variant']:<8} {row['share']:6.1%} {row['self_cpu_s']:8.2f} s "
                          f"{row['calls']:6d} calls  {row['op']}")
    if args.json_path:
        atomic_write_json(args.json_path, out)
        report.result(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
