"""pytest plugin: the SFT contract battery, for any project that opts in.

A project opts in with `--sft-contract=package.module:factory` (ini key `sft_contract`), or by
implementing the hook `pytest_sft_contract(config)` in a conftest.py; the factory (or hook) returns a
`homework.contract.SFTContract` built from the project's own tokenizer, formatter, collator, model and
trainer. The battery (homework/contract_battery.py) then runs with the project's tests -- or alone, with
no test file: `pytest --sft-contract=package.module:factory`. With the ini key only, the battery joins
runs that name no paths (the project's whole suite), not `pytest tests/test_one.py`.

A project that does not opt in sees nothing: no markers, no collected items, no report lines, and no
torch import at start-up. Loaded through the `pytest11` entry point `homework`, or `-p homework.pytest_plugin`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re

import pytest

MARKER = "sft_contract"
MARKER_HELP = "a check of the SFT contract battery (homework.contract): masking, EOS, prompt parity, collation, " \
              "batched generation, healthy first steps, save/reload"

settings_key = pytest.StashKey[dict]()
outcomes_key = pytest.StashKey[list]()
records_key = pytest.StashKey[dict]()


def pytest_addhooks(pluginmanager) -> None:
    from homework import contract_hooks

    pluginmanager.add_hookspecs(contract_hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sft-contract", "SFT contract (homework.contract)")
    group.addoption("--sft-contract", dest="sft_contract", default=None, metavar="MODULE:FACTORY",
                    help="run the SFT contract battery on the SFTContract that MODULE:FACTORY returns "
                         "(ini: sft_contract)")
    group.addoption("--sft-contract-steps", dest="sft_contract_steps", type=int, default=None,
                    help="optimizer steps of the healthy-first-steps check (ini: sft_contract_steps; default 3)")
    group.addoption("--sft-contract-examples", dest="sft_contract_examples", type=int, default=None,
                    help="Hypothesis examples per property (ini: sft_contract_examples; default 20)")
    parser.addini("sft_contract", "MODULE:FACTORY returning the project's SFTContract", default="")
    parser.addini("sft_contract_steps", "optimizer steps of the healthy-first-steps check", default="3")
    parser.addini("sft_contract_examples", "Hypothesis examples per property of the battery", default="20")


def _pick(config: pytest.Config, name: str):
    value = config.getoption(name)
    return value if value is not None else (config.getini(name) or None)


def pytest_configure(config: pytest.Config) -> None:
    source = _pick(config, "sft_contract")
    by_hook = bool(config.pluginmanager.hook.pytest_sft_contract.get_hookimpls())
    if not source and not by_hook:
        return  # not opted in: this plugin does nothing here
    config.stash[settings_key] = {"source": source or "the pytest_sft_contract hook",
                                  "steps": int(_pick(config, "sft_contract_steps") or 3),
                                  "examples": int(_pick(config, "sft_contract_examples") or 20)}
    config.stash[outcomes_key] = []
    config.pluginmanager.register(_ContractOutcomes(config), "sft-contract-outcomes")
    config.addinivalue_line("markers", f"{MARKER}: {MARKER_HELP}")
    named_paths = config.args_source == pytest.Config.ArgsSource.ARGS
    if config.getoption("sft_contract") or by_hook or not named_paths:
        battery = importlib.util.find_spec("homework.contract_battery").origin  # found, not imported
        if battery not in config.args:
            config.args.append(battery)


def contract_settings(config: pytest.Config) -> dict | None:
    """The plugin's settings when the project opted in, else None."""
    return config.stash.get(settings_key, None)


def pytest_report_header(config: pytest.Config) -> str | None:
    s = contract_settings(config)
    if s is None:
        return None
    return f"sft-contract: {s['source']} (steps={s['steps']}, examples={s['examples']})"


