"""The one reporter: one process prints when several train, progress only when asked for, and no other module of
the package calls print()."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from homework.runtime import report

PACKAGE = Path(__file__).resolve().parents[2] / "homework"


def test_the_main_process_prints_each_kind_to_its_stream(capsys):
    report.info("training")
    report.info("hidden", show=False)
    report.result("accuracy=1.000")
    report.notice("fetching")
    report.error("broken")
    out, err = capsys.readouterr()
    assert out == "[homework] training\naccuracy=1.000\n"
    assert err == "[homework] fetching\nerror: broken\n"


def test_another_process_prints_only_an_error_it_alone_found(capsys, monkeypatch):
    from homework.runtime import distributed

    monkeypatch.setattr(distributed, "is_main", lambda: False)
    report.info("training")
    report.result("accuracy=1.000")
    report.notice("fetching")
    report.error("every process saw this", agreed=True)
    report.error("only this process saw this")
    out, err = capsys.readouterr()
    assert out == "" and err == "error: only this process saw this\n"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_but_the_reporter_prints(path):
    if path.name == "report.py":
        return
    calls = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
    assert not calls, f"{path.name} calls print() on line(s) {calls}: use homework.report"


def test_a_result_goes_to_the_stream_it_is_given(capsys):
    import io

    out = io.StringIO()
    report.result("doctor: all checks passed", out)
    assert out.getvalue() == "doctor: all checks passed\n" and capsys.readouterr().out == ""


class _Stream:
    """A pipe's end as print sees it: what was written, and whether it was flushed after."""

    def __init__(self):
        self.text, self.flushed = "", True

    def write(self, s):
        self.text += s
        self.flushed = False

    def flush(self):
        self.flushed = True


def test_every_line_is_flushed_at_once_so_a_piped_log_is_never_behind(monkeypatch):
    # stdout to a pipe or a file (nohup, tee, a job log) is block-buffered: unflushed, a line can sit there
    # for minutes of training, or be lost when the process is killed
    out, err = _Stream(), _Stream()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    for say in (lambda: report.info("step 1"), lambda: report.result("0.5"), lambda: report.notice("fetching"),
                lambda: report.error("broken")):
        say()
        assert out.flushed and err.flushed
    assert out.text == "[homework] step 1\n0.5\n" and err.text == "[homework] fetching\nerror: broken\n"
