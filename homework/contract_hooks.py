"""Hook specification of the SFT contract plugin (homework.pytest_plugin)."""

import pytest


@pytest.hookspec(firstresult=True)
def pytest_sft_contract(config):
    """Return the project's `homework.contract.SFTContract` (or None to let another implementation answer).

    Implementing this hook in a conftest.py opts the project in, like `--sft-contract=module:factory`."""
