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
  - every Trainer logs each step unfiltered and stops after --steps optimizer steps of CHECK_BATCH rows, so
    train_model runs its own recipe, collator and Trainer subclass, then its own save (the schedule is
    judged at their batch size);
  - a file or folder written by an absolute path outside the work directory lands in the copy;
  - a module their package imports that is missing here is reported, then stubbed, so the other checks run.
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

# The course's requirements (its requirements.txt: fire, lightning, torch, transformers, numpy, Pillow, tqdm,
# accelerate, tensorboard, peft) and what they install with them; anything else imported by a package fails
# `import homework` on a machine that installed only these. A dotted name allows that module and below only.
COURSE_REQUIREMENTS = {
    "fire", "termcolor", "lightning", "pytorch_lightning", "lightning_utilities", "torchmetrics", "fsspec", "aiohttp",
    "yaml", "torch", "networkx", "sympy", "mpmath", "jinja2", "markupsafe", "filelock", "typing_extensions",
    "transformers", "huggingface_hub", "tokenizers", "safetensors", "regex", "requests", "packaging", "numpy", "PIL",
    "tqdm", "accelerate", "psutil", "tensorboard", "absl", "grpc", "markdown", "werkzeug", "six", "google.protobuf",
    "peft", "datasets", "pandas", "matplotlib", "sft_contract", "pint"}
STUBBED: set[str] = set()  # modules missing here, stubbed (with all below them) so the later checks still run
DATA_SUBSTITUTED = False  # their data/ was missing: the copy holds this repository's
CHECK_BATCH = 2  # rows per training step here: 3 steps tell on 2 rows what they tell on 64, in seconds


class CheckTimeout(BaseException):  # BaseException: their `except Exception` must not swallow it
    """The check's time limit passed; args[0] is where their code was then (file:line function), or None."""


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
        return Finding("violation", f"{doing} failed: {text} ({missing_module_reason(exc.name or '')})", 22, where)
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


def missing_module_reason(name: str) -> str:
    """Why a module their code imports is missing: a misspelling of an installed one, or not installed here."""
    top = name.split(".")[0]
    lowered = top.lower()
    if lowered != top and _installed(lowered):
        return f"no module {top!r} exists: {lowered!r} does (a misspelling?)"
    if _allowed(name):
        return "a module the course's requirements install, missing here"
    return "not installed here, and not one of the course's requirements or what they install"


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _allowed(name: str) -> bool:
    return any(name == r or name.startswith(r + ".") for r in COURSE_REQUIREMENTS)


# --------------------------------------------------------------------------- running their code here


def inside_the_copy(path, what: str):
    """`path`, or where a write of theirs to it lands instead when it is outside the work directory (the copy,
    its temporary and cache folders): under the copy's written_elsewhere/, the same path below it."""
    try:
        resolved = Path(os.fspath(path)).resolve()
    except (TypeError, ValueError, OSError):
        return path
    if resolved.is_relative_to(ROOT.parent) or resolved.parts[:2] in (("/", "dev"), ("/", "proc")):
        return path
    _note(f"{what} {str(path)!r} redirected into the temporary copy")
    return str(ROOT / "written_elsewhere" / resolved.relative_to(resolved.anchor))


def redirect_writes() -> None:
    """Files and folders their code writes by an absolute path outside the work directory land in the copy."""
    import builtins
    import io

    original_open, original_mkdir, original_makedirs = io.open, os.mkdir, os.makedirs

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            target = inside_the_copy(file, "a write to")
            if target is not file:
                original_makedirs(os.path.dirname(target), exist_ok=True)
            file = target
        return original_open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        target = inside_the_copy(path, "a folder")
        if target is not path:
            return original_makedirs(target, exist_ok=True)
        return original_mkdir(path, *args, **kwargs)

    def makedirs(name, *args, **kwargs):
        return original_makedirs(inside_the_copy(name, "a folder"), *args, **kwargs)

    builtins.open = io.open = open_
    os.mkdir, os.makedirs = mkdir, makedirs


