"""The kit's pytest plugin (sft_contract.plugin), exercised with pytester in throwaway projects.

Inner runs load the plugin by module name with its entry point blocked (`run_with_plugin`), so these
tests pass whether the outer run got the plugin from the installed entry point or from `-p`. The foreign
project (tests/foreign_project/sftproj.py) is not homework: a tiny random Llama, a character tokenizer,
its own prompt format and a stock transformers Trainer; SFTPROJ_BUG seeds one bug in it.
"""

import ast
import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from sft_contract import plugin
from tests.conftest import REPO, load_foreign_project

WITH_PLUGIN = ("-p", "no:sft_contract", "-p", "sft_contract.plugin")
FOREIGN = (REPO / "tests" / "foreign_project" / "sftproj.py").read_text()
KIT = REPO / "sft_contract"
BATTERY = ["every_example_supervises_its_answer_and_eos", "masking_holds_for_other_numbers",
           "collation_keeps_every_rows_labels_and_eos", "rows_in_a_batch_train_as_if_alone",
           "inference_prompt_is_the_training_prompt", "batched_generation_equals_one_by_one",
           "first_optimizer_steps_are_healthy", "save_and_reload_gives_the_trained_logits"]


def run_with_plugin(pytester, *args):
    return pytester.runpytest(*WITH_PLUGIN, *args)


def test_the_battery_is_the_kits_list_of_checks():
    from sft_contract.checks import CHECKS

    assert [c.name for c in CHECKS] == BATTERY


def test_entry_point_names_the_plugin_module():
    """What an installed copy registers: one pytest11 entry point, to the module the tests load by name."""
    text = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+; the section is two lines
    section = text.split("[project.entry-points.pytest11]\n", 1)[1].split("\n\n", 1)[0]
    assert section.strip().splitlines() == ['sft_contract = "sft_contract.plugin"']


def _imports(path) -> set[str]:
    """Every module `path` imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def test_the_kit_imports_nothing_of_homework():
    """In the source (any import, at any depth) and in a fresh interpreter: importing the kit, its plugin and
    every module of it loads no homework module, and the plugin loads no torch."""
    modules = sorted(KIT.glob("*.py"))
    assert len(modules) >= 9
    for path in modules:
        assert not {m for m in _imports(path) if m.split(".")[0] == "homework"}, path.name
    code = """
import importlib, json, pkgutil, sys
import sft_contract, sft_contract.plugin
after_plugin = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "homework"))
names = [m.name for m in pkgutil.iter_modules(sft_contract.__path__)]
for name in names:
    importlib.import_module(f"sft_contract.{name}")
