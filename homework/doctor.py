"""`python -m homework.sft doctor`: is this setup able to train? A pass/fail table with timings."""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from dataclasses import dataclass

from .errors import HomeworkError


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    seconds: float
    detail: str


def _timed(name: str, fn, checks: list[Check]):
    t = time.perf_counter()
    try:
        detail = fn() or ""
        checks.append(Check(name, True, time.perf_counter() - t, detail))
        return True
    except (HomeworkError, AssertionError, ValueError, RuntimeError) as exc:
        checks.append(Check(name, False, time.perf_counter() - t, f"{type(exc).__name__}: {exc}"))
        return False


def run_doctor(model: str | None = None, device: str | None = None, train_file: str = "train", steps: int = 3,
               rows: int = 64, out=sys.stdout) -> int:
    import torch

    from . import faults
    from .base_llm import BaseLLM
    from .config import TrainConfig
    from .prompt import encode, prompt_ids
    from .recipe import build_recipe, run_preflight, tokenized_rows

    checks: list[Check] = []
    state: dict = {}
    # The shipped recipe, shortened: the first `rows` training rows, `steps` steps, no checkpoints.
    cfg = TrainConfig(model=model, device=device, train_file=train_file, limit=rows, max_steps=steps, save_steps=0,
                      warmup_steps=0, evaluate=False, progress=False)
    faults.apply_to_config(cfg)
    tmp = tempfile.TemporaryDirectory(prefix="homework-doctor-")

    def load():
        state["llm"] = llm = BaseLLM(cfg.model, cfg.device)
        return f"{llm.model_spec.describe()} on {llm.placement.describe()}"

    def data():
        state["tok"] = tok = tokenized_rows(cfg, state["llm"].tokenizer)
        return f"{len(tok)} rows tokenized from {tok.source}"

    def preflight():
        llm = state["llm"]
        state["recipe"] = recipe = build_recipe(cfg, tmp.name, llm=llm, base_model=copy.deepcopy(llm.model),
                                                dataset=state["tok"])
        state["model"] = recipe.model
        warnings = run_preflight(recipe)
        return f"{len(state['tok'])} rows clean" + (f", {len(warnings)} warning(s)" if warnings else "")

    def smoke():
        recipe = state["recipe"]
        recipe.trainer.train()
        recs = state["records"] = recipe.guard.records
        return ", ".join(f"step {r.step}: loss {r.loss:.3f} grad {r.grad_norm:.2f}" for r in recs)

    def roundtrip():
        from peft import PeftModel

        m, llm = state["model"], state["llm"]
        m.eval()
        batch = torch.tensor([state["tok"][0]["input_ids"]], device=llm.device)
        with torch.no_grad():
            trained = m(input_ids=batch).logits
            with m.disable_adapter():
                base = m(input_ids=batch).logits
        with tempfile.TemporaryDirectory() as tmp:
            m.save_pretrained(tmp)
            reloaded = PeftModel.from_pretrained(copy.deepcopy(llm.model), tmp).to(llm.device).eval()
            with torch.no_grad():
                again = reloaded(input_ids=batch).logits
        diff = float((again - trained).abs().max())
        moved = float((trained - base).abs().max())
        if diff > 1e-4:
            raise AssertionError(f"reloaded adapter's logits differ from the trained model's by {diff:.2e}")
        if moved == 0:
            raise AssertionError("the adapter did not change the logits (the weights never moved)")
        return f"max |logit diff| reload {diff:.1e}, vs base {moved:.2f}"

    def prompts():
        llm, tok = state["llm"], state["tok"]
        for i, q in enumerate(tok.questions[:16]):
            infer = encode(llm.tokenizer, llm.format_prompt(q))
            train = prompt_ids(llm.tokenizer, q)
            row = tok[i]["input_ids"][: len(train)]
            if not (infer == train == row):
                raise AssertionError(f"row {i}: inference prompt ids differ from training prompt ids")
        return "inference prompt == training prompt on 16 rows"

    t0 = time.perf_counter()
    ok = _timed("load model", load, checks)
    for name, fn in (("tokenize data", data), ("pre-flight scan", preflight), (f"{steps}-step smoke run", smoke),
                     ("adapter save/reload", roundtrip), ("train/inference prompt", prompts)):
        if not ok:
            checks.append(Check(name, None, 0.0, "skipped: an earlier check failed"))
            continue
        ok = _timed(name, fn, checks)
    total = time.perf_counter() - t0
    tmp.cleanup()
    width = max(len(c.name) for c in checks)
    print(f"{'check':<{width}}  result  seconds  detail", file=out)
    for c in checks:
        result = {True: "PASS", False: "FAIL", None: "SKIP"}[c.ok]
        print(f"{c.name:<{width}}  {result:<6}  {c.seconds:7.1f}  {c.detail}", file=out)
    failed = [c for c in checks if c.ok is not True]
    print(f"doctor: {'FAILED' if failed else 'all checks passed'} in {total:.1f} s", file=out)
    return 1 if failed else 0
