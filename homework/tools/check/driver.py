"""The child side of `python -m homework.sft check`: runs inside the subprocess, on a temporary copy of
someone else's course package, and reports one JSON line per check on a pipe.

Started as a script (`python driver.py ...`), never imported as part of this project: the package it
checks is also called `homework`, and this process must import *theirs*. So it imports nothing of this
repository's `homework`: its own modules (child/) are loaded under a private name, and the checks' judgements
are the contract kit's (sft_contract.rows, .steps, .contract, .catalog), a separate top-level package.

What it changes in their process, and why (each change is reported as a note):
  - every `from_pretrained(<hub id>)` loads the model directory given with --model (offline, one model);
  - CUDA-only calls (`.to("cuda")`, `.cuda()`, `device_map`, fp16/bf16 training) run on the CPU in fp32;
  - TrainingArguments / Trainer arguments the installed transformers removed are translated or dropped,
    and reported as their own verdict ("compat");
  - every Trainer logs each step unfiltered and stops after --steps optimizer steps of CHECK_BATCH rows, so
    train_model runs its own recipe, collator and Trainer subclass, then its own save (the schedule is
    judged at their batch size);
  - a file or folder written by an absolute path outside the work directory lands in the copy;
  - a module their package imports that is missing here is reported, then stubbed, so the other checks run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

CHILD = "_homework_check_child"  # the name child/ is loaded under: `homework` is theirs in this process


def load_child():
    """child/ as a package of a private name, loaded afresh: (shared, sandbox, training, package, checks)."""
    for name in [m for m in sys.modules if m == CHILD or m.startswith(CHILD + ".")]:
        del sys.modules[name]
    here = Path(__file__).resolve().parent / "child"
    spec = importlib.util.spec_from_file_location(CHILD, here / "__init__.py", submodule_search_locations=[str(here)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[CHILD] = package
    spec.loader.exec_module(package)
    return tuple(importlib.import_module(f"{CHILD}.{m}") for m in ("shared", "sandbox", "training", "package", "checks"))


shared, sandbox, training, package, checks = load_child()


def _same_checks_as_the_kit() -> None:
    from sft_contract.course import CHECKS as NAMES

    assert [n for n, _ in checks.CHECKS] == list(NAMES), "child/checks.CHECKS and the kit's must name the same checks"
    assert sorted(checks.RUN_ORDER) == sorted(NAMES), "RUN_ORDER runs every check once"


def _alarm(signum, frame):
    while frame is not None and not shared.theirs(frame.f_code.co_filename):
        frame = frame.f_back
    where = f"{shared.short(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}" if frame else None
    raise shared.CheckTimeout(where)


def timeout_result(name: str, args, where: str | None) -> dict:
    """A check stopped by its time limit: where their code was, and what the steps check can judge anyway."""
    session = training.SESSION
    schedule = (training.schedule_problem(*session.schedule) or session.frozen) if session.schedule else None
    if name == "steps" and schedule:
        return dict(verdict="violation", cause=schedule, row=15, where=where)
    done = max((len(r.records) for r in session.recorders), default=0)
    cause = f"over the {args.limit:g} s time limit"
    if name == "steps":
        cause += f" ({done} of {args.steps} optimizer steps done" + ("" if session.trainers else ", no Trainer built yet")
        cause += "; --time-limit gives more)"
    if where:
        cause += f"; their code was at {where}"
    return dict(verdict="could not run", cause=cause, where=where)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--limit", type=float, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--data-substituted", action="store_true")
    args = parser.parse_args(argv)
    shared.ROOT, shared.DATA_SUBSTITUTED = Path(args.root).resolve(), args.data_substituted
    _same_checks_as_the_kit()
    out = os.fdopen(args.fd, "w", buffering=1)
    sys.path[0] = str(shared.ROOT)  # their `homework`, not anything beside this script

    def send(**msg):
        out.write(json.dumps(msg) + "\n")

    import warnings

    warnings.filterwarnings("ignore")
    sandbox.redirect_loading(args.model)
    sandbox.redirect_writes()
    sandbox.stub_missing_modules()
    sandbox.run_cuda_code_on_cpu()
    training.instrument_training(args.steps)
    training.record_saves()
    signal.signal(signal.SIGALRM, _alarm)
    only = set(filter(None, args.only.split(",")))
    if only & {"compat", "saved", "reload"}:
        only.add("steps")  # they judge what train_model did
    ctx: dict = {}
    import_failed = False
    by_name = dict(checks.CHECKS)
    for name, check in ((n, by_name[n]) for n in checks.RUN_ORDER):
        if only and name not in only and name != "imports":
            continue
        send(event="start", check=name)
        start = time.monotonic()
        result = dict(event="result", check=name, verdict="ok", cause="", row=None, where=None)
        if import_failed:
            result.update(verdict="could not run", cause="their package does not import")
        else:
            package.as_built(ctx)
            signal.setitimer(signal.ITIMER_REAL, args.limit)
            try:
                result["cause"] = check(ctx) or ""
            except shared.Finding as f:
                result.update(verdict=f.verdict, cause=f.cause, row=f.row, where=f.where)
            except shared.CheckTimeout as stop:
                result.update(timeout_result(name, args, stop.args[0] if stop.args else None))
            except BaseException as exc:  # their code raised somewhere a check did not expect
                f = shared.crash_finding(exc, name)
                result.update(verdict=f.verdict, cause=f.cause, row=f.row, where=f.where)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if name == "imports" and "homework.sft" not in ctx:
                import_failed = True
        if shared.CUDA_NEEDED and result["verdict"] == "ok" and name == "steps":
            result.update(verdict="needs CUDA", cause=", ".join(shared.CUDA_NEEDED))
        result["seconds"] = round(time.monotonic() - start, 2)
        send(**result)
    send(event="notes", notes=shared.NOTES)
    out.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # every result is sent: skip tearing down torch and their threads, which can take long on a busy machine


if __name__ == "__main__":
    sys.exit(main())
