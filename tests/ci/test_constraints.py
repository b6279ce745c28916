"""The tested set of versions (.ci/constraints.txt): what CI and the README install, kept by `nox -s lock`,
and checked against the newest allowed versions by `nox -s newest`."""

import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.ci.conftest import REPO

CONSTRAINTS = REPO / ".ci" / "constraints.txt"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()
            if line.startswith("python3 -m venv")]


def _pip_installs(command: str) -> list[list[str]]:
    steps = [shlex.split(part) for part in command.split("&&")]
    return [words for words in steps if words[:2] == ["pip", "install"]]


def test_both_readme_commands_and_ci_install_the_tested_set():
    commands = _readme_commands()
    assert len(commands) == 2, commands  # the newcomer's two commands: the main job and the tests
    ci = (REPO / ".ci" / "run").read_text().replace("\\\n", " ")
    for command in commands:
        installs = _pip_installs(command)
        project = [w for w in installs if any(a.startswith(("-e", ".")) for a in w[2:])]
        assert project and all("-c" in w and w[w.index("-c") + 1] == ".ci/constraints.txt" for w in project), command
    # CI runs the README's test command (with pip quiet): the same installs, the same constraints
    test_command = commands[1].replace("pip install ", "pip install -q ")
    assert test_command.split(" && pytest")[0] in " ".join(ci.split()), "CI no longer runs the README's test command"


def _project_requirements() -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    named = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        named += [r for r in extra if not r.startswith("homework")]
    return [Requirement(r) for r in named]


def test_the_tested_set_pins_every_requirement_inside_its_allowed_range(nox_module):
    pins = nox_module.pinned_versions(CONSTRAINTS.read_text())
    for req in _project_requirements():
        name = canonicalize_name(req.name)
        if name.startswith(nox_module.UNPINNED):
            assert name not in pins, f"{name} is pinned on its own, not in the tested set"
            continue
        assert name in pins, f"{req.name} is a requirement but the tested set does not pin it"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"the tested set pins {name}=={pins[name]}, outside pyproject.toml's {req}"


def test_a_freeze_becomes_the_tested_set_without_torch_or_the_project(nox_module):
    freeze = ("accelerate==1.16.0\nPint==0.25.3\n# Editable Git install with no remote (homework==0.1.0)\n"
              "-e /src/homework\ntorch==2.13.0+cpu\nnvidia-cublas-cu12==12.8.4.1\ntyping_extensions==4.16.0\n")
    text = nox_module.constraints_from_freeze(freeze, "3.11")
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        'accelerate==1.16.0; python_version >= "3.11"', 'pint==0.25.3; python_version >= "3.11"',
        'typing-extensions==4.16.0; python_version >= "3.11"']
    assert nox_module.pinned_versions(text) == {"accelerate": "1.16.0", "pint": "0.25.3", "typing-extensions": "4.16.0"}
    for line in text.splitlines():  # every line is one pip accepts in a constraints file
        if not line.startswith("#"):
            Requirement(line)


def test_drift_names_each_newer_and_each_new_package(nox_module):
    tested = {"accelerate": "1.15.0", "peft": "0.21.2"}
    installed = {"accelerate": "1.16.0", "peft": "0.21.2", "torch": "2.14.0", "kernels": "0.19.1"}
    assert nox_module.drift(tested, installed) == ["accelerate 1.15.0 -> 1.16.0", "kernels 0.19.1 (not in the tested set)"]
    assert nox_module.drift(tested, tested) == []


def test_sessions_install_the_tested_set_unless_they_pin_their_own(nox_module):
    calls = []
    session = type("S", (), {"install": lambda self, *a: calls.append(a), "run": lambda self, *a, **k: None})()
    nox_module.install(session)
    nox_module.install(session, ["transformers==4.52.1"])
    assert calls[1] == ("-e", ".[test]", "-c", str(nox_module.CONSTRAINTS))
    assert calls[3] == ("-e", ".[test]", "transformers==4.52.1")
    assert Path(REPO / nox_module.CONSTRAINTS) == CONSTRAINTS