class _StubType(type):
    """A stand-in class for anything read from a stubbed module: callable, subclassable, and every attribute
    is another stand-in, so their module-level code runs; what their functions do with it is their finding."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub(name)


def _stub(name: str):
    return _StubType(name, (), {"__init__": lambda self, *a, **k: None, "__call__": lambda self, *a, **k: self,
                                "__getattr__": lambda self, n: _stub(n)})


def stub_missing_modules() -> None:
    """Imports of a module in STUBBED (and anything below it) give a module of stand-ins."""
    import importlib.abc
    import importlib.util
    import types

    class Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _stub(name)

    class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if any(name == m or name.startswith(m + ".") for m in STUBBED):
                return importlib.util.spec_from_loader(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return Module(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    sys.meta_path.insert(0, StubFinder())




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
        self.arguments_built = 0  # TrainingArguments their code built
        self.their_schedulers: dict = {}  # id -> a scheduler their code handed the Trainer (optimizers=)
        self.frozen = None  # what their own scheduler does to the learning rate over the run, when it freezes it


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
            theirs = (kwargs.get("per_device_train_batch_size", 8), kwargs.get("gradient_accumulation_steps", 1))
            if theirs != (min(theirs[0], CHECK_BATCH), 1):
                _note(f"trained {CHECK_BATCH} rows a step, without accumulation (theirs: {theirs[0]} x {theirs[1]}); "
                      "the schedule is judged at theirs")
            kwargs["per_device_train_batch_size"] = min(theirs[0], CHECK_BATCH)
            kwargs["per_device_eval_batch_size"] = min(kwargs.get("per_device_eval_batch_size", 8), CHECK_BATCH)
            kwargs["gradient_accumulation_steps"] = 1
            original_args_init(self, *args, **kwargs)
            SESSION.arguments_built += 1
            self.check_theirs = theirs  # (batch, accumulation) as their code set them: the schedule is theirs
            return None
        return original_args_init(self, *args, **kwargs)

    TrainingArguments.__init__ = args_init
    TrainingArguments.__signature__ = inspect.signature(original_args_init)

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
            # the whole run's schedule, as their arguments make it (this check stops it after a few steps)
            steps = their_run_steps(args, state, kwargs.get("train_dataloader"))
            SESSION.schedule = (args.learning_rate, steps, args.get_warmup_steps(steps))
            scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
            if scheduler is not None and scheduler is SESSION.their_schedulers.get(id(scheduler)):
                SESSION.frozen = frozen_schedule(scheduler, getattr(scheduler, "optimizer", None), steps)
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
        optimizers = kwargs.get("optimizers") or (None, None)
        if len(optimizers) == 2 and optimizers[1] is not None:
            SESSION.their_schedulers[id(optimizers[1])] = optimizers[1]
        original_trainer_init(self, *args, **kwargs)
        recorder = StepRecorder()
        self.add_callback(recorder)
        self.add_callback(StopAfter())
        SESSION.trainers.append(self)
        SESSION.recorders.append(recorder)

    Trainer.__init__ = trainer_init
    checkpoint_as_transformers_4()


def their_run_steps(args, state, train_dataloader) -> int:
    """The optimizer steps of the run their arguments describe (the check trains smaller batches)."""
    theirs = getattr(args, "check_theirs", None)
    if args.max_steps > 0 or theirs is None:
        return state.max_steps
    try:
        rows = len(train_dataloader.dataset)
    except (AttributeError, TypeError):
        return state.max_steps
    batch, accumulation = theirs
    per_epoch = max(math.ceil(rows / (batch * max(args.world_size, 1))) // max(accumulation, 1), 1)
    return math.ceil(args.num_train_epochs * per_epoch)


FROZEN = 1e-3  # a learning rate below this fraction of its peak moves a LoRA adapter no more


def frozen_schedule(scheduler, optimizer, steps: int) -> str | None:
    """Their own scheduler stepped over the whole run (then put back): whether it takes the learning rate to
    about nothing before a quarter of the run."""
    if optimizer is None or not hasattr(scheduler, "state_dict") or steps < 4:
        return None
    saved, lrs = scheduler.state_dict(), [g["lr"] for g in optimizer.param_groups]
    import warnings

    seen = []
    try:
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": meant here
            warnings.simplefilter("ignore")
            for _ in range(steps):
                seen.append(optimizer.param_groups[0]["lr"])
                scheduler.step()
    except Exception:  # a scheduler that needs a metric (ReduceLROnPlateau) or more: not judged here
        return None
    finally:
        scheduler.load_state_dict(saved)
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
    peak = max(seen)
    low = next((k for k, lr in enumerate(seen) if lr < FROZEN * peak), None)
    if peak <= 0 or low is None or low >= steps // 4:
        return None
    return (f"their {type(scheduler).__name__} takes the learning rate from {peak:g} to {seen[low]:.2g} by step {low} "
            f"of the run's {steps}: the adapter stops moving after {low / steps:.0%} of the run")


AS_TRANSFORMERS_4 = [True]  # off for a second run, once the first has shown what transformers 4 would do


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
        if not AS_TRANSFORMERS_4[0]:
            return enable(self, activation_checkpointing_kwargs, *args, **kwargs)
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
            if guarded or top in sys.stdlib_module_names or _allowed(name) or top == "homework":
                continue
            if (ROOT / "homework" / f"{top}.py").exists():
                continue  # an absolute import of a sibling module (their package run as a script)
            found.append((name, f"{short(str(path))}:{line}", at_import))
    return found


COURSE_MODULES = ("homework", "homework.base_llm", "homework.data", "homework.sft")


def import_theirs(ctx) -> Finding | None:
    """Import their package into ctx. A module missing here is stubbed (at most 5) so that the other checks
    still run on the rest of their code; it is the finding unless the course's requirements install it (then
    it is missing only here). A misspelt module is not stubbed."""
    import importlib

    first = None
    for _ in range(6):
        try:
            for name in COURSE_MODULES:
                ctx[name] = importlib.import_module(name)
            return first
        except BaseException as exc:  # their import failing is the finding
            if isinstance(exc, CheckTimeout):
                raise
            finding = crash_finding(exc, f"import {name}")
            missing = getattr(exc, "name", None) or ""  # google.colab where google exists, not all of google
            if (not isinstance(exc, ModuleNotFoundError) or not missing or missing.split(".")[0] == "homework"
                    or missing in STUBBED or "misspelling" in finding.cause or len(STUBBED) >= 5):
                for name in COURSE_MODULES:
                    ctx.pop(name, None)
                return first or finding
            if _allowed(missing):
                _note(f"{missing} is not installed here, but the course's requirements install it ({finding.where})")
            else:
                first = first or finding
            STUBBED.add(missing)
            for loaded in [m for m in sys.modules if m == "homework" or m.startswith("homework.")]:
                del sys.modules[loaded]
    return first


def check_imports(ctx):
    strays = count_imports()
    failed = import_theirs(ctx)
    if STUBBED and "homework.sft" in ctx:
        _note(f"the checks after `imports` ran with {', '.join(sorted(STUBBED))} stubbed (missing here)")
    if failed:
        raise failed
    if not ctx["homework"].__file__ or not theirs(ctx["homework"].__file__):
        raise Finding("could not run", f"`import homework` found {ctx['homework'].__file__}, not the package checked")
    for name, where, _ in (s for s in strays if not s[2]):
        _note(f"{where} imports {name} inside a function: outside the course's requirements, it fails when that runs")
    strays = [s for s in strays if s[2]]
    if strays:
        mods = ", ".join(sorted({m for m, _, _ in strays}))
        raise Finding("violation", f"imports outside the course's requirements: {mods} (installed here, but missing "
                      "on a machine with only the course's requirements)", 22, strays[0][1])
    return "homework, homework.base_llm, homework.data and homework.sft import"


def inference_class(ctx):
    """The class whose prompts the grader meets: the BaseLLM subclass their load() builds (a subclass with a
    format_prompt of its own is common), else BaseLLM."""
    import textwrap

    base, sft = ctx["homework.base_llm"].BaseLLM, ctx["homework.sft"]
    load = getattr(sft, "load", None)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(load)))
    except (TypeError, OSError, SyntaxError):
        return base
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            cls = getattr(load, "__globals__", {}).get(name) if name else None
            if isinstance(cls, type) and issubclass(cls, base) and cls is not base:
                return cls
    return base


def dry_load(ctx):
    """What their load() returns before anything is trained (peft's loading of a missing adapter hands back
    the base model): the object the grader calls answer() on, with whatever load() sets on it. None when
    load() needs more than that."""
    from peft import PeftModel

    load = getattr(ctx["homework.sft"], "load", None)
    if load is None:
        return None
    original = PeftModel.__dict__["from_pretrained"]

    def from_pretrained(cls, model, model_id, *args, **kwargs):
        if (Path(str(model_id)) / "adapter_config.json").is_file():
            return original.__func__(cls, model, model_id, *args, **kwargs)
        return model

    PeftModel.from_pretrained = classmethod(from_pretrained)
    try:
        llm = load()
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        return None
    finally:
        PeftModel.from_pretrained = original
    needed = ("tokenizer", "model", "format_prompt", "answer", "batched_generate", "parse_answer")
    return llm if all(hasattr(llm, a) for a in needed) else None


def _llm(ctx):
    if "llm" not in ctx:
        llm = dry_load(ctx)
        if llm is None:
            cls = inference_class(ctx)
            try:
                llm = cls()
            except BaseException as exc:
                if isinstance(exc, CheckTimeout):
                    raise
                raise crash_finding(exc, f"{cls.__name__}()") from None
            how = "BaseLLM()" if cls is ctx["homework.base_llm"].BaseLLM else f"{cls.__name__}(), the class load() builds"
            _note(f"their load() needs a trained adapter: inference checked on {how}")
        ctx["llm"] = llm
        ctx["llm"].model.eval()
        ctx["padding_side"] = ctx["llm"].tokenizer.padding_side
    return ctx["llm"]


def as_built(ctx) -> None:
    """The shared tokenizer's padding side back to what their class set: their tokenize may set it for
    training, which the grader's freshly loaded model never sees."""
    if "llm" in ctx:
        ctx["llm"].tokenizer.padding_side = ctx["padding_side"]


