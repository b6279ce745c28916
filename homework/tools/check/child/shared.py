"""What the checker's child process knows of the package it checks: where the copy is, what it changed to run
it (notes), what it found (findings), and how a crash or a missing module of theirs is told."""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path

ROOT = Path("/unset")  # the temporary copy's root, holding homework/ and data/ (the driver sets it)
NOTES: list[str] = []  # what was changed in their process to run it here
COMPAT: list[tuple[str, str]] = []  # (argument, where) that the installed transformers does not accept
CUDA_NEEDED: list[str] = []  # what of theirs only CUDA can run


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


def _note(text: str) -> None:
    if text not in NOTES:
        NOTES.append(text)
