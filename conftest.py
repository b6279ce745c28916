"""Repository-wide test settings: Hypothesis profiles, this project's options (--hw-*) and the gpu tier.

The SFT contract battery and the sft_* fixtures come from the sft_contract kit's pytest plugin (entry point
`sft_contract` in pyproject.toml, so `pip install -e .[test]` first); the model fixtures are in tests/conftest.py.
"""

import os

import pytest
from hypothesis import HealthCheck, settings


# Tests compare numbers (golden trajectories, snapshots, tolerances, the contract battery the plugin builds
# before any fixture runs), so on a CPU the whole session, its subprocesses included, runs in fp32 whatever the
# processor would choose; tests of the choice itself and of bf16 ask for it explicitly. A CUDA runner keeps
# its bf16 (its tolerances are per dtype: homework/runtime/numerics.py). HOMEWORK_PRECISION set by the caller wins.
def _test_precision() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "fp32"


if "HOMEWORK_PRECISION" not in os.environ and (_pinned := _test_precision()):
    os.environ["HOMEWORK_PRECISION"] = _pinned

# ci: reproducible and free of timing flakiness; fuzz: many more examples, for a deliberate hunt.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow],
                          print_blob=True)
# mutants: the ci profile with fewer examples, so `nox -s mutants` fits its budget on 2 cores
settings.register_profile("mutants", parent=settings.get_profile("ci"), max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("homework", "this project's model fixtures")
    group.addoption("--hw-model", dest="hw_model", default=None,
                    help="model for the fixtures: 'embedded' (default), a directory or a hub id (ini: hw_model)")
    group.addoption("--hw-device", dest="hw_device", default=None,
                    help="device for the fixtures: auto, cpu or cuda (ini: hw_device)")
    group.addoption("--hw-seed", dest="hw_seed", type=int, default=None, help="seed for training fixtures (ini: hw_seed)")
    parser.addini("hw_model", "default model for the homework fixtures", default="")
    parser.addini("hw_device", "default device for the homework fixtures", default="")
    parser.addini("hw_seed", "seed for the homework training fixtures", default="0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups by what a test is, not by file: Hypothesis properties and snapshot comparisons get their marker."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.property)
        if {"snapshot", "tolerant_snapshot"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.snapshot)
        if "pytester" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pytester)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("gpu: CUDA is not available (torch.cuda.is_available() is False)")


def pytest_report_header(config: pytest.Config) -> str:
    device = config.getoption("hw_device") or config.getini("hw_device") or os.environ.get("HOMEWORK_DEVICE") or "auto"
    try:
        from homework.runtime.device import resolve_placement

        # the fixtures' precision (tests/conftest.py pins fp32), and what `train` would choose here
        name = None if device == "auto" else device
        device, chosen = resolve_placement(name, "fp32").describe(), resolve_placement(name).explain()
    except Exception as exc:  # a header must never break the run
        device, chosen = f"{device} ({type(exc).__name__})", "?"
    model = config.getoption("hw_model") or config.getini("hw_model") or os.environ.get("HOMEWORK_MODEL") or "embedded"
    return f"homework: model={model} device/dtype={device}; the default here: {chosen}"