def _train_pairs(ctx) -> list[tuple]:
    if "pairs" not in ctx:
        data = ctx["homework.data"].Dataset("train")
        ctx["dataset"] = data
        ctx["pairs"] = [tuple(data[i]) for i in range(len(data))]
    return ctx["pairs"]


def _ids(x) -> list[int]:
    x = x.tolist() if hasattr(x, "tolist") else list(x)
    if x and isinstance(x[0], list):  # one row of a collated batch
        x = x[0]
    return [int(v) for v in x]


class Row:
    """One training row: its question and correct value, its ids, labels and attention mask (None when it
    has none), and the answer text it should supervise (None when that is not known)."""

    def __init__(self, question, correct, ids, labels, mask, answer):
        self.question, self.correct, self.ids, self.labels, self.mask, self.answer = \
            question, correct, ids, labels, mask, answer

    def unpadded(self) -> tuple[list[int], list[int]]:
        if self.mask is None:
            return self.ids, self.labels
        kept = [k for k, m in enumerate(self.mask) if m]
        return [self.ids[k] for k in kept], [self.labels[k] for k in kept]


def _row(question, correct, item, answer) -> Row:
    mask = _ids(item["attention_mask"]) if "attention_mask" in item else None
    return Row(question, correct, _ids(item["input_ids"]), _ids(item["labels"]), mask, answer)


