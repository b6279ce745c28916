"""The child side of `python -m homework.sft check`: runs inside the subprocess, on a temporary copy of
someone else's course package, and reports one JSON line per check on a pipe.

Started as a script (`python driver.py ...`), never imported as part of this project: the package it
checks is also called `homework`, and this process must import *theirs*. So it imports nothing of this
repository's `homework`; the checks themselves are the contract kit's (sft_contract.rows, .steps,
.contract, .catalog), which is a separate top-level package.

What it changes in their process, and why (each change is reported as a note):
  - every `from_pretrained(<hub id>)` loads the model directory given with --model (offline, one model);
  - CUDA-only calls (`.to("cuda")`, `.cuda()`, `device_map`, fp16/bf16 training) run on the CPU in fp32;
  - TrainingArguments / Trainer arguments the installed transformers removed are translated or dropped,
    and reported as their own verdict ("compat");
  - every Trainer logs each step unfiltered and stops after --steps optimizer steps, so train_model runs
    its own recipe, collator and Trainer subclass, then its own save.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT: Path  # the temporary copy's root: homework/ and data/
NOTES: list[str] = []  # what was changed in their process to run it here
COMPAT: list[tuple[str, str]] = []  # (argument, where) that the installed transformers does not accept
CUDA_NEEDED: list[str] = []

# The course's requirements (its requirements.txt) plus what they pull in; anything else imported by a
# package fails `import homework` on a machine that installed only these.
COURSE_REQUIREMENTS = {"torch", "transformers", "peft", "accelerate", "tensorboard", "fire", "numpy", "tqdm",
                       "safetensors", "tokenizers", "huggingface_hub", "datasets", "pandas", "matplotlib", "yaml",
                       "packaging", "requests", "filelock", "regex", "jinja2", "PIL", "psutil", "sympy",
                       "sft_contract", "pint"}


class CheckTimeout(BaseException):  # BaseException: their `except Exception` must not swallow it
    pass


class Finding(Exception):
    """A check's verdict other than ok: raised inside a check, reported as its row."""

    def __init__(self, verdict: str, cause: str, row: int | None = None, where: str | None = None):
        super().__init__(cause)
        self.verdict, self.cause, self.row, self.where = verdict, cause, row, where


def theirs(path: str | None) -> bool:
    return bool(path) and Path(path).resolve().is_relative_to(ROOT)


