"""Fixtures of the CI and nox tests."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def nox_module(monkeypatch):
    """noxfile.py loaded with a stand-in for nox (the test extra does not install nox; only its decorators run)."""
    fake = types.ModuleType("nox")
    fake.options = types.SimpleNamespace()
    fake.session = lambda f=None, **_: f if f is not None else (lambda g: g)
    fake.command = types.SimpleNamespace(CommandFailed=RuntimeError)
    monkeypatch.setitem(sys.modules, "nox", fake)
    spec = importlib.util.spec_from_file_location("project_noxfile", REPO / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
