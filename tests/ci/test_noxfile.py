"""The mutation session's bookkeeping: what counts against a module's score and what makes it fail."""

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


RESULTS = """\
    homework.text.answers.x_parse__mutmut_1: killed
    homework.text.answers.x_parse__mutmut_2: timeout
    homework.text.answers.x_parse__mutmut_3: survived
    homework.text.answers.x_parse__mutmut_4: survived
    homework.text.answers.x_parse__mutmut_5: survived
    homework.text.answers.x_parse__mutmut_6: no tests
    sft_contract.rows.x_check__mutmut_1: killed
    unrelated.module.x_f__mutmut_1: survived
"""


def test_gaps_count_against_the_score_equivalents_do_not_and_stale_entries_are_named(tmp_path, nox_module):
    listed = tmp_path / "reviewed.txt"
    listed.write_text("# a comment\n"
                      "homework.text.answers.x_parse__mutmut_3  the same NaN\n"
                      "homework.text.answers.x_parse__mutmut_4  GAP: needs a GPU\n"
                      "homework.text.answers.x_parse__mutmut_1  was equivalent once\n")
    scores, unreviewed, stale = nox_module.mutation_scores(RESULTS, nox_module.reviewed_mutants(listed))
    assert scores["text.answers"] == {"killed": 2, "survived": 1, "untested": 1, "equivalent": 1, "gap": 1}
    assert scores["sft_contract.rows"]["killed"] == 1 and "unrelated.module" not in str(scores)
    assert unreviewed == ["homework.text.answers.x_parse__mutmut_5: survived",
                          "homework.text.answers.x_parse__mutmut_6: no tests"]
    assert stale == ["homework.text.answers.x_parse__mutmut_1"]
    assert nox_module.reviewed_mutants(tmp_path / "missing.txt") == {}
