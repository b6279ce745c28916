"""The failure catalog has one definition (sft_contract/catalog.py); docs/failure-catalog.md is its output."""

import ast
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from sft_contract.catalog import CATALOG, ENTRIES, Entry, explain

ROOT = Path(__file__).resolve().parents[2]


def _catalog_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sft_contract.catalog", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_document_is_the_commands_output():
    """Regenerate with: python -m sft_contract.catalog > docs/failure-catalog.md"""
    proc = _catalog_command()
    assert proc.returncode == 0 and proc.stderr == ""
    assert (ROOT / "docs" / "failure-catalog.md").read_text(encoding="utf-8") == proc.stdout, (
        "docs/failure-catalog.md is stale: python -m sft_contract.catalog > docs/failure-catalog.md")


def test_every_row_has_every_field():
    assert sorted(ENTRIES) == sorted(CATALOG) == list(range(1, 18))
    for row, entry in ENTRIES.items():
        assert CATALOG[row].strip(), row
        for f in fields(Entry):
            value = getattr(entry, f.name)
            assert value and all(isinstance(v, str) and v.strip() for v in
                                 (value if isinstance(value, tuple) else (value,))), (row, f.name)


def _functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.FunctionDef)}


def test_every_named_test_exists():
    for row, entry in ENTRIES.items():
        for name in entry.tests:
            path, _, function = name.partition("::")
            assert (ROOT / path).is_file() and function in _functions(ROOT / path), (row, name)


@pytest.mark.parametrize("row", [1, 9, 15])
def test_one_row_and_the_pointer_in_messages(row):
    proc = _catalog_command(str(row))
    assert proc.returncode == 0 and proc.stdout.startswith(f"## Row {row}: {ENTRIES[row].failure}\n")
    assert proc.stdout in _catalog_command().stdout
    assert explain(row) == f"[failure catalog row {row}] {CATALOG[row]} (python -m sft_contract.catalog {row})"


@pytest.mark.parametrize("args", [["0"], ["18"], ["x"], ["1", "2"]])
def test_an_unknown_row_is_a_usage_error(args):
    proc = _catalog_command(*args)
    assert proc.returncode == 2 and proc.stdout == "" and "usage: python -m sft_contract.catalog" in proc.stderr


def test_the_catalog_imports_nothing_heavy():
    code = ("import sys, sft_contract.catalog; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]"
