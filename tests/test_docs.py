"""Every test the documents name exists: README.md and docs/*.md point readers at test files and test functions
(`test_run.py`, `tests/tools/test_cli.py`, `test_health.py::test_...`, a bare `test_...`), and a test that moves or
is renamed must take its mentions with it."""

import functools
import re

import pytest

from tests.conftest import REPO

DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
FENCE = re.compile(r"^```.*?^```", re.S | re.M)  # code blocks show examples a reader writes, not this project's tests
SPAN = re.compile(r"`([^`]+)`")
FILE = re.compile(r"^(?:(?P<dir>[\w./-]*)/)?(?P<file>test_\w+\.py)(?:::(?P<function>test_\w+))?$")
FUNCTION = re.compile(r"^test_\w+$")


@functools.cache
def _test_files() -> dict[str, list]:
    found: dict[str, list] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        found.setdefault(path.name, []).append(path)
    return found


def _defined(paths) -> set[str]:
    return {m for p in paths for m in re.findall(r"^\s*(?:async\s+)?def (test_\w+)", p.read_text(), re.M)}


@functools.cache
def _every_name() -> set[str]:
    """Every test function under tests/, and every function of the packages whose name starts with test_."""
    tests = _defined(p for paths in _test_files().values() for p in paths)
    code = [*(REPO / "homework").rglob("*.py"), *(REPO / "sft_contract").rglob("*.py")]
    return tests | {m for p in code for m in re.findall(r"^\s*def (test_\w+)", p.read_text(), re.M)}


def _mentions():
    for doc in DOCUMENTS:
        text = FENCE.sub("", doc.read_text())
        for span in SPAN.findall(text):
            name = re.sub(r"\s+", "", span)  # a name wrapped across lines inside its backticks
            if FILE.match(name) or FUNCTION.match(name):
                yield doc.relative_to(REPO), name


MENTIONS = sorted(set(_mentions()))


def test_the_documents_name_tests():
    assert len(MENTIONS) > 20, MENTIONS  # the pattern still finds what the documents write


@pytest.mark.parametrize("doc, name", MENTIONS, ids=[f"{d}:{n}" for d, n in MENTIONS])
def test_every_test_a_document_names_exists(doc, name):
    match = FILE.match(name)
    if match is None:  # a bare function name: a test somewhere, or a function of the package (the course's test_model)
        assert name in _every_name(), f"{doc} names {name}, which no test file defines"
        return
    candidates = _test_files().get(match["file"], [])
    if match["dir"]:
        candidates = [p for p in candidates if p == REPO / match["dir"] / match["file"]]
    assert candidates, f"{doc} names {name}, but no such test file exists under tests/"
    if match["function"]:
        assert match["function"] in _defined(candidates), f"{doc} names {name}, but the file defines no such test"
