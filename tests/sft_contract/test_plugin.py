"""The kit's pytest plugin (sft_contract.plugin), exercised with pytester in throwaway projects.

Inner runs load the plugin by module name with its entry point blocked (`run_with_plugin`), so these
tests pass whether the outer run got the plugin from the installed entry point or from `-p`. The foreign
project (tests/foreign_project/sftproj.py) is not homework: a tiny random Llama, a character tokenizer,
its own prompt format and a stock transformers Trainer; SFTPROJ_BUG seeds one bug in it.
"""

import ast
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

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
    import importlib.util

    from sft_contract import contract as sft

    spec = importlib.util.spec_from_file_location("sftproj_warmup", REPO / "tests" / "foreign_project" / "sftproj.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.contract()
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
