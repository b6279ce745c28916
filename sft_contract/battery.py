"""The battery as a test module: the plugin adds this file to a run that opted in by option, ini key or
hook, and it runs every check of sft_contract.checks on the `sft_contract` fixture's contract."""

import pytest

from sft_contract.checks import CHECKS
from sft_contract.plugin import contract_settings


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_sft_contract(sft_contract, check, pytestconfig):
    check(sft_contract, examples=contract_settings(pytestconfig)["examples"])