def course_rows(ctx) -> list[Row]:
    """train.json through their format_example, tokenize and TokenizedDataset (the course interface)."""
    if "course_rows" not in ctx:
        sft, llm = ctx["homework.sft"], _llm(ctx)
        pairs = _train_pairs(ctx)
        try:
            dataset = sft.TokenizedDataset(llm.tokenizer, ctx["dataset"], sft.format_example)
            ctx["course_rows"] = [_row(q, a, dataset[i], str(sft.format_example(q, a)["answer"]))
                                  for i, (q, a) in enumerate(pairs)]
        except BaseException as exc:
            if isinstance(exc, CheckTimeout):
                raise
            ctx["course_rows"] = crash_finding(exc, "tokenizing train.json")
    return ctx["course_rows"]


MAX_TRAINED_ROWS = 2000


def trainer_rows(ctx) -> list[Row] | None:
    """The rows their Trainer trains on: its train_dataset through its data collator, two rows at a time as
    the steps ran; None when train_model built no Trainer with a data set, or its rows are not the data
    file's rows in order (row k holds question k)."""
    if "trainer_rows" in ctx:
        return ctx["trainer_rows"]
    ctx["trainer_rows"] = None
    trainer = next((t for t in reversed(SESSION.trainers) if getattr(t, "train_dataset", None) is not None), None)
    if trainer is None:
        return None
    pairs, tok = _train_pairs(ctx), _llm(ctx).tokenizer
    try:
        data, collate = trainer.train_dataset, trainer.data_collator
        n = min(len(data), len(pairs), MAX_TRAINED_ROWS)
        rows = []
        for start in range(0, n, CHECK_BATCH):
            items = [data[k] for k in range(start, min(start + CHECK_BATCH, n))]
            batch = collate(items) if collate is not None else items[0]
            for j in range(len(items)):
                part = {key: batch[key][j] for key in ("input_ids", "labels", "attention_mask") if key in batch}
                q, a = pairs[start + j]
                rows.append(_row(q, a, part, None))
    except Exception:  # rows of a shape the checks do not read (text the collator tokenizes, ...)
        return None
    squeeze = lambda text: "".join(text.split())  # noqa: E731
    if not all(squeeze(r.question) in squeeze(tok.decode(r.ids)) for r in rows[:32]):
        _note("their Trainer's train_dataset does not hold train.json's rows in order: the row checks read "
              "TokenizedDataset's")
        return None
    ctx["trainer_rows"] = rows
    return rows


