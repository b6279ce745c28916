"""nox sessions: smoke, tests, slow, lint, bench, and the suite against transformers 4.x and 5.x.

Environments are reused between runs (`nox -s smoke` twice installs once). torch is pinned so a
CPU machine takes its local CPU build instead of a multi-GB CUDA wheel.
"""

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["smoke", "tests", "lint"]

TORCH = "torch==2.13.0"
TRANSFORMERS = {"5": "transformers>=5,<6", "4": "transformers==4.57.6"}


def install(session, transformers_spec=None):
    session.install(TORCH)
    session.install("-e", ".[test]")
    if transformers_spec:
        session.install(transformers_spec)
    # Build the embedded model cache up front so the tests' timings exclude the one-off conversion.
    session.run("python", "-m", "homework.model_source")


@nox.session
def smoke(session):
    """Property tests plus one real 3-step training run (about a minute after install)."""
    install(session)
    session.run("pytest", "tests/test_tokenization.py", "tests/test_collate.py", "tests/test_answers.py",
                "tests/test_sft.py::test_three_steps_are_healthy_and_move_only_the_adapter[no-checkpointing]",
                *session.posargs)


@nox.session
def tests(session):
    """Everything but the slow tier."""
    install(session)
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def slow(session):
    """Full training and accuracy checks (CPU here; CUDA where available)."""
    install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


def _compat_session(major: str, spec: str):
    @nox.session(name=f"compat-{major}")
    def compat(session):
        install(session, spec)
        session.run("pytest", "-m", "not slow", *session.posargs)

    compat.__doc__ = f'`pytest -m "not slow"` against {spec}.'
    return compat


for _major, _spec in TRANSFORMERS.items():
    globals()[f"compat_{_major}"] = _compat_session(_major, _spec)


@nox.session
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "homework", "tests", "noxfile.py", "conftest.py")


@nox.session
def bench(session):
    """Seed recipe vs this project's trainer, figures printed and written to bench.json."""
    install(session)
    session.run("python", "-m", "homework.bench", "--json", "bench.json", *session.posargs)
