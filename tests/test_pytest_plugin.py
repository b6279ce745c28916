"""The pytest plugin, exercised with pytester in throwaway projects.

Inner runs load the plugin by module name with its entry point blocked (`run_with_plugin`), so these
tests pass whether the outer run got the plugin from the installed entry point or from `-p`. The foreign
project (tests/foreign_project/sftproj.py) is not homework: a tiny random Llama, a character tokenizer,
its own prompt format and a stock transformers Trainer; SFTPROJ_BUG seeds one bug in it.
"""

import pytest

from tests.conftest import REPO

WITH_PLUGIN = ("-p", "no:homework", "-p", "homework.pytest_plugin")
FOREIGN = (REPO / "tests" / "foreign_project" / "sftproj.py").read_text()
BATTERY = ["test_every_example_supervises_its_answer_and_eos", "test_masking_holds_for_other_numbers",
           "test_collation_keeps_every_rows_labels_and_eos", "test_inference_prompt_is_the_training_prompt",
           "test_batched_generation_equals_one_by_one", "test_first_optimizer_steps_are_healthy",
           "test_save_and_reload_gives_the_trained_logits"]


def run_with_plugin(pytester, *args):
    return pytester.runpytest(*WITH_PLUGIN, *args)


def test_entry_point_names_the_plugin_module():
    """What an installed copy registers: one pytest11 entry point, to the module the tests load by name."""
    text = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+; the section is two lines
    section = text.split("[project.entry-points.pytest11]\n", 1)[1].split("\n\n", 1)[0]
    assert section.strip().splitlines() == ['homework = "homework.pytest_plugin"']


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
    import json

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
    pytester.runpytest("-p", "no:homework").assert_outcomes(passed=2)  # markers and items need no fresh process
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
    result.stdout.fnmatch_lines(["SFT contract (homework.contract):", "*--sft-contract=MODULE:FACTORY*",
                                 "*--sft-contract-steps*", "*--sft-contract-examples*", "*sft_contract (string)*"])
    assert "--hw-" not in result.stdout.str()  # this project's own options are not the plugin's


@pytest.fixture(scope="module")
def warmed_up():
    """Run the foreign project's checks once in this process first. pytester's in-process runs drop the
    modules a run imported; torch and transformers load parts lazily, and importing those again in a later
    run crashed the interpreter (a segfault), so everything the battery touches is imported up front."""
    import importlib.util

    from homework import contract as sft

    spec = importlib.util.spec_from_file_location("sftproj_warmup", REPO / "tests" / "foreign_project" / "sftproj.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.contract()
    sft.check_batched_generation(c, c.make_model(), sft.varied_lengths(c, 2), max_new_tokens=2)
    sft.check_save_and_reload(c, c.examples[0][0])
    import homework.contract_battery  # noqa: F401


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
                                 "*= training health =*", "ok   *test_first_optimizer_steps_are_healthy: 3 steps*"])


@pytest.mark.integration
@pytest.mark.parametrize("bug, failing, cause", [
    ("eos_masked", "test_every_example_supervises_its_answer_and_eos", "*not EOS (2)*catalog row 5)"),
    ("collator_rewrites_labels", "test_collation_keeps_every_rows_labels_and_eos", "*rewrote the labels*catalog row 6)"),
    ("prompt_mismatch", "test_inference_prompt_is_the_training_prompt", "*inference prompt's ids are not*catalog row 11)"),
    ("right_padding", "test_batched_generation_equals_one_by_one", "*batched generation gave*catalog row 12)"),
])
def test_each_seeded_bug_in_the_foreign_project_fails_with_its_cause(pytester, monkeypatch, warmed_up, bug, failing,
                                                                     cause):
    _foreign(pytester, monkeypatch, bug)
    result = run_with_plugin(pytester, "--sft-contract=sftproj:contract", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines([f"FAILED  {failing}: {cause}"])
    for name in ("test_first_optimizer_steps_are_healthy", "test_save_and_reload_gives_the_trained_logits"):
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


def test_ini_opt_in_adds_the_battery_only_to_runs_that_name_no_paths(pytester):
    pytester.makeini("""
        [pytest]
        sft_contract = nowhere:contract
    """)
    pytester.makepyfile(test_one="def test_x(): pass")
    named = run_with_plugin(pytester, "test_one.py", "--collect-only", "-q")
    assert "contract_battery" not in named.stdout.str() and named.ret == 0
    unnamed = run_with_plugin(pytester, "--collect-only", "-q")
    unnamed.stdout.fnmatch_lines(["*::test_every_example_supervises_its_answer_and_eos"])
    assert unnamed.ret == 0


def test_sft_training_health_fixture_fails_with_the_cause(pytester):
    pytester.makepyfile("""
        from homework.health import StepRecord
        def test_bad(sft_training_health):
            sft_training_health([StepRecord(1, 2.0, 0.0, 1e-3)])
    """)
    result = run_with_plugin(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gradient norm is exactly 0*failure catalog row 8*"])


def test_loadable_with_dash_p_when_the_entry_point_is_off(pytester):
    pytester.makepyfile("""
        def test_fixture(sft_training_health):
            assert callable(sft_training_health)
    """)
    run_with_plugin(pytester).assert_outcomes(passed=1)
    assert pytester.runpytest("-p", "no:homework").ret != 0  # really comes from the plugin
