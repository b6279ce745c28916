"""Shared test helpers and this project's model fixtures (hw_tokenizer, hw_base_model, lora_model, train_steps, ...)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tolerant_snapshot import BF16TolerantJSONExtension, TolerantJSONExtension

REPO = Path(__file__).resolve().parent.parent
# The caller's environment as pytest started: tests that need the caller's model wheel (a machine with
# no network sets HOMEWORK_WHEEL) read it from here, since each test runs with HOMEWORK_* cleared.
CALLER_ENV = dict(os.environ)
# Cleared for every test so a caller's setting (a fault left exported, a wheel, a device) cannot
# change what a test sees. HOMEWORK_CACHE stays: it is where the converted model lives, and tests of
# the cache itself point it elsewhere with monkeypatch. The plugin read --hw-model/--hw-device (and
# their environment fallbacks) once at start-up, before this runs.
ISOLATED_ENV = ("HOMEWORK_FAULT", "HOMEWORK_FAULT_RANK", "HOMEWORK_WHEEL", "HOMEWORK_MODEL", "HOMEWORK_DEVICE", "HOMEWORK_DATA_DIR",
                "HOMEWORK_NAMED_CHECK")


# The session's precision (conftest.py pins fp32 on a CPU): every test starts from it.
TEST_PRECISION = os.environ.get("HOMEWORK_PRECISION")


@pytest.fixture(autouse=True)
def _isolated_homework_env(monkeypatch):
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    if TEST_PRECISION:
        monkeypatch.setenv("HOMEWORK_PRECISION", TEST_PRECISION)
    else:
        monkeypatch.delenv("HOMEWORK_PRECISION", raising=False)


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    """This process sees a CPU that emulates bf16 (AVX2 only, as on the AMD machines): the precision rules of
    such a CPU are tested on any machine. The precision is unpinned, as a user runs it."""
    from homework.runtime import precision

    monkeypatch.setattr(precision, "_cpuinfo", lambda: "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n")
    monkeypatch.setattr(precision, "measure", lambda *a, **k: precision.Probe(0.010, 4.0))
    monkeypatch.delenv("HOMEWORK_PRECISION", raising=False)


@pytest.fixture
def tolerant_snapshot(snapshot):
    """A syrupy snapshot whose floats compare within an absolute and a mean tolerance."""
    return snapshot.use_extension(TolerantJSONExtension)


@pytest.fixture
def bf16_tolerant_snapshot(snapshot):
    """tolerant_snapshot with the bf16 reference's wider, measured tolerance (tests/tolerant_snapshot.py)."""
    return snapshot.use_extension(BF16TolerantJSONExtension)


def random_llama(vocab_size: int = 32, layers: int = 1, hidden: int = 8, **config):
    """A seeded, randomly initialised Llama of a few thousand weights: fast tests of code that needs a real
    causal LM (training steps, LoRA layout, generation, a model directory) without model files."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                                        **config))


def random_llama_dir(tokenizer, path: Path, layers: int, max_positions: int) -> Path:
    """A random_llama sized for `tokenizer` (its special ids, tied embeddings), saved with it as a model
    directory: the real tokenizer over a model that runs in seconds."""
    model = random_llama(len(tokenizer), layers=layers, hidden=16, max_position_embeddings=max_positions,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_foreign_project(module_name: str):
    """tests/foreign_project/sftproj.py (the kit's foreign project, not on sys.path) as a fresh module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(module_name, REPO / "tests" / "foreign_project" / "sftproj.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str, env: dict | None = None, timeout: int = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=cwd)


def on_device_of(model, batch):
    """A batch (a tensor or a dict of tensors) moved to the device the model's parameters are on."""
    device = next(model.parameters()).device
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return batch.to(device)


# --------------------------------------------------------------------------- model fixtures


@pytest.fixture(scope="session")
def hw_settings(pytestconfig) -> dict:
    def pick(opt: str):
        value = pytestconfig.getoption(opt)
        return value if value is not None else (pytestconfig.getini(opt) or None)

    return {"model": pick("hw_model") or CALLER_ENV.get("HOMEWORK_MODEL") or "embedded",
            "device": pick("hw_device") or CALLER_ENV.get("HOMEWORK_DEVICE") or "auto",
            "seed": int(pick("hw_seed") or 0)}


@pytest.fixture(scope="session")
def hw_placement(hw_settings):
    from homework.runtime.device import resolve_placement

    return resolve_placement(None if hw_settings["device"] == "auto" else hw_settings["device"], TEST_PRECISION,
                             training=True)


@pytest.fixture(scope="session")
def hw_model_spec(hw_settings):
    from homework.runtime.model_source import resolve_model

    return resolve_model(hw_settings["model"])


@pytest.fixture(scope="session")
def hw_tokenizer(hw_model_spec):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hw_model_spec.location)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(scope="session")
def hw_base_model(hw_model_spec, hw_placement):
    """The base model, loaded once per session. Do not train it in place: use `lora_model`."""
    from homework.runtime.model_source import load_pretrained

    model, _ = load_pretrained(hw_model_spec, hw_placement.dtype, hw_placement.device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture
def lora_factory(hw_base_model, hw_settings):
    """Fresh peft LoRA models over a copy of the base model: lora_factory(r=4, alpha=16), seeded alike."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    def make(r: int = 4, alpha: int = 16, target_modules="all-linear"):
        torch.manual_seed(hw_settings["seed"])
        cfg = LoraConfig(task_type="CAUSAL_LM", target_modules=target_modules, bias="none", r=r, lora_alpha=alpha,
                         lora_dropout=0.0, inference_mode=False)
        model = get_peft_model(copy.deepcopy(hw_base_model), cfg)
        model.train()
        return model

    return make


@pytest.fixture
def lora_model(lora_factory):
    """A fresh LoRA model (r=4, alpha=16, all linear layers) for this test."""
    return lora_factory()


@pytest.fixture(scope="session")
def hw_train_rows(hw_tokenizer):
    """The first 64 training rows in the course's number format, tokenized for dynamic padding."""
    from homework.data import Dataset
    from homework.sft import TokenizedDataset, format_example

    ds = Dataset("train")
    ds.data = ds.data[:64]
    return TokenizedDataset(hw_tokenizer, ds, format_example, pad=False)


@pytest.fixture
def train_steps(request, lora_model, hw_tokenizer, hw_train_rows, hw_settings):
    """train_steps(n=3, **run_steps options) -> per-step records, shown in the plugin's "training health" summary.

    Pass guard=False to get the records of an unhealthy run instead of an error."""
    from homework.training.smoke import run_steps
    from sft_contract.plugin import record_steps

    def run(n: int = 3, **kwargs):
        kwargs.setdefault("seed", hw_settings["seed"])
        model = kwargs.pop("model", lora_model)
        dataset = kwargs.pop("dataset", hw_train_rows)
        records = run_steps(model, hw_tokenizer, dataset, n, **kwargs)
        record_steps(request.config, request.node.nodeid, records)
        return records

    return run


@pytest.fixture
def training_health():
    from homework.training.health import assert_training_healthy

    return assert_training_healthy


pytest_plugins = ["pytester"]
