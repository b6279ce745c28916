"""Shared test helpers. Model fixtures (hw_tokenizer, lora_model, train_steps, ...) come from the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tolerant_snapshot import TolerantJSONExtension

REPO = Path(__file__).resolve().parent.parent
# The caller's environment as pytest started: tests that need the caller's model wheel (a machine with
# no network sets HOMEWORK_WHEEL) read it from here, since each test runs with HOMEWORK_* cleared.
CALLER_ENV = dict(os.environ)
# Cleared for every test so a caller's setting (a fault left exported, a wheel, a device) cannot
# change what a test sees. HOMEWORK_CACHE stays: it is where the converted model lives, and tests of
# the cache itself point it elsewhere with monkeypatch. The plugin read --hw-model/--hw-device (and
# their environment fallbacks) once at start-up, before this runs.
ISOLATED_ENV = ("HOMEWORK_FAULT", "HOMEWORK_WHEEL", "HOMEWORK_MODEL", "HOMEWORK_DEVICE", "HOMEWORK_DATA_DIR")


@pytest.fixture(autouse=True)
def _isolated_homework_env(monkeypatch):
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tolerant_snapshot(snapshot):
    """A syrupy snapshot whose floats compare within an absolute and a mean tolerance."""
    return snapshot.use_extension(TolerantJSONExtension)


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


pytest_plugins = ["pytester"]
