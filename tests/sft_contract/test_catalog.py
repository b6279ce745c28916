"""The failure catalog has one definition (sft_contract/catalog.py); docs/failure-catalog.md is its output."""

import ast
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from sft_contract.catalog import CATALOG, ENTRIES, Entry, catalog_markdown, entry_markdown, explain, main

ROOT = Path(__file__).resolve().parents[2]

LAST = max(ENTRIES)  # the newest row


def _catalog_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sft_contract.catalog", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_document_is_the_commands_output(capsys):
    """Regenerate with: python -m sft_contract.catalog > docs/failure-catalog.md"""
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert (ROOT / "docs" / "failure-catalog.md").read_text(encoding="utf-8") == out, (
        "docs/failure-catalog.md is stale: python -m sft_contract.catalog > docs/failure-catalog.md")


def test_python_dash_m_runs_the_command():
    proc = _catalog_command("3")
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == entry_markdown(3)
    assert _catalog_command("x").returncode == 2


def test_every_row_has_every_field():
    assert sorted(ENTRIES) == sorted(CATALOG) == list(range(1, LAST + 1))  # numbered without gaps
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


@pytest.mark.parametrize("row", [1, 9, 15, 17])
def test_one_row_and_the_pointer_in_messages(row, capsys):
    assert main([str(row)]) == 0
    out = capsys.readouterr().out
    assert out == entry_markdown(row) and out.startswith(f"## Row {row}: {ENTRIES[row].failure}\n\n")
    main([])
    assert out in capsys.readouterr().out
    assert explain(row) == f"[failure catalog row {row}] {CATALOG[row]} (python -m sft_contract.catalog {row})"
    assert explain(row, "homework.catalog").endswith(f"(python -m homework.catalog {row})")


def test_a_row_section_lists_every_field_under_its_label():
    e = ENTRIES[5]
    assert entry_markdown(5).splitlines() == [
        f"## Row 5: {e.failure}", "",
        f"- **What you see.** {e.seen}",
        f"- **Cause.** {e.cause}",
        f"- **Reported in.** {e.reports}",
        f"- **How this repository catches it.** {e.caught_by}",
        "- **Tests.** " + ", ".join(f"`{t}`" for t in e.tests),
        "", f"Short form, as error messages print it: {CATALOG[5]}"]


def test_the_whole_catalog_is_an_index_table_then_every_row():
    text = catalog_markdown()
    lines = text.splitlines()
    assert lines[0] == "# The failure catalog"
    table = lines.index("| row | failure | what you see |")
    assert lines[table + 1] == "| --- | --- | --- |"
    assert lines[table + 2:table + 2 + len(ENTRIES)] == [f"| {r} | {e.failure} | {e.seen} |" for r, e in ENTRIES.items()]
    assert lines[table + 2 + len(ENTRIES)] == ""
    assert text.endswith("".join("\n" + entry_markdown(r) for r in ENTRIES))
    assert text.count("\n## Row ") == len(ENTRIES)


@pytest.mark.parametrize("args", [["0"], [str(LAST + 1)], ["x"], ["1", "2"], ["-1"]])
def test_an_unknown_row_is_a_usage_error(args, capsys):
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"usage: python -m sft_contract.catalog [ROW]  (ROW is 1 to {LAST})\n"
    main(args, prog="homework.catalog")
    assert "usage: python -m homework.catalog [ROW]" in capsys.readouterr().err


def test_no_arguments_reads_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["catalog", "4"])
    assert main() == 0 and capsys.readouterr().out == entry_markdown(4)
    monkeypatch.setattr("sys.argv", ["catalog"])
    assert main() == 0 and capsys.readouterr().out.startswith("# The failure catalog\n")


def test_the_catalog_imports_nothing_heavy():
    code = ("import sys, sft_contract.catalog; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]"
