"""pytest plugin: the SFT contract battery, for any project that opts in.

Three ways in, each returning an `sft_contract.SFTContract` built from the project's own pieces (and, for a
course `homework/` package, `--sft-homework=PATH`: the course check, sft_contract/course.py):
  - `--sft-contract=package.module:factory` (ini key `sft_contract`): the battery (sft_contract/battery.py)
    joins the run, or runs alone with no test file. With the ini key only, it joins runs that name no
    paths (the project's whole suite), not `pytest tests/test_one.py`.
  - the hook `pytest_sft_contract(config)` in a conftest.py: like the option.
  - `@sft_contract.parametrize_with_checks(factory)` on a test in the project's own file: one test per check.

Any of them registers the `sft_contract` marker, adds the "SFT contract" and "training health" sections
to the terminal summary and makes the `sft_*` fixtures usable. A project that does not opt in sees
nothing: no marker, no collected item, no report line, and no torch import at start-up. Loaded through
the `pytest11` entry point `sft_contract`, or `-p sft_contract.plugin`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys

import pytest

MARKER = "sft_contract"
MARKER_HELP = "a check of the SFT contract battery (sft_contract): masking, EOS, prompt parity, collation, " \
              "rows kept apart, batched generation, healthy first steps, save/reload"

settings_key = pytest.StashKey[dict]()
checks_key = pytest.StashKey[dict]()  # node id -> label of each check's item (a keyword would match a directory too)
outcomes_key = pytest.StashKey[list]()
records_key = pytest.StashKey[dict]()


def pytest_addhooks(pluginmanager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sft-contract", "SFT contract (sft_contract)")
    group.addoption("--sft-contract", dest="sft_contract", default=None, metavar="MODULE:FACTORY",
                    help="run the SFT contract battery on the SFTContract that MODULE:FACTORY returns "
                         "(ini: sft_contract)")
    group.addoption("--sft-contract-steps", dest="sft_contract_steps", type=int, default=None,
                    help="optimizer steps of the healthy-first-steps check (ini: sft_contract_steps; default 3)")
    group.addoption("--sft-contract-examples", dest="sft_contract_examples", type=int, default=None,
                    help="Hypothesis examples per property (ini: sft_contract_examples; default 20)")
    group.addoption("--sft-homework", dest="sft_homework", default=None, metavar="PATH",
                    help="run the course homework check (python -m homework.sft check) on the homework/ package "
                         "in PATH, one test per check (ini: sft_homework)")
    parser.addini("sft_contract", "MODULE:FACTORY returning the project's SFTContract", default="")
    parser.addini("sft_homework", "folder holding the course homework/ package to check", default="")
    parser.addini("sft_contract_steps", "optimizer steps of the healthy-first-steps check", default="3")
    parser.addini("sft_contract_examples", "Hypothesis examples per property of the battery", default="20")


def _pick(config: pytest.Config, name: str):
    value = config.getoption(name)
    return value if value is not None else (config.getini(name) or None)


def _opt_in(config: pytest.Config, source: str) -> None:
    """What opting in switches on, once per run."""
    if settings_key in config.stash:
        return
    config.stash[settings_key] = {"source": source, "steps": int(_pick(config, "sft_contract_steps") or 3),
                                  "examples": int(_pick(config, "sft_contract_examples") or 20)}
    config.stash[outcomes_key] = []
    config.addinivalue_line("markers", f"{MARKER}: {MARKER_HELP}")
    config.pluginmanager.register(_ContractRun(config), "sft-contract-run")


def homework_path(config: pytest.Config) -> str:
    """--sft-homework, else the ini key (relative to the ini file's folder)."""
    if config.getoption("sft_homework"):
        return config.getoption("sft_homework")
    base = config.inipath.parent if config.inipath else config.rootpath
    return str(base / config.getini("sft_homework"))


def pytest_configure(config: pytest.Config) -> None:
    if _pick(config, "sft_homework"):
        named_paths = config.args_source == pytest.Config.ArgsSource.ARGS
        course = importlib.util.find_spec("sft_contract.course_battery").origin  # found, not imported
        if (config.getoption("sft_homework") or not named_paths) and course not in config.args:
            config.args.append(course)
    source = _pick(config, "sft_contract")
    by_hook = bool(config.pluginmanager.hook.pytest_sft_contract.get_hookimpls())
    if not source and not by_hook:
        return  # not opted in by option, ini or hook: nothing here (parametrize_with_checks may still opt in)
    _opt_in(config, source or "the pytest_sft_contract hook")
    named_paths = config.args_source == pytest.Config.ArgsSource.ARGS
    if config.getoption("sft_contract") or by_hook or not named_paths:
        battery = importlib.util.find_spec("sft_contract.battery").origin  # found, not imported
        if battery not in config.args:
            config.args.append(battery)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    kit = sys.modules.get("sft_contract.checks")
    if kit is None:
        return  # nothing imported the battery, so no item holds one of its checks
    checks = [item for item in items if any(isinstance(v, kit.Check) for v in
                                            getattr(getattr(item, "callspec", None), "params", {}).values())]
    if not checks:
        return
    _opt_in(config, "parametrize_with_checks")
    for item in checks:
        item.add_marker(MARKER)
    battery = importlib.util.find_spec("sft_contract.battery").origin
    config.stash[checks_key] = {item.nodeid: _source_and_label(config, item, battery) for item in checks}


def _source_and_label(config: pytest.Config, item, battery: str) -> tuple[str, str]:
    """The battery module's items by their check's name under the configured source; a project's own
    (parametrize_with_checks) by node id under its factory's name."""
    from .checks import ContractSource

    if str(item.path) == battery:
        return contract_settings(config)["source"], item.callspec.id
    factory = next((v for v in item.callspec.params.values() if isinstance(v, ContractSource)), None)
    return f"{factory!r} (parametrize_with_checks)" if factory else "parametrize_with_checks", item.nodeid


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
    source = _pick(config, "sft_contract")
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
    """Hypothesis settings as the battery's properties use them: derandomized, --sft-contract-examples examples."""
    from .checks import hypothesis_settings

    return hypothesis_settings((contract_settings(pytestconfig) or {}).get("examples", 20))


@pytest.fixture
def sft_train_steps(sft_contract):
    """sft_train_steps(n=None, model=None) -> step records of n real steps of the project's trainer
    (a fresh model from the contract unless given); the records also appear in the terminal summary."""
    from .contract import train_a_few_steps

    def run(n: int | None = None, model=None):
        return train_a_few_steps(sft_contract, model if model is not None else sft_contract.make_model(), n)

    return run


@pytest.fixture
def sft_training_health():
    """The assertion helper: sft_training_health(records, require_progress=False) (steps.step_problem)."""
    from .steps import assert_steps_healthy

    return assert_steps_healthy


def record_steps(config: pytest.Config, nodeid: str, records) -> None:
    """Show `records` under "training health" in the terminal summary (for other fixtures too)."""
    config.stash.setdefault(records_key, {}).setdefault(nodeid, []).extend(records)


# --------------------------------------------------------------------------- report


class _ContractRun:
    """Registered only when the project opts in: the step records each test's checks publish, and each
    battery check's outcome and cause."""

    def __init__(self, config: pytest.Config):
        self.config = config

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        from .steps import listening

        with listening() as records:
            try:
                return (yield)
            finally:
                if records:
                    record_steps(self.config, item.nodeid, records)

    def pytest_sessionfinish(self) -> None:
        from .checks import release

        release()

    def pytest_runtest_logreport(self, report) -> None:
        if report.nodeid not in self.config.stash.get(checks_key, ()) or (report.passed and report.when != "call"):
            return
        cause = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            text = (crash.message if crash else str(report.longrepr)).strip()
            cause = text.splitlines()[0].removeprefix("sft_contract.contract.ContractViolation: ")[:200]
            row = re.search(r"failure catalog row (\d+)", text)
            if row:
                cause += f" (failure catalog row {row.group(1)})"
        source, label = self.config.stash[checks_key][report.nodeid]
        self.config.stash[outcomes_key].append((source, label, report.outcome, cause))


def summary_line(nodeid: str, records) -> str:
    """One line of the "training health" section, judged by the one definition (steps.step_problem)."""
    if not records:
        return f"BAD  {nodeid}: no steps"
    from .steps import step_problem

    problems = [p for p in (step_problem(r) for r in records) if p]
    losses = [r.loss for r in records]
    grads = [g for g in (r.grad_norm for r in records) if math.isfinite(g)]
    why = f" ({problems[0][1]}, catalog row {problems[0][0]})" if problems else ""
    return (f"{'BAD ' if problems else 'ok  '} {nodeid}: {len(records)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
            f"max grad norm {max(grads) if grads else float('nan'):.3f}{why}")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    by_source: dict[str, list] = {}
    for source, *outcome in config.stash.get(outcomes_key, []):
        by_source.setdefault(source, []).append(outcome)
    for source, outcomes in by_source.items():
        terminalreporter.write_sep("=", f"SFT contract: {source}")
        for name, outcome, cause in outcomes:
            terminalreporter.write_line(f"{outcome.upper():7} {name}" + (f": {cause}" if cause else ""))
    records = config.stash.get(records_key, {})
    if records:
        terminalreporter.write_sep("=", "training health")
        for nodeid, recs in records.items():
            terminalreporter.write_line(summary_line(nodeid, recs))