def short(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def where_called() -> str | None:
    """file:line of the innermost frame in their package on the current stack."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        if theirs(frame.filename):
            return f"{short(frame.filename)}:{frame.lineno} {frame.name}"
    return None


def where_defined(obj) -> str | None:
    try:
        fn = inspect.unwrap(obj)
        return f"{short(inspect.getsourcefile(fn))}:{inspect.getsourcelines(fn)[1]} {fn.__qualname__}"
    except (TypeError, OSError):
        return None


def crash_finding(exc: BaseException, doing: str) -> Finding:
    """A crash in their code, as a finding: the exception and the innermost line of theirs."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if theirs(f.filename)]
    where = f"{short(frames[-1].filename)}:{frames[-1].lineno} {frames[-1].name}" if frames else None
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if not frames and not isinstance(exc, (ModuleNotFoundError, SyntaxError)):
        return Finding("could not run", f"{doing}: the checker failed ({text}), not their code")
    if isinstance(exc, ModuleNotFoundError):
        return Finding("violation", f"{doing} failed: {text} (a module the course's requirements do not install)",
                       22, where)
    lowered = text.lower()
    if any(k in lowered for k in ("cuda", "nvidia", "bitsandbytes", "flash_attn", "gpu")):
        return Finding("needs CUDA", f"{doing} needs CUDA here: {text}", None, where)
    if "target modules" in lowered and "not found" in lowered:
        return Finding("violation", f"{doing}: LoRA target_modules match nothing in the model: {text}", 15, where)
    if "does not require grad" in text:
        return Finding("violation", f"{doing}: nothing trainable receives a gradient ({text}): gradient checkpointing "
                       "over frozen inputs, without enable_input_require_grads", 8, where)
    if isinstance(exc, TypeError) and "unexpected keyword argument" in text:
        return Finding("incompatible", f"{doing}: {text}", 23, where)
    return Finding("error", f"{doing} raised {text}", None, where)


# --------------------------------------------------------------------------- running their code here


def redirect_loading(model_dir: str) -> None:
    """Hub ids load `model_dir`; half precision and device maps become fp32 on the CPU."""
    import torch
    import transformers
    from transformers.models.auto import auto_factory

    def fix(args, kwargs):
        args = list(args)
        name = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        if isinstance(name, (str, os.PathLike)) and not os.path.isdir(name):
            if name != model_dir:
                _note(f"loaded {model_dir} where their code asked for {name!r}")
            name = model_dir
        if args:
            args[0] = name
        elif "pretrained_model_name_or_path" in kwargs:
            kwargs["pretrained_model_name_or_path"] = name
        for key in ("torch_dtype", "dtype"):
            if kwargs.get(key) in (torch.float16, torch.bfloat16, "float16", "bfloat16", "auto"):
                _note(f"from_pretrained({key}={kwargs[key]!r}) loaded in fp32 on the CPU")
                kwargs[key] = torch.float32
        if kwargs.pop("device_map", None) not in (None, "cpu"):
            _note("from_pretrained(device_map=...) loaded on the CPU")
        for key in ("load_in_8bit", "load_in_4bit", "quantization_config"):
            if kwargs.get(key):
                CUDA_NEEDED.append(f"from_pretrained({key}=...)")
                kwargs.pop(key)
        return args, kwargs

    def wrap(cls):
        raw = cls.__dict__.get("from_pretrained")
        if raw is None:
            return
        fn = raw.__func__

        if isinstance(raw, classmethod):
            def patched(klass, *args, **kwargs):
                args, kwargs = fix(args, kwargs)
                return fn(klass, *args, **kwargs)
            cls.from_pretrained = classmethod(patched)
        else:  # staticmethod
            def patched_static(*args, **kwargs):
                args, kwargs = fix(args, kwargs)
                return fn(*args, **kwargs)
            cls.from_pretrained = staticmethod(patched_static)

    from transformers import tokenization_utils_base
    for cls in (transformers.AutoTokenizer, transformers.AutoConfig, auto_factory._BaseAutoModelClass,
                transformers.PreTrainedModel, tokenization_utils_base.PreTrainedTokenizerBase,
                getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig):
        wrap(cls)


def _note(text: str) -> None:
    if text not in NOTES:
        NOTES.append(text)


def _on_cpu(device):
    """A CUDA or MPS device argument, as the CPU (torch has none of them here)."""
    import torch

    if isinstance(device, str) and device.split(":")[0] in ("cuda", "mps"):
        _note(f"{device!r} ran on the CPU")
        return "cpu"
    if isinstance(device, torch.device) and device.type in ("cuda", "mps"):
        _note(f"{device.type!r} ran on the CPU")
        return torch.device("cpu")
    if isinstance(device, int) and not isinstance(device, bool):
        return "cpu"
    return device


def run_cuda_code_on_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        return

    def wrap_to(original):
        def to(self, *args, **kwargs):
            args = [_on_cpu(a) for a in args]
            if "device" in kwargs:
                kwargs["device"] = _on_cpu(kwargs["device"])
            return original(self, *args, **kwargs)
        return to

    torch.Tensor.to = wrap_to(torch.Tensor.to)
    torch.nn.Module.to = wrap_to(torch.nn.Module.to)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self


# arguments transformers 5 removed, and what replaces each where something does
RENAMED = {"evaluation_strategy": "eval_strategy", "no_cuda": "use_cpu", "warmup_ratio": "warmup_steps",
           "overwrite_output_dir": None, "logging_dir": None, "use_mps_device": None,
           "push_to_hub_token": None, "push_to_hub_model_id": None, "push_to_hub_organization": None}


class Session:
    """The Trainers their code builds, what they trained, and what they saved."""

    def __init__(self, steps: int):
        self.steps, self.trainers, self.saved, self.recorders = steps, [], [], []
        self.before: dict = {}  # trainable tensors at the start of training
        self.after: dict = {}  # the same tensors at its end, before their code merges or unloads anything
        self.trained_model = None
        self.probe = None  # prompt ids whose logits tell the trained model from the base and from a reload
        self.logits: dict = {}  # "trained", "base": logits on the probe at the end of training
        self.schedule = None  # (peak learning rate, the run's optimizer steps, warm-up steps)


SESSION: Session


def instrument_training(steps: int) -> None:
    """Every TrainingArguments accepts what older transformers did; every Trainer stops after `steps` steps."""
    import dataclasses

    from transformers import Trainer, TrainerCallback, TrainingArguments

    from sft_contract.recorder import StepRecorder

    global SESSION
    SESSION = Session(steps)
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    original_args_init = TrainingArguments.__init__

    def args_init(self, *args, **kwargs):
        if type(self) is TrainingArguments:
            for key in [k for k in kwargs if k not in known]:
                value = kwargs.pop(key)
                COMPAT.append((key, where_called() or "?"))
                new = RENAMED.get(key)
                if new and new not in kwargs:
                    kwargs[new] = value
            if kwargs.get("fp16") or kwargs.get("bf16"):
                _note("fp16/bf16 training ran in fp32 on the CPU")
                kwargs["fp16"] = kwargs["bf16"] = False
            out = kwargs.get("output_dir") or (args[0] if args else None)
            if out and not Path(out).resolve().is_relative_to(ROOT):  # a write outside the copy goes into it
                _note(f"output_dir {out!r} redirected into the temporary copy")
                if "output_dir" in kwargs:
                    kwargs["output_dir"] = str(ROOT / "trainer_output")
                else:
                    args = (str(ROOT / "trainer_output"), *args[1:])
            kwargs["report_to"] = "none"
            kwargs["disable_tqdm"] = True
            kwargs["use_cpu"] = True
        return original_args_init(self, *args, **kwargs)

    TrainingArguments.__init__ = args_init
    TrainingArguments.__signature__ = inspect.signature(original_args_init)

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            # the whole run's schedule, as their arguments make it (this check stops it after a few steps)
            SESSION.schedule = (args.learning_rate, state.max_steps, args.get_warmup_steps(state.max_steps))
            if model is not None:
                SESSION.trained_model = model
                SESSION.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= SESSION.steps:
                control.should_training_stop = True

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if model is None or not SESSION.before:
                return
            params = dict(model.named_parameters())
            SESSION.after = {n: params[n].detach().clone() for n in SESSION.before if n in params}
            if SESSION.probe is not None:
                SESSION.logits = probe_logits(model, SESSION.probe)

    original_trainer_init = Trainer.__init__

    def trainer_init(self, *args, **kwargs):
        if "tokenizer" in kwargs and "tokenizer" not in inspect.signature(original_trainer_init).parameters:
            COMPAT.append(("Trainer(tokenizer=...)", where_called() or "?"))
            kwargs.setdefault("processing_class", kwargs.pop("tokenizer"))
        original_trainer_init(self, *args, **kwargs)
        recorder = StepRecorder()
        self.add_callback(recorder)
        self.add_callback(StopAfter())
        SESSION.trainers.append(self)
        SESSION.recorders.append(recorder)

    Trainer.__init__ = trainer_init
    checkpoint_as_transformers_4()


def checkpoint_as_transformers_4() -> None:
    """Gradient checkpointing as transformers 4 ran it: reentrant, and the inputs left frozen unless their code
    calls enable_input_require_grads itself. transformers 5 does both for them, which would hide from the
    check a recipe that trains nothing on the course's transformers (catalog row 8)."""
    from transformers import PreTrainedModel

    enable = getattr(PreTrainedModel, "_activation_checkpointing_enable", None)
    if enable is None:
        return
    inside = [False]
    original_grads = PreTrainedModel.enable_input_require_grads

    def checkpointing(self, activation_checkpointing_kwargs=None, *args, **kwargs):
        if activation_checkpointing_kwargs is None:
            _note("gradient checkpointing ran reentrant, without making the inputs require grad, as transformers 4 did")
            activation_checkpointing_kwargs = {"use_reentrant": True}
        inside[0] = True
        try:
            return enable(self, activation_checkpointing_kwargs, *args, **kwargs)
        finally:
            inside[0] = False

    def input_grads(self, *args, **kwargs):
        if not inside[0]:
            return original_grads(self, *args, **kwargs)

    PreTrainedModel._activation_checkpointing_enable = checkpointing
    PreTrainedModel.enable_input_require_grads = input_grads


def probe_logits(model, ids) -> dict:
    """The logits of `model` on `ids`, with its adapter and (a peft model) without."""
    was_training = model.training
    model.eval()
    try:
        out = {"trained": _logits(model, ids)}
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                out["base"] = _logits(model, ids)
        return out
    finally:
        model.train(was_training)


def record_saves() -> None:
    """Where their code saves a model, and what."""
    import transformers
    from peft import PeftModel

    for cls in (PeftModel, transformers.PreTrainedModel):
        original = cls.save_pretrained

        def save(self, save_directory, *args, _original=original, **kwargs):
            if not Path(save_directory).resolve().is_relative_to(ROOT):  # nothing outside the copy is written
                _note(f"save_pretrained({str(save_directory)!r}) redirected into the temporary copy")
                save_directory = ROOT / "saved_elsewhere" / Path(save_directory).name
            result = _original(self, save_directory, *args, **kwargs)
            # read now: an atomic save renames the directory afterwards
            SESSION.saved.append((str(Path(save_directory).resolve()), where_called(), _saved_keys(save_directory)))
            return result

        cls.save_pretrained = save


# --------------------------------------------------------------------------- the checks


def _imports(node, at_import: bool, guarded: bool):
    """(module, line, runs at import, guarded by a try) of every import under `node`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            yield from ((a.name, child.lineno, at_import, guarded) for a in child.names)
        elif isinstance(child, ast.ImportFrom) and not child.level and child.module:
            yield child.module, child.lineno, at_import, guarded
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _imports(child, False, guarded)
        elif isinstance(child, ast.Try) and child.handlers:
            for part in child.body:
                yield from _imports(ast.Module(body=[part], type_ignores=[]), at_import, True)
            for part in [*child.handlers, *child.orelse, *child.finalbody]:
                yield from _imports(part, at_import, guarded)
        else:
            yield from _imports(child, at_import, guarded)


def count_imports() -> list[tuple[str, str, bool]]:
    """(module, file:line, runs at import) of every import in their package of a module outside the standard
    library, the course's requirements and their own package; imports inside a try are left out."""
    found = []
    for path in sorted((ROOT / "homework").rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            raise Finding("violation", f"syntax error: {exc.msg}", 22, f"{short(str(path))}:{exc.lineno}") from None
        for name, line, at_import, guarded in _imports(tree, True, False):
            top = name.split(".")[0]
            if guarded or top in sys.stdlib_module_names or top in COURSE_REQUIREMENTS or top == "homework":
                continue
            if (ROOT / "homework" / f"{top}.py").exists():
                continue  # an absolute import of a sibling module (their package run as a script)
            found.append((name, f"{short(str(path))}:{line}", at_import))
    return found


def check_imports(ctx):
    strays = count_imports()
    import importlib

    try:
        for name in ("homework", "homework.base_llm", "homework.data", "homework.sft"):
            ctx[name] = importlib.import_module(name)
    except BaseException as exc:  # their import failing is the finding
        if isinstance(exc, CheckTimeout):
            raise
        raise crash_finding(exc, f"import {name}") from None
    if not ctx["homework"].__file__ or not theirs(ctx["homework"].__file__):
        raise Finding("could not run", f"`import homework` found {ctx['homework'].__file__}, not the package checked")
    for name, where, _ in (s for s in strays if not s[2]):
        _note(f"{where} imports {name} inside a function: outside the course's requirements, it fails when that runs")
    strays = [s for s in strays if s[2]]
    if strays:
        mods = ", ".join(sorted({m for m, _, _ in strays}))
        raise Finding("violation", f"imports outside the course's requirements: {mods} (installed here, missing on "
                      "a machine with only the course's requirements)", 22, strays[0][1])


def _llm(ctx):
    if "llm" not in ctx:
        try:
            ctx["llm"] = ctx["homework.base_llm"].BaseLLM()
        except BaseException as exc:
            if isinstance(exc, CheckTimeout):
                raise
            raise crash_finding(exc, "BaseLLM()") from None
        ctx["llm"].model.eval()
    return ctx["llm"]


def _train_pairs(ctx) -> list[tuple]:
    if "pairs" not in ctx:
        data = ctx["homework.data"].Dataset("train")
        ctx["dataset"] = data
        ctx["pairs"] = [tuple(data[i]) for i in range(len(data))]
    return ctx["pairs"]


def _ids(x) -> list[int]:
    return [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def _worst(problems: list, total: int, what: str) -> tuple:
    """The most common problem (check key -> [examples]) as (cause, catalog row)."""
    key = max(problems, key=lambda k: len(problems[k]))
    first = problems[key][0]
    return f"{len(problems[key])} of {total} {what}: {first[1].what} (e.g. {first[0]!r})", first[1].row


def check_rows(ctx):
    from sft_contract.rows import row_problems

    sft, llm = ctx["homework.sft"], _llm(ctx)
    pairs = _train_pairs(ctx)
    try:
        dataset = sft.TokenizedDataset(llm.tokenizer, ctx["dataset"], sft.format_example)
        rows = [dataset[i] for i in range(len(pairs))]
        formatted = [sft.format_example(*p) for p in pairs]
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        raise crash_finding(exc, "tokenizing train.json") from None
    problems: dict[str, list] = {}
    for (question, _), row, fe in zip(pairs, rows, formatted):
        found = row_problems(llm.tokenizer, _ids(row["input_ids"]), _ids(row["labels"]), answer=str(fe["answer"]),
                             attention_mask=_ids(row["attention_mask"]) if "attention_mask" in row else None)
        for p in found[:1]:
            problems.setdefault(p.check, []).append((question, p))
    if problems:
        cause, row = _worst(problems, len(rows), "rows")
        raise Finding("violation", cause, row, where_defined(sft.tokenize))
    return f"{len(rows)} rows: answer + EOS supervised, nothing else"


def _valid(ctx, value: float, correct: float) -> bool:
    judge = getattr(ctx["homework.data"], "is_answer_valid", None)
    try:
        if judge is not None:
            return bool(judge(value, correct))
    except Exception:  # their judge failing: fall back to the course's rule
        pass
    return abs(round(value, 3) - round(correct, 3)) < 0.05 * abs(round(correct, 3)) if abs(correct) >= 1e-6 \
        else abs(value - correct) < 1e-3


def check_answers(ctx):
    sft, llm = ctx["homework.sft"], _llm(ctx)
    pairs = _train_pairs(ctx)
    unread, outside = [], []
    for question, correct in pairs:
        text = str(sft.format_example(question, correct)["answer"])
        try:
            value = float(llm.parse_answer(text))
        except Exception:
            value = float("nan")
        if not math.isfinite(value):
            unread.append((question, text))
        elif not _valid(ctx, value, float(correct)):
            outside.append((question, correct, text, value))
    if unread:
        q, text = unread[0]
        raise Finding("violation", f"their parse_answer cannot read {len(unread)} of {len(pairs)} trained answers "
                      f"(e.g. {text!r} for {q!r})", 24, where_defined(llm.parse_answer))
    if outside:
        q, correct, text, value = outside[0]
        raise Finding("violation", f"{len(outside)} of {len(pairs)} trained answers read back outside the course's "
                      f"tolerance (e.g. {correct} is trained as {text!r}, read back as {value})", 24,
                      where_defined(sft.format_example))
    return f"{len(pairs)} answers read back within tolerance"


class _Fed(BaseException):
    pass


def _capture_generate(model, record: list, eos: int | None = None):
    """A `model.generate` that records the ids and attention mask each call feeds; given `eos`, it answers at
    once with that one token (the prompt is all that is wanted)."""
    import torch

    original = model.generate

    def generate(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        record.append((ids.tolist(), mask.tolist()))
        if eos is not None:
            n = kwargs.get("num_return_sequences") or 1
            end = torch.full((ids.shape[0], 1), int(eos), dtype=ids.dtype, device=ids.device)
            return torch.cat([ids, end], 1).repeat_interleave(n, 0)
        return original(*args, **kwargs)

    return original, generate


def _fed_prompts(llm, questions) -> list[list[int]]:
    """The ids their inference (answer -> format_prompt -> batched_generate) feeds the model, per question."""
    fed = []
    original = llm.model.generate
    try:
        for question in questions:  # one at a time: a batched_generate may reorder prompts (by length) to pad less
            record: list = []
            llm.model.generate = _capture_generate(llm.model, record, eos=llm.tokenizer.eos_token_id)[1]
            llm.answer(question)
            if not record:
                raise Finding("could not run", "answer() never called model.generate")
            ids, mask = record[0]  # the first call: a second one would be a re-decoding of their own
            fed.append([i for i, m in zip(ids[0], mask[0]) if m])
            llm.model.generate = original
    finally:
        llm.model.generate = original
    return fed


def check_prompt(ctx):
    from sft_contract.rows import prompt_problem

    sft, llm = ctx["homework.sft"], _llm(ctx)
    pairs = _train_pairs(ctx)[:32]
    try:
        fed = _fed_prompts(llm, [q for q, _ in pairs])
    except BaseException as exc:
        if isinstance(exc, (CheckTimeout, Finding)):
            raise
        raise crash_finding(exc, "answer()") from None
    problems: dict[str, list] = {}
    for (question, answer), prompt_ids in zip(pairs, fed):
        row = sft.tokenize(llm.tokenizer, **sft.format_example(question, answer))
        ids, labels = _ids(row["input_ids"]), _ids(row["labels"])
        if "attention_mask" in row:  # padding, left or right, is no part of either prompt
            kept = [k for k, m in enumerate(_ids(row["attention_mask"])) if m]
            ids, labels = [ids[k] for k in kept], [labels[k] for k in kept]
        problem = prompt_problem(llm.tokenizer, ids, labels, prompt_ids)
        if problem:
            problems.setdefault(problem.check, []).append((question, problem))
    if problems:
        cause, row = _worst(problems, len(pairs), "prompts")
        where = where_defined(llm.format_prompt) if row in (11, 20, 21) else where_defined(sft.tokenize)
        raise Finding("violation", cause, row, where)
    return f"{len(pairs)} prompts: inference feeds exactly the ids training conditions on"


def check_batching(ctx):
    import torch

    llm = _llm(ctx)
    pairs = _train_pairs(ctx)
    by_len = sorted({len(q): q for q, _ in pairs[:64]}.items())
    questions = [q for _, q in (by_len[:1] + by_len[len(by_len) // 2:][:1] + by_len[-1:])] if len(by_len) > 2 \
        else [q for _, q in by_len]  # shortest, middle, longest: 3 lengths, 2 of them padded
    prompts = [llm.format_prompt(q) for q in questions]
    record: list = []
    original, patched = _capture_generate(llm.model, record)

    def short_generate(*args, **kwargs):  # 12 new tokens show a padding bug as well as 100 do
        kwargs["max_new_tokens"] = 12
        kwargs.pop("max_length", None)
        return patched(*args, **kwargs)

    llm.model.generate = short_generate
    torch.manual_seed(0)
    try:
        batched = llm.batched_generate(prompts)
        single = [llm.batched_generate([p])[0] for p in prompts]
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        raise crash_finding(exc, "batched_generate()") from None
    finally:
        llm.model.generate = original
    where = where_defined(llm.batched_generate)
    ids, mask = record[0]
    if any(any(m == 0 for m in row[row.index(1):]) for row in mask if 1 in row):
        raise Finding("violation", "batched_generate pads on the right: pad tokens sit between each shorter prompt "
                      "and its continuation", 12, where)
    for together, alone in zip(batched, single):
        if together != alone:
            raise Finding("violation", f"batched generation gave {together!r} where the prompt alone gave {alone!r}",
                          12, where)
    return f"{len(prompts)} prompts of {len(set(map(sum, mask)))} lengths: left-padded, batched == one by one"


def check_steps(ctx):
    import torch

    from sft_contract.contract import movement_problem
    from sft_contract.steps import step_problem

    sft = ctx["homework.sft"]
    llm = _llm(ctx)
    SESSION.probe = torch.tensor([llm.tokenizer(llm.format_prompt(_train_pairs(ctx)[0][0]))["input_ids"]])
    test_model = getattr(sft, "test_model", None)
    if test_model is not None:  # train_model often ends by grading 100 questions: not this check's job
        sft.test_model = lambda *a, **k: None
    try:
        ctx["train_result"] = sft.train_model("homework/sft_model")
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        ctx["train_error"] = exc
        raise crash_finding(exc, "train_model()") from None
    finally:
        if test_model is not None:
            sft.test_model = test_model
    where = where_defined(sft.train_model)
    if not SESSION.trainers:
        raise Finding("could not run", "train_model built no transformers Trainer: a loop of its own is not "
                      "stopped after a few steps here", None, where)
    trained = [r for r in SESSION.recorders if r.records]
    if not trained:
        raise Finding("violation", "train_model ran no optimizer step", 15, where)
    recorder = trained[-1]
    for r in recorder.records:
        problem = step_problem(r, recorder.warmup_steps)
        if problem:
            raise Finding("violation", f"step {r.step}: {problem[1]}", problem[0], where)
    schedule = schedule_problem(*SESSION.schedule) if SESSION.schedule else None
    if schedule:  # before the movement check: it explains tensors that did not move
        raise Finding("violation", schedule, 15, where)
    if set(SESSION.after) != set(SESSION.before):
        raise Finding("could not run", "the trained model's parameters changed names during training")
    problem = movement_problem(SESSION.before, SESSION.after, set(SESSION.before))
    if problem:
        raise Finding("violation", problem[0], problem[1], where)
    last = recorder.records[-1]
    return (f"{len(recorder.records)} steps: loss {recorder.records[0].loss:.3f} -> {last.loss:.3f}, "
            f"grad norm {last.grad_norm:.3g}, lr {last.learning_rate:.3g}; {len(SESSION.before)} trainable tensors moved")


MIN_TOTAL_LR = 1e-3  # peak learning rate x optimizer steps below which a LoRA adapter (B starts at 0) barely moves


def schedule_problem(lr: float, steps: int, warmup: int) -> str | None:
    """What in the whole run's schedule leaves the adapter about where it started, or None."""
    if steps and warmup >= steps:
        return (f"the warm-up ({warmup} steps) is as long as the whole run ({steps} steps): the learning rate never "
                f"reaches its peak {lr:g}")
    if steps and lr * steps < MIN_TOTAL_LR:
        return (f"learning rate {lr:g} over the run's {steps} steps (sum {lr * steps:.2g} < {MIN_TOTAL_LR:g}) leaves "
                "the adapter about where it started")
    return None


def check_compat(ctx):
    import transformers

    if "train_result" not in ctx and "train_error" not in ctx and not COMPAT:
        raise Finding("could not run", "train_model did not run")
    if COMPAT:
        names = ", ".join(f"`{k}`" for k in dict.fromkeys(k for k, _ in COMPAT))
        raise Finding("incompatible", f"incompatible with transformers {transformers.__version__}: {names} (run here "
                      "translated)", 23, COMPAT[0][1])
    return f"every argument is accepted by transformers {transformers.__version__}"


def _normal(name: str) -> str:
    """A trainable parameter's name as peft saves it: without the adapter name and modules_to_save."""
    return name.replace(".default", "").replace(".modules_to_save", "")


def _saved_keys(directory: str) -> set[str] | None:
    path = Path(directory)
    if (path / "adapter_model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
            return set(f.keys())
    if (path / "adapter_model.bin").is_file():
        import torch

        return set(torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True))
    return None


def check_saved(ctx):
    if "train_result" not in ctx:
        raise Finding("could not run", "train_model did not finish")
    where = where_defined(ctx["homework.sft"].train_model)
    adapters = [(d, w, k) for d, w, k in SESSION.saved if k is not None]
    if not adapters:
        raise Finding("violation", "train_model saved no adapter (no save_model / save_pretrained of the trained "
                      "model)", 14, where)
    directory, at, keys = adapters[-1]
    trained = sorted(n for n in SESSION.before if _normal(n) not in keys)
    if trained:
        raise Finding("violation", f"{len(trained)} trained tensors are not in the saved adapter {short(directory)}, "
                      f"e.g. {trained[0]}", 19, at or where)
    return f"every trained tensor is in {short(directory)}"


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def check_reload(ctx):
    if "train_result" not in ctx:
        raise Finding("could not run", "train_model did not finish")
    sft = ctx["homework.sft"]
    if "base" not in SESSION.logits:
        raise Finding("could not run", "the trained model is not a peft model: no base to tell a reload from")
    trained, base, ids = SESSION.logits["trained"], SESSION.logits["base"], SESSION.probe
    moved = float((trained - base).abs().max())
    if moved < 1e-6:
        raise Finding("could not run", "the trained model's logits are the base model's: nothing to tell a reload by")
    try:
        loaded = sft.load()
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        finding = crash_finding(exc, "load()")
        finding.row = finding.row or 14
        finding.verdict = "violation" if finding.verdict == "error" else finding.verdict
        finding.cause += " (does load() read the directory train_model saved to?)"
        raise finding from None
    got = _logits(getattr(loaded, "model", loaded).eval(), ids)
    where = where_defined(sft.load)
    # A reload may merge the adapter into the weights, which rounds differently: judge against the trained-vs-base gap
    if float((got - base).abs().max()) < 0.01 * moved:
        raise Finding("violation", "load() returns the base model (or a fresh, untrained adapter)", 14, where)
    gap = float((got - trained).abs().max())
    if gap > max(1e-4, 0.05 * moved):
        raise Finding("violation", f"load()'s logits differ from the trained model's by {gap:.3g} (training moved "
                      f"them by {moved:.3g}): it loads another adapter", 14, where)
    return f"load() gives the trained logits (within {gap:.2g})"


CHECKS = [("imports", check_imports), ("rows", check_rows), ("answers", check_answers), ("prompt", check_prompt),
          ("batching", check_batching), ("steps", check_steps), ("compat", check_compat), ("saved", check_saved),
          ("reload", check_reload)]


def _same_checks_as_the_kit() -> None:
    from sft_contract.course import CHECKS as NAMES

    assert [n for n, _ in CHECKS] == list(NAMES), "driver.CHECKS and sft_contract.course.CHECKS must name the same checks"


def _alarm(signum, frame):
    raise CheckTimeout()


def main(argv=None) -> int:
    global ROOT
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--limit", type=float, default=240.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    ROOT = Path(args.root).resolve()
    _same_checks_as_the_kit()
    out = os.fdopen(args.fd, "w", buffering=1)
    sys.path[0] = str(ROOT)  # their `homework`, not anything beside this script

    def send(**msg):
        out.write(json.dumps(msg) + "\n")

    import warnings

    warnings.filterwarnings("ignore")
    redirect_loading(args.model)
    run_cuda_code_on_cpu()
    instrument_training(args.steps)
    record_saves()
    signal.signal(signal.SIGALRM, _alarm)
    only = set(filter(None, args.only.split(",")))
    if only & {"compat", "saved", "reload"}:
        only.add("steps")  # they judge what train_model did
    ctx: dict = {}
    import_failed = False
    for name, check in CHECKS:
        if only and name not in only and name != "imports":
            continue
        send(event="start", check=name)
        start = time.monotonic()
        result = dict(event="result", check=name, verdict="ok", cause="", row=None, where=None)
        if import_failed:
            result.update(verdict="could not run", cause="their package does not import")
        else:
            signal.setitimer(signal.ITIMER_REAL, args.limit)
            try:
                result["cause"] = check(ctx) or ""
            except Finding as f:
                result.update(verdict=f.verdict, cause=f.cause, row=f.row, where=f.where)
            except CheckTimeout:
                done = max((len(r.records) for r in SESSION.recorders), default=0)
                result.update(verdict="could not run", cause=f"over the {args.limit:g} s time limit"
                              + (f" ({done} of {args.steps} optimizer steps done; --time-limit gives more)"
                                 if name == "steps" else ""))
            except BaseException as exc:  # their code raised somewhere a check did not expect
                f = crash_finding(exc, name)
                result.update(verdict=f.verdict, cause=f.cause, row=f.row, where=f.where)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if name == "imports" and "homework.sft" not in ctx:
                import_failed = True
        if CUDA_NEEDED and result["verdict"] == "ok" and name == "steps":
            result.update(verdict="needs CUDA", cause=", ".join(CUDA_NEEDED))
        result["seconds"] = round(time.monotonic() - start, 2)
        send(**result)
    send(event="notes", notes=NOTES)
    out.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # every result is sent: skip tearing down torch and their threads, which can take long on a busy machine


if __name__ == "__main__":
    sys.exit(main())
