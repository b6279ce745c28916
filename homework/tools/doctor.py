"""`python -m homework.sft doctor`: is this setup able to train? A pass/fail table with timings."""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass

from ..runtime import report
from ..runtime.errors import HomeworkError


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


# What the doctor changes in the shipped recipe: fewer rows and steps, no warm-up (a 3-step run would spend its
# first step at learning rate 0), nothing written, no evaluation, no progress bar over its table.
SHORTENED = {"save_steps": 0, "warmup_steps": 0, "evaluate": False, "progress": False}


def doctor_config(model: str | None, device: str | None, train_file: str, steps: int, rows: int,
                  precision: str | None = None):
    """The shipped recipe, shortened: the first `rows` training rows, `steps` optimizer steps, SHORTENED."""
    from ..training.config import TrainConfig

    return TrainConfig(model=model, device=device, precision=precision, train_file=train_file, limit=rows,
                       max_steps=steps, **SHORTENED)


def run_doctor(model: str | None = None, device: str | None = None, train_file: str = "train", steps: int = 3,
               rows: int = 64, out=None, precision: str | None = None) -> int:
    from ..base_llm import BaseLLM
    from ..training import faults
    from ..training.recipe import build_recipe, run_preflight, tokenized_rows

    checks: list[Check] = []
    state: dict = {}
    cfg = doctor_config(model, device, train_file, steps, rows, precision)
    faults.apply_to_config(cfg)
    tmp = tempfile.TemporaryDirectory()  # the trainer's output directory; nothing is saved into it

    def load():
        state["llm"] = llm = BaseLLM(cfg.model, cfg.device, cfg.precision, training=True)
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
        return ", ".join(f"step {r.step}: loss {r.loss:.3f} grad {r.grad_norm:.2f}" for r in recipe.guard.records)

    # The last two checks are the SFT contract's, on this project's contract (homework.tools.project_contract)
    # with the model loaded above: one definition of each check, its tolerance from homework/runtime/numerics.py.
    def contract():
        if "contract" not in state:
            from .project_contract import contract as project_contract

            state["contract"] = project_contract(llm=state["llm"])
        return state["contract"]

    def roundtrip():
        from sft_contract.contract import check_save_and_reload

        c = contract()
        check_save_and_reload(c, state["tok"].questions[0], trained_model=state["model"])
        return f"reloaded logits within {c.tolerance.logits_atol:g} of the trained model's, which moved off the base"

    def prompts():
        from sft_contract.contract import check_prompt_identity

        c, tok = contract(), state["tok"]
        pairs = list(zip(tok.questions, tok.answers))[:16]
        for question, answer in pairs:
            check_prompt_identity(c, question, answer)
        return f"inference prompt == training prompt on {len(pairs)} rows"

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
    report.result(f"{'check':<{width}}  result  seconds  detail", out)
    for c in checks:
        result = {True: "PASS", False: "FAIL", None: "SKIP"}[c.ok]
        report.result(f"{c.name:<{width}}  {result:<6}  {c.seconds:7.1f}  {c.detail}", out)
    failed = [c for c in checks if c.ok is not True]
    report.result(f"doctor: {'FAILED' if failed else 'all checks passed'} in {total:.1f} s", out)
    return 1 if failed else 0
