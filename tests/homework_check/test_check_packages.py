"""`python -m homework.sft check PATH` on course packages written here: each defect flagged by the right
check with its failure-catalog row, and the correct packages with no alarm (tests/homework_check/packages)."""

import json
import tempfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.homework_check.conftest import build_package
from tests.homework_check.packages.shapes import CASES, ESCAPE, SHAPES


def run_check(path, model_dir, tmp_path, *extra):
    out = tmp_path / "check.json"
    proc = run_cli("-m", "homework.sft", "check", str(path), "--model", str(model_dir), "--json", str(out), *extra,
                   timeout=600)
    assert out.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(CASES))
def test_each_defect_is_flagged_with_its_cause_and_row(name, check_model_dir, tmp_path):
    shape, patches, expected = CASES[name]
    package = build_package(tmp_path / "project", SHAPES[shape], patches)
    untouched = {p: p.stat().st_mtime_ns for d in (package, check_model_dir) for p in d.rglob("*")}
    escape = Path(tempfile.gettempdir()) / ESCAPE / "log.txt"
    escaped = escape.stat().st_mtime_ns if escape.exists() else None  # a stale one from another run stays as it is
    proc, result = run_check(package, check_model_dir, tmp_path)
    # every write went into the checker's copy: their folder and the model directory are as they were
    assert {p: p.stat().st_mtime_ns for d in (package, check_model_dir) for p in d.rglob("*")} == untouched
    got = {c["check"]: (c["verdict"], c["row"]) for c in result["checks"] if c["verdict"] != "ok"}
    assert got == expected, proc.stdout
    assert len(result["checks"]) == 9 and result["problem"] is None
    if "steps" not in expected:  # their rows a step ran as 2 (the warm-up case shows the schedule stays theirs)
        assert any(n.startswith("trained 2 rows a step, without accumulation (theirs: ") for n in result["notes"])
        assert next(c["cause"] for c in result["checks"] if c["check"] == "steps").startswith("3 steps: ")
    verdicts = {v for v, _ in expected.values()}
    assert proc.returncode == result["exit"] == (1 if verdicts & {"violation", "incompatible", "error"} else
                                                 2 if verdicts else 0)
    for c in result["checks"]:
        if c["verdict"] != "ok" and c["verdict"] != "could not run":
            assert c["cause"] and c["where"] and c["where"].startswith("homework/"), c
    if name == "writes-outside":
        assert (escape.stat().st_mtime_ns if escape.exists() else None) == escaped
        assert any(n.startswith("a folder ") and n.endswith("redirected into the temporary copy")
                   for n in result["notes"]), result["notes"]
    compat = next(c["cause"] for c in result["checks"] if c["check"] == "compat")
    if name == "logging-dir":  # each removed argument named, and the recipe still trained (translated)
        assert all(f"`{arg}" in compat for arg in ("logging_dir", "warmup_ratio", "Trainer(tokenizer=")), compat
        assert "run here translated" in compat
    if name == "logging-dir-after-a-crash":  # never built: read from their source
        assert "`logging_dir` (read from the source" in compat, compat


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pytest_in_their_repository_says_it(pytester, check_model_dir, monkeypatch):
    """`pytest --sft-homework=.` in a student's repository: one test per check, each failure with its cause,
    place and catalog row (the kit's battery, sft_contract/course_battery.py)."""
    shape, patches, _ = CASES["rounded-answers"]
    build_package(pytester.path, SHAPES[shape], patches)
    pytester.makeini("[pytest]\nsft_homework = .\n")
    monkeypatch.setenv("HOMEWORK_MODEL", str(check_model_dir))
    result = pytester.runpytest_subprocess("-p", "no:sft_contract", "-p", "sft_contract.plugin", "-p", "no:randomly",
                                           "-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(["*test_sft_homework?answers?*", "*of 24 trained answers read back outside the "
                                 "course's tolerance*[[]homework/sft.py:*format_example]*",
                                 "*failure catalog row 24*"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_this_repositorys_homework_passes_on_the_real_model(tmp_path):
    """The one check on the real (embedded) model: this repository's own course package holds every check."""
    from tests.conftest import REPO

    proc, result = run_check(REPO, "embedded", tmp_path)
    assert proc.returncode == 0 and result["exit"] == 0, proc.stdout
    assert [c["verdict"] for c in result["checks"]] == ["ok"] * 9


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_answers_are_not_judged_on_data_that_is_not_theirs(check_model_dir, tmp_path):
    """A package without data/ runs on this repository's data, whose answers reach far smaller values than the
    course's: rounding to 2 decimals is reported as not judged (with the count), not as a violation."""
    import shutil

    package = build_package(tmp_path / "project", SHAPES["plain"], [
        ("sft.py", 'f"<answer>{float(answer):.6g}</answer>"', 'f"<answer>{round(float(answer), 2)}</answer>"')])
    shutil.rmtree(package / "data")
    proc, result = run_check(package, check_model_dir, tmp_path)
    answers = next(c for c in result["checks"] if c["check"] == "answers")
    assert answers["verdict"] == "could not run" and "on this repository's data" in answers["cause"], answers
    assert any(n.startswith("no data/train.json beside homework/") for n in result["notes"])
    assert [c["check"] for c in result["checks"] if c["verdict"] != "ok"] == ["answers"], proc.stdout
    assert proc.returncode == result["exit"] == 2


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_only_runs_the_checks_it_names(check_model_dir, tmp_path):
    shape, patches, _ = CASES["instruction-only-in-training"]
    package = build_package(tmp_path / "project", SHAPES[shape], patches)
    proc, result = run_check(package, check_model_dir, tmp_path, "--only", "prompt")
    assert [(c["check"], c["verdict"], c["row"]) for c in result["checks"]] == [("imports", "ok", None),
                                                                                 ("prompt", "violation", 11)]
    assert proc.returncode == result["exit"] == 1