def training_rows(ctx) -> tuple[list[Row], str]:
    """The rows to judge, and where from: their Trainer's when it trains on rows other than TokenizedDataset's
    (what is trained is what counts), else TokenizedDataset's."""
    course, trained = course_rows(ctx), trainer_rows(ctx)
    if trained is not None:
        same = not isinstance(course, Finding) and all(
            (a.ids, a.labels) == (b.ids, b.labels) for a, b in zip(course[:32], trained[:32]))
        if not same:
            if "rows_note" not in ctx:
                ctx["rows_note"] = True
                failed = f" ({course.cause})" if isinstance(course, Finding) else ""
                _note(f"train_model trains on rows other than TokenizedDataset's{failed}: the row, answer and prompt "
                      "checks read the rows its Trainer trains on")
            return trained, "their Trainer's train_dataset"
    if isinstance(course, Finding):
        raise course
    return course, "TokenizedDataset"


def supervised_text(tokenizer, row: Row) -> str:
    from sft_contract.rows import supervised_positions

    return tokenizer.decode([row.ids[k] for k in supervised_positions(row.labels)], skip_special_tokens=True)


def _worst(problems: list, total: int, what: str) -> tuple:
    """The most common problem (check key -> [examples]) as (cause, catalog row)."""
    key = max(problems, key=lambda k: len(problems[k]))
    first = problems[key][0]
    return f"{len(problems[key])} of {total} {what}: {first[1].what} (e.g. {first[0]!r})", first[1].row


def check_rows(ctx):
    from sft_contract.rows import row_problems

    sft, llm = ctx["homework.sft"], _llm(ctx)
    rows, source = training_rows(ctx)
    problems: dict[str, list] = {}
    for row in rows:
        found = row_problems(llm.tokenizer, row.ids, row.labels, answer=row.answer, attention_mask=row.mask)
        for p in found[:1]:
            problems.setdefault(p.check, []).append((row.question, p))
    if problems:
        cause, row = _worst(problems, len(rows), "rows")
        where = where_defined(sft.tokenize) if source == "TokenizedDataset" else where_defined(sft.train_model)
        raise Finding("violation", cause, row, where)
    return f"{len(rows)} rows of {source}: answer + EOS supervised, nothing else"


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
    rows, source = training_rows(ctx)
    unread, outside = [], []
    for row in rows:
        text = row.answer if row.answer is not None else supervised_text(llm.tokenizer, row)
        try:
            value = float(llm.parse_answer(text))
        except Exception:
            value = float("nan")
        if not math.isfinite(value):
            unread.append((row.question, text))
        elif not _valid(ctx, value, float(row.correct)):
            outside.append((row.question, row.correct, text, value))
    where = where_defined(sft.format_example) if source == "TokenizedDataset" else where_defined(sft.train_model)
    if unread:
        q, text = unread[0]
        raise Finding("violation", f"their parse_answer cannot read {len(unread)} of {len(rows)} trained answers "
                      f"(e.g. {text!r} for {q!r})", 24, where_defined(llm.parse_answer))
    if outside and DATA_SUBSTITUTED:
        q, correct, text, value = outside[0]
        raise Finding("could not run", f"{len(outside)} of {len(rows)} trained answers read back outside the course's "
                      f"tolerance on this repository's data, used because theirs was missing (e.g. {correct} as "
                      f"{text!r}): not judged, the course's answers span a narrower range", None, where)
    if outside:
        q, correct, text, value = outside[0]
        raise Finding("violation", f"{len(outside)} of {len(rows)} trained answers read back outside the course's "
                      f"tolerance (e.g. {correct} is trained as {text!r}, read back as {value})", 24, where)
    return f"{len(rows)} answers read back within tolerance"


class _Fed(BaseException):
    pass