print(json.dumps({"after_plugin": after_plugin, "names": names,
                  "homework": sorted(m for m in sys.modules if m.split(".")[0] == "homework")}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=KIT.parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["after_plugin"] == [] and seen["homework"] == []
    assert set(seen["names"]) == {p.stem for p in modules if p.stem != "__init__"}


OBSERVER = """
import sys, json, pytest
def pytest_collection_finish(session):
    markers = session.config.getini("markers")
    with open("observed.json", "w") as fh:
        json.dump({"torch": "torch" in sys.modules, "markers": markers,
                   "items": [i.nodeid for i in session.items]}, fh)
"""


def test_a_project_that_does_not_opt_in_sees_nothing(pytester):
    """Installed into another project's environment, the plugin registers no marker, adds no test, skips
    nothing and imports no torch at start-up (a fresh process, so nothing was imported before)."""
    pytester.makeconftest(OBSERVER)
    pytester.makepyfile(test_other="""
        import pytest
        @pytest.mark.gpu
        def test_a(): pass
        def test_b(): pass
    """)
    result = pytester.runpytest_subprocess(*WITH_PLUGIN, "-rs")
    result.assert_outcomes(passed=2)  # @gpu is not this plugin's business: not skipped
    with_plugin = json.loads((pytester.path / "observed.json").read_text())
    pytester.runpytest("-p", "no:sft_contract").assert_outcomes(passed=2)  # markers and items need no fresh process
    without = json.loads((pytester.path / "observed.json").read_text())
    without["torch"] = False  # this process imported torch long ago; the fresh run above is the torch check
    assert with_plugin == without  # the same markers, the same items
    assert with_plugin["torch"] is False
    assert not [m for m in with_plugin["markers"] if m.split(":")[0] in ("sft_contract", "slow", "integration", "gpu")]
    assert "sft-contract" not in result.stdout.str() and "SFT contract" not in result.stdout.str()
    strict = pytester.runpytest_subprocess(*WITH_PLUGIN, "--strict-markers")
    assert strict.ret != 0  # @gpu is unknown there: nothing generic was registered


def test_options_and_ini_keys_are_namespaced_and_grouped(pytester):
    result = run_with_plugin(pytester, "--help")
    result.stdout.fnmatch_lines(["SFT contract (sft_contract):", "*--sft-contract=MODULE:FACTORY*",
                                 "*--sft-contract-steps*", "*--sft-contract-examples*", "*sft_contract (string)*"])
    assert "--hw-" not in result.stdout.str()  # this project's own options are not the plugin's


@pytest.fixture(scope="module")
def warmed_up():
    """Run the foreign project's checks once in this process first. pytester's in-process runs drop the
    modules a run imported; torch and transformers load parts lazily, and importing those again in a later
    run crashed the interpreter (a segfault), so everything the battery touches is imported up front."""
    from sft_contract import contract as sft

    c = load_foreign_project("sftproj_warmup").contract()
    sft.check_batched_generation(c, c.make_model(), sft.varied_lengths(c, 2), max_new_tokens=2)
    sft.check_save_and_reload(c, c.examples[0][0])
    import sft_contract.battery  # noqa: F401


def _foreign(pytester, monkeypatch, bug=""):
    pytester.makepyfile(sftproj=FOREIGN)
    pytester.syspathinsert()
    monkeypatch.setenv("SFTPROJ_BUG", bug)


@pytest.mark.integration
def test_a_foreign_project_passes_the_battery_with_no_test_file(pytester, monkeypatch, warmed_up):
    """The one-line run: `pytest --sft-contract=module:factory` in a project with no tests of its own."""
    _foreign(pytester, monkeypatch)
    result = run_with_plugin(pytester, "--sft-contract=sftproj:contract", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.sft_contract: a check of the SFT contract battery*"])
    result = run_with_plugin(pytester, "--sft-contract=sftproj:contract")
    result.assert_outcomes(passed=len(BATTERY))
    result.stdout.fnmatch_lines(["sft-contract: sftproj:contract (steps=3, examples=20)",
                                 "*= SFT contract: sftproj:contract =*",
                                 *[f"PASSED  {name}" for name in BATTERY],
                                 "*= training health =*",
                                 "ok   *test_sft_contract[[]first_optimizer_steps_are_healthy[]]: 3 steps*"])


@pytest.mark.integration
@pytest.mark.parametrize("bug, failing, cause", [
    ("eos_masked", "every_example_supervises_its_answer_and_eos", "*not EOS (2)*catalog row 5)"),
    ("collator_rewrites_labels", "collation_keeps_every_rows_labels_and_eos", "*rewrote the labels*catalog row 6)"),
    ("prompt_mismatch", "inference_prompt_is_the_training_prompt", "*inference prompt's ids are not*catalog row 11)"),
    ("right_padding", "batched_generation_equals_one_by_one", "*batched generation gave*catalog row 12)"),
])
def test_each_seeded_bug_in_the_foreign_project_fails_with_its_cause(pytester, monkeypatch, warmed_up, bug, failing,
                                                                     cause):
    _foreign(pytester, monkeypatch, bug)
    result = run_with_plugin(pytester, "--sft-contract=sftproj:contract", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines([f"FAILED  {failing}: {cause}"])
    for name in ("first_optimizer_steps_are_healthy", "save_and_reload_gives_the_trained_logits"):
        result.stdout.fnmatch_lines([f"PASSED  {name}"])  # the other checks still run and still pass


@pytest.mark.integration
def test_a_conftest_hook_opts_in_and_the_fixtures_train(pytester, monkeypatch, warmed_up):
    """The hook instead of the option; the sft_train_steps / sft_training_health fixtures in a project test."""
    _foreign(pytester, monkeypatch)
    pytester.makeconftest("""
        def pytest_sft_contract(config):
            import sftproj
            return sftproj.contract()
    """)
    pytester.makepyfile(test_mine="""
        def test_two_steps(sft_train_steps, sft_training_health):
            records = sft_train_steps(2)
            assert len(records) == 2
            sft_training_health(records)
    """)
    result = run_with_plugin(pytester, "test_mine.py")
    result.assert_outcomes(passed=1 + len(BATTERY))  # the hook opts in: the battery joins named paths too
    result.stdout.fnmatch_lines(["sft-contract: the pytest_sft_contract hook*",
                                 "ok   test_mine.py::test_two_steps: 2 steps, loss * -> *, max grad norm *"])


@pytest.mark.integration
def test_parametrize_with_checks_in_a_projects_own_test_file(pytester, monkeypatch, warmed_up):
    """The decorator way in: no option, no hook; one test per check, the marker registered (strict markers
    pass, -m selects them), the outcomes and step records in the summary."""
    _foreign(pytester, monkeypatch)
    pytester.makepyfile(test_contract="""
        import sft_contract
        import sftproj

        @sft_contract.parametrize_with_checks(sftproj.contract, steps=2, examples=5)
        def test_sftproj(contract, check):
            check(contract)

        def test_other():
            pass
    """)
    result = run_with_plugin(pytester, "--strict-markers", "-m", "sft_contract")
    result.assert_outcomes(passed=len(BATTERY), deselected=1)
    result.stdout.fnmatch_lines(["*= SFT contract: sftproj.contract (parametrize_with_checks) =*",
                                 *[f"PASSED  test_contract.py::test_sftproj[[]{name}[]]" for name in BATTERY],
                                 "ok   test_contract.py::test_sftproj[[]first_optimizer_steps_are_healthy[]]: 2 steps*"])
    assert "sft-contract:" not in result.stdout.str()  # no header: nothing was set at start-up


def test_ini_opt_in_adds_the_battery_only_to_runs_that_name_no_paths(pytester):
    pytester.makeini("""
        [pytest]
        sft_contract = nowhere:contract
    """)
    pytester.makepyfile(test_one="def test_x(): pass")
    named = run_with_plugin(pytester, "test_one.py", "--collect-only", "-q")
    assert "battery" not in named.stdout.str() and named.ret == 0
    unnamed = run_with_plugin(pytester, "--collect-only", "-q")
    unnamed.stdout.fnmatch_lines(["*::test_sft_contract[[]every_example_supervises_its_answer_and_eos[]]"])
    assert unnamed.ret == 0


def test_sft_training_health_fixture_fails_with_the_cause(pytester):
    pytester.makepyfile("""
        from sft_contract.steps import StepRecord
        def test_bad(sft_training_health):
            sft_training_health([StepRecord(1, 2.0, 0.0, 1e-3)])
    """)
    result = run_with_plugin(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gradient norm is exactly 0*failure catalog row 8*(python -m sft_contract.catalog 8)*"])


def test_the_contract_fixture_without_a_contract_is_a_usage_error(pytester):
    pytester.makepyfile("""
        def test_needs_it(sft_contract):
            pass
    """)
    result = run_with_plugin(pytester)
    result.stdout.fnmatch_lines(["*the sft_contract fixture needs --sft-contract=package.module:factory*"])
    assert result.ret != 0


def test_loadable_with_dash_p_when_the_entry_point_is_off(pytester):
    pytester.makepyfile("""
        def test_fixture(sft_training_health):
            assert callable(sft_training_health)
    """)
    run_with_plugin(pytester).assert_outcomes(passed=1)
    assert pytester.runpytest("-p", "no:sft_contract").ret != 0  # really comes from the plugin


# --------------------------------------------------------------------------- the plugin in-process, on stand-ins
# (the pytester tests above run it for real; these call its hooks with a small stand-in config)


class _Hook:
    def __init__(self, contract=None):
        self.contract, self.called_with = contract, None

    def __call__(self, config):
        self.called_with = config
        return self.contract

    def get_hookimpls(self):
        return [] if self.contract is None else [object()]


class FakeConfig:
    def __init__(self, options=None, ini=None, hook=None, args=(), args_source=pytest.Config.ArgsSource.ARGS):
        self.stash = pytest.Stash()
        self.options, self.ini = dict(options or {}), dict(ini or {})
        self.args, self.args_source = list(args), args_source
        self.inivalues, self.registered = [], {}
        self.pluginmanager = SimpleNamespace(register=lambda plugin, name: self.registered.setdefault(name, plugin),
                                             hook=SimpleNamespace(pytest_sft_contract=hook or _Hook()))

    def getoption(self, name):
        return self.options.get(name)

    def getini(self, name):
        return self.ini.get(name, "")

    def addinivalue_line(self, name, line):
        self.inivalues.append((name, line))


class FakeReporter:
    def __init__(self):
        self.lines = []

    def write_sep(self, sep, title):
        self.lines.append(f"{sep * 3} {title} {sep * 3}")

    def write_line(self, line):
        self.lines.append(line)


def test_the_options_ini_keys_and_their_help(pytester):
    """Through pytest's public surface (parsed options, ini values, `--help`), not its parser's internals."""
    config = pytester.parseconfig(*WITH_PLUGIN, "--sft-contract=pkg.mod:factory", "--sft-contract-steps", "5",
                                  "--sft-contract-examples=7")
    assert [config.getoption(n) for n in ("sft_contract", "sft_contract_steps", "sft_contract_examples")] == \
        ["pkg.mod:factory", 5, 7]
    unset = pytester.parseconfig(*WITH_PLUGIN)
    assert [unset.getoption(n) for n in ("sft_contract", "sft_contract_steps", "sft_contract_examples")] == \
        [None, None, None]
    assert [unset.getini(n) for n in ("sft_contract", "sft_contract_steps", "sft_contract_examples")] == ["", "3", "20"]
    text = " ".join(run_with_plugin(pytester, "--help").stdout.str().split())
    # the options, in their own group, in this order, with their help
    assert "SFT contract (sft_contract): --sft-contract=MODULE:FACTORY run the SFT contract battery on the " \
        "SFTContract that MODULE:FACTORY returns (ini: sft_contract) --sft-contract-steps=SFT_CONTRACT_STEPS " \
        "optimizer steps of the healthy-first-steps check (ini: sft_contract_steps; default 3) " \
        "--sft-contract-examples=SFT_CONTRACT_EXAMPLES Hypothesis examples per property (ini: " \
        "sft_contract_examples; default 20)" in text
    for key, help_ in (("sft_contract", "MODULE:FACTORY returning the project's SFTContract"),
                       ("sft_contract_steps", "optimizer steps of the healthy-first-steps check"),
                       ("sft_contract_examples", "Hypothesis examples per property of the battery")):
        assert f"{key} (string): {help_}" in text


BATTERY_FILE = importlib.util.find_spec("sft_contract.battery").origin


def test_a_config_that_does_not_opt_in_is_left_alone():
    config = FakeConfig(args=["tests"])
    plugin.pytest_configure(config)
    assert plugin.contract_settings(config) is None and plugin.pytest_report_header(config) is None
    assert config.args == ["tests"] and not config.inivalues and not config.registered


def test_the_option_opts_in_and_adds_the_battery_even_to_named_paths():
    config = FakeConfig(options={"sft_contract": "pkg.mod:factory", "sft_contract_steps": 5},
                        ini={"sft_contract_steps": "7", "sft_contract_examples": "9"}, args=["tests/test_x.py"])
    plugin.pytest_configure(config)
    assert plugin.contract_settings(config) == {"source": "pkg.mod:factory", "steps": 5, "examples": 9}
    assert plugin.pytest_report_header(config) == "sft-contract: pkg.mod:factory (steps=5, examples=9)"
    assert config.inivalues == [("markers", f"sft_contract: {plugin.MARKER_HELP}")]
    assert isinstance(config.registered["sft-contract-run"], plugin._ContractRun)
    assert config.args == ["tests/test_x.py", BATTERY_FILE] and config.stash[plugin.outcomes_key] == []
    plugin.pytest_configure(config)  # a second time: the battery once, the first settings kept
    assert config.args == ["tests/test_x.py", BATTERY_FILE] and len(config.inivalues) == 1


def test_the_ini_key_adds_the_battery_only_when_no_path_is_named():
    named = FakeConfig(ini={"sft_contract": "pkg.mod:factory"}, args=["tests/test_x.py"])
    plugin.pytest_configure(named)
    assert named.args == ["tests/test_x.py"]
    assert plugin.contract_settings(named) == {"source": "pkg.mod:factory", "steps": 3, "examples": 20}
    unnamed = FakeConfig(ini={"sft_contract": "pkg.mod:factory"}, args=["."],
                         args_source=pytest.Config.ArgsSource.TESTPATHS)
    plugin.pytest_configure(unnamed)
    assert unnamed.args == [".", BATTERY_FILE]


def test_the_hook_opts_in_like_the_option():
    config = FakeConfig(hook=_Hook(contract="a contract"), args=["tests/test_x.py"])
    plugin.pytest_configure(config)
    assert plugin.contract_settings(config)["source"] == "the pytest_sft_contract hook"
    assert config.args == ["tests/test_x.py", BATTERY_FILE]


def test_load_contract_takes_the_hooks_contract_first():
    hook = _Hook(contract="from the hook")
    config = FakeConfig(options={"sft_contract": "no.such:module"}, hook=hook)
    assert plugin.load_contract(config) == "from the hook" and hook.called_with is config


def test_load_contract_calls_module_colon_factory(tmp_path, monkeypatch):
    (tmp_path / "kitproj_factories.py").write_text("def make():\n    return 'built'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugin.load_contract(FakeConfig(ini={"sft_contract": "kitproj_factories:make"})) == "built"
    with pytest.raises(pytest.UsageError, match=r"^no SFT contract: pass --sft-contract=package.module:factory "
                                                r"\(got 'kitproj_factories'\)$"):
        plugin.load_contract(FakeConfig(options={"sft_contract": "kitproj_factories"}))
    with pytest.raises(pytest.UsageError, match="got None"):
        plugin.load_contract(FakeConfig())
    with pytest.raises(pytest.UsageError, match=r"^--sft-contract kitproj_factories:nope: cannot load 'nope' from "
                                                r"'kitproj_factories' \(.*nope"):
        plugin.load_contract(FakeConfig(options={"sft_contract": "kitproj_factories:nope"}))
    with pytest.raises(pytest.UsageError, match="cannot load 'make' from 'no_such_kitproj'"):
        plugin.load_contract(FakeConfig(options={"sft_contract": "no_such_kitproj:make"}))


def _check_item(nodeid, params, path="tests/test_mine.py", cid="x"):
    item = SimpleNamespace(nodeid=nodeid, path=path, callspec=SimpleNamespace(params=params, id=cid), markers=[])
    item.add_marker = item.markers.append
    return item


def test_collection_marks_and_labels_every_item_that_holds_a_check():
    from sft_contract.checks import CHECKS, ContractSource

    def factory():
        return None

    check = CHECKS[0]
    battery = _check_item("battery::test[a]", {"check": check}, path=BATTERY_FILE, cid=check.name)
    mine = _check_item("t.py::test[b]", {"contract": ContractSource(factory), "check": check})
    bare = _check_item("t.py::test[c]", {"check": check})
    other = _check_item("t.py::test_other", {"n": 1})
    plain = SimpleNamespace(nodeid="t.py::test_plain")
    config = FakeConfig(options={"sft_contract": "pkg.mod:factory"})
    plugin.pytest_configure(config)
    plugin.pytest_collection_modifyitems(config, [battery, mine, bare, other, plain])
    assert [i.markers for i in (battery, mine, bare, other)] == [["sft_contract"]] * 3 + [[]]
    assert config.stash[plugin.checks_key] == {
        "battery::test[a]": ("pkg.mod:factory", check.name),
        "t.py::test[b]": (f"{__name__}.test_collection_marks_and_labels_every_item_that_holds_a_check.<locals>.factory"
                          " (parametrize_with_checks)", "t.py::test[b]"),
        "t.py::test[c]": ("parametrize_with_checks", "t.py::test[c]")}


def test_collection_without_a_check_opts_nothing_in():
    config = FakeConfig()
    plugin.pytest_collection_modifyitems(config, [_check_item("t.py::test_other", {"n": 1})])
    assert plugin.contract_settings(config) is None and plugin.checks_key not in config.stash
    plugin.pytest_collection_modifyitems(config, [_check_item("t.py::test[x]", {"check": __import__(
        "sft_contract.checks").checks.CHECKS[1]})])
    assert plugin.contract_settings(config)["source"] == "parametrize_with_checks"


def _run_with_checks(config, labels):
    plugin.pytest_configure(config)
    config.stash[plugin.checks_key] = labels
    return config.registered["sft-contract-run"]


def _report(nodeid, outcome, when="call", longrepr=None):
    return SimpleNamespace(nodeid=nodeid, outcome=outcome, when=when, longrepr=longrepr, passed=outcome == "passed",
                           failed=outcome == "failed")


def test_each_checks_outcome_and_cause_is_kept_for_the_summary():
    config = FakeConfig(options={"sft_contract": "m:f"})
    run = _run_with_checks(config, {"b::t[a]": ("m:f", "a"), "b::t[b]": ("m:f", "b"), "b::t[c]": ("m:f", "c"),
                                    "b::t[d]": ("m:f", "d")})
    crash = SimpleNamespace(reprcrash=SimpleNamespace(
        message="sft_contract.contract.ContractViolation: batch row 0: padding is attended\n"
                "[failure catalog row 5] pad == eos ..."))
    run.pytest_runtest_logreport(_report("b::t[a]", "passed", when="setup"))  # only the call counts for a pass
    run.pytest_runtest_logreport(_report("b::t[a]", "passed"))
    run.pytest_runtest_logreport(_report("b::t[b]", "passed", when="setup"))
    run.pytest_runtest_logreport(_report("b::t[b]", "failed", longrepr=crash))
    run.pytest_runtest_logreport(_report("b::t[c]", "failed", when="setup", longrepr="  x" * 100 + "\nmore"))
    run.pytest_runtest_logreport(_report("b::t[d]", "skipped", when="setup"))
    run.pytest_runtest_logreport(_report("t.py::not_a_check", "failed", longrepr="boom"))
    assert config.stash[plugin.outcomes_key] == [
        ("m:f", "a", "passed", ""),
        ("m:f", "b", "failed", "batch row 0: padding is attended (failure catalog row 5)"),
        ("m:f", "c", "failed", ("x  " * 100)[:200]),
        ("m:f", "d", "skipped", "")]


def test_step_records_published_during_a_test_go_to_its_summary_line():
    from sft_contract.steps import StepRecord, publish

    config = FakeConfig(options={"sft_contract": "m:f"})
    run = _run_with_checks(config, {})
    records = [StepRecord(1, 2.0, 1.0, 1e-3)]
    for nodeid, published in (("t.py::a", records), ("t.py::b", [])):
        call = run.pytest_runtest_call(SimpleNamespace(nodeid=nodeid))
        next(call)
        publish(published)
        with pytest.raises(StopIteration) as done:
            call.send("result")
        assert done.value.value == "result"
    assert config.stash[plugin.records_key] == {"t.py::a": records}
    plugin.record_steps(config, "t.py::a", records)
    assert config.stash[plugin.records_key] == {"t.py::a": records * 2}


def test_the_session_end_drops_the_models_the_checks_kept():
    from sft_contract import checks

    run = _run_with_checks(FakeConfig(options={"sft_contract": "m:f"}), {})
    checks._untrained[1], checks._trained[2] = object(), object()
    run.pytest_sessionfinish()
    assert checks._untrained == {} and checks._trained == {}


def test_the_terminal_summary_groups_outcomes_by_source_then_shows_training_health():
    from sft_contract.steps import StepRecord

    config, reporter = FakeConfig(), FakeReporter()
    plugin.pytest_terminal_summary(reporter, 0, config)
    assert reporter.lines == []  # not opted in: nothing
    config.stash[plugin.outcomes_key] = [("m:f", "a", "passed", ""), ("other", "t.py::x", "failed", "why"),
                                         ("m:f", "b", "skipped", "")]
    good, bad = [StepRecord(1, 2.0, 1.0, 1e-3), StepRecord(2, 1.5, 0.5, 1e-3)], [StepRecord(1, 2.0, 0.0, 1e-3)]
    config.stash[plugin.records_key] = {"t.py::good": good, "t.py::bad": bad}
    plugin.pytest_terminal_summary(reporter, 1, config)
    assert reporter.lines == [
        "=== SFT contract: m:f ===", "PASSED  a", "SKIPPED b",
        "=== SFT contract: other ===", "FAILED  t.py::x: why",
        "=== training health ===",
        "ok   t.py::good: 2 steps, loss 2.0000 -> 1.5000, max grad norm 1.000",
        "BAD  t.py::bad: 1 steps, loss 2.0000 -> 2.0000, max grad norm 0.000 (the gradient norm is exactly 0: no "
        "trainable parameter received a gradient, catalog row 8)"]


def test_a_summary_line_skips_non_finite_gradient_norms():
    from sft_contract.steps import StepRecord

    line = plugin.summary_line("t::x", [StepRecord(1, 2.0, float("nan"), 1e-3), StepRecord(2, 1.0, 3.0, 1e-3)])
    assert line.startswith("BAD  t::x: 2 steps, loss 2.0000 -> 1.0000, max grad norm 3.000 (the gradient norm is nan")
    assert plugin.summary_line("t::x", [StepRecord(1, 2.0, float("inf"), 1e-3)]).startswith(
        "BAD  t::x: 1 steps, loss 2.0000 -> 2.0000, max grad norm nan (")
    assert plugin.summary_line("t::x", []) == "BAD  t::x: no steps"


def test_the_fixtures_without_an_opt_in():
    config = FakeConfig()
    with pytest.raises(pytest.UsageError, match="the sft_contract fixture needs --sft-contract=package.module:factory"):
        plugin.sft_contract._get_wrapped_function()(config)
    settings = plugin.sft_contract_settings._get_wrapped_function()(config)
    assert settings.max_examples == 20 and settings.derandomize
    from sft_contract.steps import assert_steps_healthy

    assert plugin.sft_training_health._get_wrapped_function()() is assert_steps_healthy


def test_the_fixtures_with_an_opt_in(tmp_path, monkeypatch):
    import dataclasses

    (tmp_path / "kitproj_contract.py").write_text(
        "import dataclasses\n@dataclasses.dataclass\nclass C:\n    steps: int = 3\n"
        "    def make_model(self):\n        return 'fresh model'\n"
        "def make():\n    return C()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = FakeConfig(options={"sft_contract": "kitproj_contract:make", "sft_contract_steps": 2,
                                 "sft_contract_examples": 4})
    plugin.pytest_configure(config)
    contract = plugin.sft_contract._get_wrapped_function()(config)
    assert dataclasses.is_dataclass(contract) and contract.steps == 2
    assert plugin.sft_contract_settings._get_wrapped_function()(config).max_examples == 4
    trained = []
    monkeypatch.setattr("sft_contract.contract.train_a_few_steps", lambda c, m, n: trained.append((c, m, n)) or [n])
    run = plugin.sft_train_steps._get_wrapped_function()(contract)
    assert run(5) == [5] and run(model="mine") == [None]
    assert trained == [(contract, "fresh model", 5), (contract, "mine", None)]


def test_reports_before_any_check_was_collected_are_ignored():
    config = FakeConfig(options={"sft_contract": "m:f"})
    plugin.pytest_configure(config)
    config.registered["sft-contract-run"].pytest_runtest_logreport(_report("t.py::x", "failed", longrepr="boom"))
    assert config.stash[plugin.outcomes_key] == []
