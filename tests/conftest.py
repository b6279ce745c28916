"""Shared test helpers. Model fixtures (hw_tokenizer, lora_model, train_steps, ...) come from the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tolerant_snapshot import TolerantJSONExtension

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tolerant_snapshot(snapshot):
    """A syrupy snapshot whose floats compare within an absolute and a mean tolerance."""
    return snapshot.use_extension(TolerantJSONExtension)


def run_cli(*args: str, env: dict | None = None, timeout: int = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=cwd)


pytest_plugins = ["pytester"]