def load_contract(config: pytest.Config):
    """The project's SFTContract, from the hook or from MODULE:FACTORY."""
    contract = config.pluginmanager.hook.pytest_sft_contract(config=config)
    if contract is not None:
        return contract
    s = contract_settings(config)
    source = s and s["source"]
    if not source or ":" not in source:
        raise pytest.UsageError(f"no SFT contract: pass --sft-contract=package.module:factory (got {source!r})")
    module_name, _, attr = source.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"--sft-contract {source}: cannot load {attr!r} from {module_name!r} ({exc})") from exc
    return factory()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def sft_contract(pytestconfig):
    """The project's SFTContract (its steps set from --sft-contract-steps), built once per session."""
    import dataclasses

    if contract_settings(pytestconfig) is None:
        raise pytest.UsageError("the sft_contract fixture needs --sft-contract=package.module:factory, the ini key "
                                "sft_contract, or a pytest_sft_contract hook")
    contract = load_contract(pytestconfig)
    return dataclasses.replace(contract, steps=contract_settings(pytestconfig)["steps"])


@pytest.fixture
def sft_contract_settings(pytestconfig):
    """Hypothesis settings for the battery's properties: derandomized, --sft-contract-examples examples."""
    from hypothesis import HealthCheck, settings

    examples = (contract_settings(pytestconfig) or {}).get("examples", 20)
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture
def sft_train_steps(request, sft_contract):
    """sft_train_steps(n=None, model=None) -> step records of n real steps of the project's trainer
    (a fresh model from the contract unless given); the records also appear in the terminal summary."""
    from homework.contract import train_a_few_steps

    def run(n: int | None = None, model=None):
        model = model if model is not None else sft_contract.make_model()
        records = train_a_few_steps(sft_contract, model, n)
        record_steps(request.config, request.node.nodeid, records)
        return records

    return run


@pytest.fixture
def sft_training_health():
    """The assertion helper: sft_training_health(records, require_progress=False) (health.step_problem)."""
    from homework.health import assert_training_healthy

    return assert_training_healthy


def record_steps(config: pytest.Config, nodeid: str, records) -> None:
    """Show `records` under "training health" in the terminal summary (for other fixtures too)."""
    config.stash.setdefault(records_key, {}).setdefault(nodeid, []).extend(records)


# --------------------------------------------------------------------------- report


class _ContractOutcomes:
    """Registered only when the project opts in: records each battery check's outcome and cause."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report) -> None:
        if MARKER not in report.keywords or (report.passed and report.when != "call"):
            return
        cause = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            text = (crash.message if crash else str(report.longrepr)).strip()
            cause = text.splitlines()[0].removeprefix("homework.contract.ContractViolation: ")[:200]
            row = re.search(r"failure catalog row (\d+)", text)
            if row:
                cause += f" (failure catalog row {row.group(1)})"
        self.config.stash[outcomes_key].append((report.nodeid.split("::")[-1], report.outcome, cause))


def summary_line(nodeid: str, records) -> str:
    """One line of the "training health" section, judged by the one definition (health.step_problem)."""
    if not records:
        return f"BAD  {nodeid}: no steps"
    from homework.health import step_problem

    problems = [p for p in (step_problem(r) for r in records) if p]
    losses = [r.loss for r in records]
    grads = [g for g in (r.grad_norm for r in records) if math.isfinite(g)]
    why = f" ({problems[0][1]}, catalog row {problems[0][0]})" if problems else ""
    return (f"{'BAD ' if problems else 'ok  '} {nodeid}: {len(records)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
            f"max grad norm {max(grads) if grads else float('nan'):.3f}{why}")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    outcomes = config.stash.get(outcomes_key, [])
    if outcomes:
        terminalreporter.write_sep("=", f"SFT contract: {contract_settings(config)['source']}")
        for name, outcome, cause in outcomes:
            terminalreporter.write_line(f"{outcome.upper():7} {name}" + (f": {cause}" if cause else ""))
    records = config.stash.get(records_key, {})
    if records:
        terminalreporter.write_sep("=", "training health")
        for nodeid, recs in records.items():
            terminalreporter.write_line(summary_line(nodeid, recs))