def _capture_generate(model, record: list, reply: list[int] | None = None):
    """A `model.generate` that records the ids and attention mask each call feeds; given `reply`, it answers at
    once with those ids after every prompt instead of generating."""
    import torch

    original = model.generate

    def generate(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        record.append((ids.tolist(), mask.tolist()))
        if reply is not None:
            n = kwargs.get("num_return_sequences") or 1
            tail = torch.tensor([reply], dtype=ids.dtype, device=ids.device).expand(ids.shape[0], -1)
            return torch.cat([ids, tail], 1).repeat_interleave(n, 0)
        return original(*args, **kwargs)

    return original, generate


def _fed_prompts(llm, questions, replies) -> list[tuple[list[int], object]]:
    """Per question, the ids their inference (answer -> format_prompt -> batched_generate) feeds the model, and
    what their answer() returns when the model replies with the given ids."""
    fed = []
    original = llm.model.generate
    try:
        for question, reply in zip(questions, replies):  # one at a time: a batched_generate may reorder prompts
            record: list = []
            llm.model.generate = _capture_generate(llm.model, record, reply)[1]
            value = llm.answer(question)
            if not record:
                raise Finding("could not run", "answer() never called model.generate")
            ids, mask = record[0]  # the first call: a second one would be a re-decoding of their own
            if isinstance(value, (list, tuple)) and value:
                value = value[0]
            fed.append(([i for i, m in zip(ids[0], mask[0]) if m], value))
            llm.model.generate = original
    finally:
        llm.model.generate = original
    return fed


def check_prompt(ctx):
    """The ids inference feeds are the training row's prompt, and what training teaches the model to write
    after them reads back through their answer()."""
    from sft_contract.rows import supervised_positions

    sft, llm = ctx["homework.sft"], _llm(ctx)
    rows, source = training_rows(ctx)
    rows = rows[:32]
    replies = [[ids[k] for k in supervised_positions(labels)] or [llm.tokenizer.eos_token_id]
               for ids, labels in (r.unpadded() for r in rows)]
    as_built(ctx)
    try:
        fed = _fed_prompts(llm, [r.question for r in rows], replies)
    except BaseException as exc:
        if isinstance(exc, (CheckTimeout, Finding)):
            raise
        raise crash_finding(exc, "answer()") from None
    finally:
        as_built(ctx)
    problems: dict[str, list] = {}
    unread = []
    for row, (prompt_ids, value), reply in zip(rows, fed, replies):
        ids, labels = row.unpadded()
        # the answer's text is known for TokenizedDataset's rows only (a Trainer's rows may supervise anything)
        problem = _conditioning_problem(llm.tokenizer, ids, labels, prompt_ids, row.answer or "")
        if problem:
            problems.setdefault(problem.check, []).append((row.question, problem))
        elif supervised_positions(labels) and not _reads_back(llm, value, llm.tokenizer.decode(reply)):
            unread.append((row.question, llm.tokenizer.decode(reply), value))
    if problems:
        cause, row = _worst(problems, len(rows), "prompts")
        if row in (11, 20, 21):
            where = where_defined(llm.format_prompt)
        else:
            where = where_defined(sft.tokenize if source == "TokenizedDataset" else sft.train_model)
        raise Finding("violation", cause, row, where)
    if unread:
        question, reply, value = unread[0]
        raise Finding("violation", f"{len(unread)} of {len(rows)} trained continuations do not read back through "
                      f"answer(): after its prompt the model is taught {reply!r}, and answer() returns {value!r} "
                      f"(e.g. {question!r})", 24, where_defined(llm.parse_answer))
    return f"{len(rows)} prompts: inference feeds exactly the ids training conditions on, and reads its answer back"


def _conditioning_problem(tokenizer, ids, labels, prompt_ids, answer: str):
    """The kit's prompt check, with two refinements that need the answer's text: a row that supervises nothing
    (row 2, reported by `rows`) is judged at where its answer starts, so a second defect still shows; and text
    between the inference prompt and the answer that is not the answer's start is a prompt of training's own
    (row 11), not a tokenization seam (row 4)."""
    from sft_contract.rows import RowProblem, prompt_problem, supervised_positions

    sup = supervised_positions(labels)
    if not sup and answer.strip():
        start = next((k for k in range(len(ids) - 1, -1, -1)
                      if tokenizer.decode(ids[k:]).strip().startswith(answer.strip())), None)
        if start is None:
            return None
        labels = [-100] * start + list(ids[start:])
        sup = supervised_positions(labels)
    problem = prompt_problem(tokenizer, ids, labels, prompt_ids)
    n = len(prompt_ids)
    if problem and problem.check == "answer_start_unsupervised":
        gap = tokenizer.decode(ids[n:sup[0]]).strip()
        if gap and not answer.strip().startswith(gap):
            return RowProblem("prompt_not_prefix", 11, f"training feeds {gap!r} between the inference prompt and the "
                              "answer; inference does not")
    if problem and problem.check == "prompt_supervised":
        overlap = tokenizer.decode(ids[sup[0]:n]).strip()
        if overlap and overlap in answer:
            return RowProblem("prompt_not_prefix", 11, f"the inference prompt ends with {overlap!r}, which training "
                              "teaches as the answer's start: the model learns to write it, inference already feeds it")
    return problem


def _reads_back(llm, value, text: str) -> bool:
    """Whether answer() returned the value their parse_answer reads in the trained continuation (whether that
    value is right is the answers check's question)."""
    for special in {llm.tokenizer.eos_token, llm.tokenizer.pad_token} - {None}:
        text = text.replace(special, "")
    try:
        trained = float(llm.parse_answer(text))
    except Exception:
        return True  # unreadable trained text: the answers check reports it
    if not math.isfinite(trained):
        return True
    try:
        return math.isclose(float(value), trained, rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


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
    side = llm.tokenizer.padding_side
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
        llm.tokenizer.padding_side = side
    where = where_defined(llm.batched_generate)
    ids, mask = record[0]
    if any(any(m == 0 for m in row[row.index(1):]) for row in mask if 1 in row):
        raise Finding("violation", "batched_generate pads on the right: pad tokens sit between each shorter prompt "
                      "and its continuation", 12, where)
    ends = tuple(t for t in {llm.tokenizer.eos_token, llm.tokenizer.pad_token} if t)
    for together, alone in zip(batched, single):
        if _without_trailing(together, ends) != _without_trailing(alone, ends):  # left-padded, yet not the same: each output is cut somewhere else than the padded width
            raise Finding("violation", f"batched generation gave {together!r} where the prompt alone gave {alone!r}: "
                          "with left padding every output starts at the padded input's width", 25, where)
    return f"{len(prompts)} prompts of {len(set(map(sum, mask)))} lengths: left-padded, batched == one by one"


def _without_trailing(text, ends: tuple) -> str:
    """`text` without the EOS or pad tokens at its end: in a batch, a row that ended early is padded out."""
    if not isinstance(text, str):
        return text
    while ends and text.endswith(ends):
        text = text[:-len(next(e for e in ends if text.endswith(e)))]
    return text


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
        finding = crash_finding(exc, "train_model()")
        if finding.row == 8:
            finding.cause += train_again(ctx, sft)
        raise finding from None
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
    schedule = (schedule_problem(*SESSION.schedule) if SESSION.schedule else None) or SESSION.frozen
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


def train_again(ctx, sft) -> str:
    """After row 8 (frozen inputs under gradient checkpointing, as transformers 4 ran it): train_model once more
    as transformers 5 runs it, so that saving and loading are still checked. What to add to the cause."""
    global SESSION
    AS_TRANSFORMERS_4[0] = False
    probe, SESSION = SESSION.probe, Session(SESSION.steps)
    SESSION.probe = probe
    try:
        ctx["train_result"] = sft.train_model("homework/sft_model")
    except BaseException as exc:
        if isinstance(exc, CheckTimeout):
            raise
        return f"; run again as transformers 5 runs it, it raised {type(exc).__name__} too"
    ctx.pop("train_error", None)
    return "; the checks after this one judge a second run, as transformers 5 runs it (inputs made to require grad)"


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


def source_compat() -> list[tuple[str, str]]:
    """(argument, file:line) of every TrainingArguments(...) / Trainer(tokenizer=...) keyword in their sft.py that
    the installed transformers does not accept, read from the source."""
    import dataclasses

    from transformers import Trainer, TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    trainer_takes_tokenizer = "tokenizer" in inspect.signature(Trainer.__init__).parameters
    path = ROOT / "homework" / "sft.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        for kw in node.keywords:
            if name == "TrainingArguments" and kw.arg and kw.arg not in known:
                found.append((kw.arg, f"homework/sft.py:{node.lineno}"))
            elif name == "Trainer" and kw.arg == "tokenizer" and not trainer_takes_tokenizer:
                found.append(("Trainer(tokenizer=...)", f"homework/sft.py:{node.lineno}"))
    return found


def check_compat(ctx):
    import transformers

    version = transformers.__version__
    found, how = COMPAT, "run here translated"
    if not SESSION.arguments_built:  # train_model stopped (or trained) before building any: read the source
        found, how = source_compat(), "read from the source: train_model did not get as far as building them"
    if found:
        names = ", ".join(f"`{k}`" for k in dict.fromkeys(k for k, _ in found))
        raise Finding("incompatible", f"incompatible with transformers {version}: {names} ({how})", 23, found[0][1])
    if "train_result" not in ctx and "train_error" not in ctx:
        raise Finding("could not run", "train_model did not run")
    if not SESSION.arguments_built:
        return f"their sft.py passes no argument that transformers {version} removed (read from the source)"
    return f"every argument is accepted by transformers {version}"


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
# train first: the row checks then read the rows their Trainer trains on (reported in the order above)
RUN_ORDER = ["imports", "steps", "compat", "saved", "reload", "rows", "answers", "prompt", "batching"]


def _same_checks_as_the_kit() -> None:
    from sft_contract.course import CHECKS as NAMES

    assert [n for n, _ in CHECKS] == list(NAMES), "driver.CHECKS and sft_contract.course.CHECKS must name the same checks"
    assert sorted(RUN_ORDER) == sorted(NAMES), "RUN_ORDER runs every check once"


def _alarm(signum, frame):
    while frame is not None and not theirs(frame.f_code.co_filename):
        frame = frame.f_back
    raise CheckTimeout(f"{short(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}" if frame else None)


def timeout_result(name: str, args, where: str | None) -> dict:
    """A check stopped by its time limit: where their code was, and what the steps check can judge anyway."""
    if name == "steps" and SESSION.schedule and (schedule_problem(*SESSION.schedule) or SESSION.frozen):
        return dict(verdict="violation", cause=schedule_problem(*SESSION.schedule) or SESSION.frozen, row=15,
                    where=where)
    done = max((len(r.records) for r in SESSION.recorders), default=0)
    cause = f"over the {args.limit:g} s time limit"
    if name == "steps":
        cause += f" ({done} of {args.steps} optimizer steps done" + ("" if SESSION.trainers else ", no Trainer built yet")
        cause += "; --time-limit gives more)"
    if where:
        cause += f"; their code was at {where}"
    return dict(verdict="could not run", cause=cause, where=where)


def main(argv=None) -> int:
    global ROOT
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--limit", type=float, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--data-substituted", action="store_true")
    args = parser.parse_args(argv)
    global DATA_SUBSTITUTED
    ROOT, DATA_SUBSTITUTED = Path(args.root).resolve(), args.data_substituted
    _same_checks_as_the_kit()
    out = os.fdopen(args.fd, "w", buffering=1)
    sys.path[0] = str(ROOT)  # their `homework`, not anything beside this script

    def send(**msg):
        out.write(json.dumps(msg) + "\n")

    import warnings

    warnings.filterwarnings("ignore")
    redirect_loading(args.model)
    redirect_writes()
    stub_missing_modules()
    run_cuda_code_on_cpu()
    instrument_training(args.steps)
    record_saves()
    signal.signal(signal.SIGALRM, _alarm)
    only = set(filter(None, args.only.split(",")))
    if only & {"compat", "saved", "reload"}:
        only.add("steps")  # they judge what train_model did
    ctx: dict = {}
    import_failed = False
    checks = dict(CHECKS)
    for name, check in ((n, checks[n]) for n in RUN_ORDER):
        if only and name not in only and name != "imports":
            continue
        send(event="start", check=name)
        start = time.monotonic()
        result = dict(event="result", check=name, verdict="ok", cause="", row=None, where=None)
        if import_failed:
            result.update(verdict="could not run", cause="their package does not import")
        else:
            as_built(ctx)
            signal.setitimer(signal.ITIMER_REAL, args.limit)
            try:
                result["cause"] = check(ctx) or ""
            except Finding as f:
                result.update(verdict=f.verdict, cause=f.cause, row=f.row, where=f.where)
            except CheckTimeout as stop:
                result.update(timeout_result(name, args, stop.args[0] if stop.args else None))
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
