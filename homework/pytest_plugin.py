"""pytest plugin: tiers as markers, model fixtures, a few-step training fixture and a health report.

Loaded through the `pytest11` entry point `homework` (or `-p homework.pytest_plugin`). Heavy
imports (torch, transformers) happen inside fixtures, so merely installing this package does not
slow down anyone else's pytest start-up.
"""

from __future__ import annotations

import math
import os

import pytest

MARKERS = {
    "integration": "runs a real model for a few optimizer steps (seconds each)",
    "slow": "full training and accuracy checks (minutes); deselect with -m 'not slow'",
    "gpu": "needs CUDA; skipped with the reason when torch.cuda.is_available() is False",
}

records_key = pytest.StashKey[dict]()
settings_key = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("homework", "homework SFT training health")
    group.addoption("--hw-model", dest="hw_model", default=None,
                    help="model for the fixtures: 'embedded' (default), a directory or a hub id (ini: hw_model)")
    group.addoption("--hw-device", dest="hw_device", default=None,
                    help="device for the fixtures: auto, cpu or cuda (ini: hw_device)")
    group.addoption("--hw-health-steps", dest="hw_health_steps", type=int, default=None,
                    help="optimizer steps the train_steps fixture runs by default (ini: hw_health_steps)")
    group.addoption("--hw-seed", dest="hw_seed", type=int, default=None, help="seed for training fixtures (ini: hw_seed)")
    parser.addini("hw_model", "default model for the homework fixtures", default="")
    parser.addini("hw_device", "default device for the homework fixtures", default="")
    parser.addini("hw_health_steps", "default optimizer steps for train_steps", default="3")
    parser.addini("hw_seed", "seed for the homework training fixtures", default="0")


def pytest_configure(config: pytest.Config) -> None:
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")

    def pick(opt: str):
        value = config.getoption(opt)
        return value if value is not None else (config.getini(opt) or None)

    config.stash[settings_key] = {
        "model": pick("hw_model") or os.environ.get("HOMEWORK_MODEL") or "embedded",
        "device": pick("hw_device") or os.environ.get("HOMEWORK_DEVICE") or "auto",
        "steps": int(pick("hw_health_steps") or 3),
        "seed": int(pick("hw_seed") or 0),
    }
    config.stash[records_key] = {}


def pytest_report_header(config: pytest.Config) -> str:
    s = config.stash[settings_key]
    device = s["device"]
    try:
        from homework.device import resolve_placement

        device = resolve_placement(None if device == "auto" else device).describe()
    except Exception as exc:  # a header must never break the run
        device = f"{device} ({type(exc).__name__})"
    return f"homework: model={s['model']} device/dtype={device} seed={s['seed']} health-steps={s['steps']}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("gpu: CUDA is not available (torch.cuda.is_available() is False)")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def hw_settings(pytestconfig) -> dict:
    return dict(pytestconfig.stash[settings_key])


@pytest.fixture(scope="session")
def hw_placement(hw_settings):
    from homework.device import resolve_placement

    return resolve_placement(None if hw_settings["device"] == "auto" else hw_settings["device"])


@pytest.fixture(scope="session")
def hw_model_spec(hw_settings):
    from homework.model_source import resolve_model

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
    from homework.model_source import load_pretrained

    model, _ = load_pretrained(hw_model_spec, hw_placement.dtype, hw_placement.device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture
def lora_factory(hw_base_model, hw_settings):
    """Build fresh LoRA models over a copy of the base model: lora_factory(r=4, alpha=16).

    Seeded, so two models from the factory start from identical adapter weights.
    """
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
    """The first 64 training rows, tokenized for dynamic padding."""
    from homework.data import Dataset
    from homework.sft import TokenizedDataset, format_example

    ds = Dataset("train")
    ds.data = ds.data[:64]
    return TokenizedDataset(hw_tokenizer, ds, format_example, pad=False)


@pytest.fixture
def train_steps(request, lora_model, hw_tokenizer, hw_train_rows, hw_settings):
    """train_steps(n=None, **args) -> per-step records (loss, grad_norm, learning_rate, ...).

    Runs real optimizer steps on `lora_model` with the health guard; the records also appear in
    the terminal summary. Pass guard=False to get records of an unhealthy run instead of an error.
    """
    from homework.smoke import run_steps

    def run(n: int | None = None, **kwargs):
        kwargs.setdefault("seed", hw_settings["seed"])
        model = kwargs.pop("model", lora_model)
        dataset = kwargs.pop("dataset", hw_train_rows)
        records = run_steps(model, hw_tokenizer, dataset, n or hw_settings["steps"], **kwargs)
        request.config.stash[records_key].setdefault(request.node.nodeid, []).extend(records)
        return records

    return run


@pytest.fixture
def training_health():
    """The assertion helper: training_health(records, require_progress=False)."""
    from homework.health import assert_training_healthy

    return assert_training_healthy


# --------------------------------------------------------------------------- report


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    records = config.stash.get(records_key, {})
    if not records:
        return
    tr = terminalreporter
    tr.write_sep("=", "training health")
    for nodeid, recs in records.items():
        losses = [r.loss for r in recs]
        grads = [r.grad_norm for r in recs]
        healthy = all(math.isfinite(x) and x > 0 for x in losses) and all(math.isfinite(g) for g in grads)
        tr.write_line(
            f"{'ok  ' if healthy else 'BAD '} {nodeid}: {len(recs)} steps, loss "
            f"{' -> '.join(f'{x:.4f}' for x in losses[:1] + losses[-1:])}, max grad norm "
            f"{max(grads):.3f}" if recs else f"{nodeid}: no steps"
        )
