"""The course homework check as a test module: the plugin adds this file to a run given `--sft-homework=PATH`
(or the ini key `sft_homework`); one test per check, each failing with the check's cause, the place in the
package and its failure-catalog row."""

import pytest

from sft_contract.catalog import explain
from sft_contract.course import CHECKS, run


@pytest.fixture(scope="session")
def sft_homework_report(pytestconfig):
    from sft_contract.plugin import homework_path

    report = run(homework_path(pytestconfig))
    if not report.get("checks"):
        pytest.fail(f"the homework check could not run: {report.get('problem')}", pytrace=False)
    return {c["check"]: c for c in report["checks"]}


@pytest.mark.parametrize("check", list(CHECKS))
def test_sft_homework(sft_homework_report, check):
    result = sft_homework_report.get(check)
    if result is None:
        pytest.fail(f"{check}: the checker reported nothing for it", pytrace=False)
    if result["verdict"] in ("could not run", "needs CUDA"):
        pytest.skip(f"{check}: {result['verdict']}: {result['cause']}")
    if result["verdict"] != "ok":
        where = f" [{result['where']}]" if result["where"] else ""
        pytest.fail(f"{CHECKS[check]}: {result['verdict']}: {result['cause']}{where}"
                    + (f"\n{explain(result['row'])}" if result["row"] else ""), pytrace=False)
