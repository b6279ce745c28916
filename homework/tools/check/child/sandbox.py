"""Their code, run here: hub checkpoints load the model given, CUDA-only calls run on the CPU, writes outside
the work directory land in the copy, and modules missing here are stubbed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import shared
from .shared import CUDA_NEEDED, STUBBED, _note


def inside_the_copy(path, what: str):
    """`path`, or where a write of theirs to it lands instead when it is outside the work directory (the copy,
    its temporary and cache folders): under the copy's written_elsewhere/, the same path below it."""
    try:
        resolved = Path(os.fspath(path)).resolve()
    except (TypeError, ValueError, OSError):
        return path
    if resolved.is_relative_to(shared.ROOT.parent) or resolved.parts[:2] in (("/", "dev"), ("/", "proc")):
        return path
    _note(f"{what} {str(path)!r} redirected into the temporary copy")
    return str(shared.ROOT / "written_elsewhere" / resolved.relative_to(resolved.anchor))


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
