"""The pytest plugin, exercised with pytester in throwaway test projects.

Inner runs load the plugin by module name with its entry point blocked (`run_with_plugin`), so these
tests pass whether the outer run got the plugin from the installed entry point or from `-p`.
"""

import pytest
import torch

from tests.conftest import REPO

WITH_PLUGIN = ("-p", "no:homework", "-p", "homework.pytest_plugin")


def run_with_plugin(pytester, *args):
    return pytester.runpytest(*WITH_PLUGIN, *args)


def test_entry_point_names_the_plugin_module():
    """What an installed copy registers: one pytest11 entry point, to the module the tests load by name."""
    text = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+; the section is two lines
    section = text.split("[project.entry-points.pytest11]\n", 1)[1].split("\n\n", 1)[0]
    assert section.strip().splitlines() == ['homework = "homework.pytest_plugin"']


def test_markers_are_registered_with_help(pytester):
    result = run_with_plugin(pytester, "--markers")
    result.stdout.fnmatch_lines([
        "@pytest.mark.integration: runs a real model*",
        "@pytest.mark.slow: full training and accuracy checks*",
        "@pytest.mark.gpu: needs CUDA*",
    ])


def test_options_are_grouped_in_help(pytester):
    result = run_with_plugin(pytester, "--help")
    result.stdout.fnmatch_lines(["homework SFT training health:", "*--hw-model=HW_MODEL*", "*--hw-device*",
                                 "*--hw-health-steps*", "*hw_health_steps*"])


def test_strict_markers_accepts_the_tiers(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.slow
        def test_a(): pass
        @pytest.mark.integration
        def test_b(): pass
        @pytest.mark.nonsense
        def test_c(): pass
    """)
    result = run_with_plugin(pytester, "--strict-markers")
    result.stdout.fnmatch_lines(["*'nonsense' not found in `markers`*"])
    assert result.ret != 0
    pytester.makepyfile(test_ok="""
        import pytest
        @pytest.mark.slow
        def test_a(): pass
    """)
    assert run_with_plugin(pytester, "--strict-markers", "test_ok.py").ret == 0


def test_gpu_marker_is_a_capability_check(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.gpu
        def test_needs_cuda():
            import torch
            assert torch.cuda.is_available()
    """)
    result = run_with_plugin(pytester, "-rs")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*gpu: CUDA is not available*"])


def test_report_header_and_ini_settings(pytester):
    pytester.makeini("""
        [pytest]
        hw_health_steps = 2
        hw_seed = 7
    """)
    pytester.makepyfile("""
        def test_settings(hw_settings):
            assert hw_settings["steps"] == 5 and hw_settings["seed"] == 7
    """)
    result = run_with_plugin(pytester, "--hw-health-steps", "5")
    result.stdout.fnmatch_lines(["homework: model=* device/dtype=* seed=7 health-steps=5"])
    result.assert_outcomes(passed=1)


def test_training_health_fixture_fails_with_the_cause(pytester):
    pytester.makepyfile("""
        from homework.health import StepRecord
        def test_bad(training_health):
            training_health([StepRecord(1, 0.0, float("nan"), 1e-3)])
    """)
    result = run_with_plugin(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*failure catalog row 2*"])


def test_loadable_with_dash_p_when_the_entry_point_is_off(pytester):
    pytester.makepyfile("""
        def test_fixture(hw_settings):
            assert "model" in hw_settings
    """)
    result = pytester.runpytest("-p", "no:homework", "-p", "homework.pytest_plugin")
    result.assert_outcomes(passed=1)
    assert pytester.runpytest("-p", "no:homework").ret != 0  # really comes from the plugin


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_train_steps_fixture_and_terminal_summary(pytester):
    pytester.makepyfile("""
        def test_three_steps(train_steps, training_health):
            records = train_steps(2, learning_rate=1e-3)
            assert len(records) == 2
            training_health(records)
    """)
    result = run_with_plugin(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= training health =*", "ok   test_train_steps_fixture_and_terminal_summary.py"
                                 "::test_three_steps: 2 steps, loss * -> *, max grad norm *"])
