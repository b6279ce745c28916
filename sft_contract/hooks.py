"""Hook specification of the SFT contract plugin (sft_contract.plugin)."""

import pytest


@pytest.hookspec(firstresult=True)
def pytest_sft_contract(config):
    """Return the project's `sft_contract.SFTContract` (or None to let another implementation answer).

    Implementing this hook in a conftest.py opts the project in, like `--sft-contract=module:factory`."""
