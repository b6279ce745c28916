"""`python -m homework.sft check PATH`: the SFT checks on a course `homework/` package written elsewhere.

PATH holds a `homework/` package (a student's repository or an unzipped submission) and, usually, its
`data/`. The package is copied into a temporary directory and run there in one subprocess (driver.py):
every write of theirs lands in the copy, nothing of PATH, this repository or the model cache changes, and
their `homework` never meets this one. Each check has a time limit; a crash in their code is a finding.

Exit status: 0 every check holds, 1 a violation (their code is wrong, or does not run with the installed
transformers), 2 the checker could not run (or could not run a check), with the reason.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sft_contract.course import CHECKS

from ...runtime import report
from ...runtime.errors import HomeworkError

DRIVER = Path(__file__).resolve().parent / "driver.py"
TITLES = CHECKS  # check name -> what it holds; the kit keeps the list (its pytest battery runs these)
FAILING = {"violation", "error", "incompatible"}  # the package's fault: exit 1
EVAL_ROWS = 4  # rows kept of each data file but train.json: an evaluation inside train_model costs seconds
TIME_LIMIT = 60.0  # seconds a check may take: the real model's 3 steps take about 10 on 2 idle cores
SKIPPED = ("__pycache__", ".git", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "checkpoint-*", "runs", "wandb")


class CheckError(HomeworkError):
    """The checker could not run on PATH (exit 2)."""


@dataclass
class Result:
    check: str
    verdict: str
    cause: str = ""
    row: int | None = None
    where: str | None = None
    seconds: float = 0.0


@dataclass
class Report:
    path: str
    model: str
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why the checker could not finish
    expected: int = len(TITLES)  # how many checks should report (fewer with --only)

    @property
    def exit_code(self) -> int:
        if any(r.verdict in FAILING for r in self.results):
            return 1
        if self.problem or any(r.verdict != "ok" for r in self.results) or len(self.results) < self.expected:
            return 2
        return 0

    def in_order(self) -> list[Result]:
        """The results in the checks' order (they run in another: training first)."""
        order = list(TITLES)
        return sorted(self.results, key=lambda r: order.index(r.check) if r.check in order else len(order))

    def as_dict(self) -> dict:
        return {"path": self.path, "model": self.model, "exit": self.exit_code, "problem": self.problem,
                "checks": [asdict(r) for r in self.in_order()], "notes": self.notes}


def find_package(path: str | os.PathLike) -> Path:
    """The folder that holds their `homework/` package: PATH itself, or the one folder below it that does
    (an unzipped submission often adds a level, e.g. homework3/)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise CheckError(f"{path}: no such directory. Pass the folder that holds the course's homework/ package")
    if (root / "homework" / "__init__.py").is_file() or (root / "homework" / "sft.py").is_file():
        return root
    if root.name == "homework" and (root / "sft.py").is_file():
        return root.parent
    below = sorted(p.parent.parent for p in root.glob("*/homework/sft.py"))
    if len(below) == 1:
        return below[0]
    raise CheckError(f"{path}: no homework/sft.py in it or in one folder below it"
                     + (f" (found {len(below)}: {', '.join(str(b) for b in below)})" if below else "")
                     + ". Pass the folder that holds the course's homework/ package")


def _copy_data(source: Path, target: Path) -> None:
    """Their data files; every file but train.json cut to its first EVAL_ROWS rows."""
    target.mkdir(parents=True, exist_ok=True)
    for f in source.glob("*.json"):
        if f.name == "train.json":
            shutil.copy2(f, target / f.name)
            continue
        try:
            rows = json.loads(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            rows = None
        if isinstance(rows, list):
            (target / f.name).write_text(json.dumps(rows[:EVAL_ROWS]), encoding="utf-8")
        else:
            shutil.copy2(f, target / f.name)


def prepare_copy(root: Path, workdir: Path) -> tuple[Path, list[str]]:
    """A copy of their package and data in `workdir`, without saved adapters, checkpoints and caches (a
    load() that reads one of those must find what train_model wrote, not what the author had)."""
    notes = []
    copy = workdir / "project"
    shutil.copytree(root / "homework", copy / "homework", ignore=shutil.ignore_patterns(*SKIPPED))
    for adapter in list((copy / "homework").rglob("adapter_config.json")):
        shutil.rmtree(adapter.parent, ignore_errors=True)
    data = root / "data"
    if not (data / "train.json").is_file():
        from ...data import data_dir

        data = data_dir()
        notes.append(f"no data/train.json beside homework/: used {data}")
    _copy_data(data, copy / "data")
    return copy, notes


def _child_env(workdir: Path, model_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEWORK_", "PYTHON", "CUDA_", "HF_"))}
    env.update(HF_HOME=str(workdir / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               CUDA_VISIBLE_DEVICES="", TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled",
               TMPDIR=str(workdir / "tmp"), MPLBACKEND="Agg", MPLCONFIGDIR=str(workdir / "mpl"),
               HOMEWORK_MODEL=model_dir, HOMEWORK_CACHE=str(workdir / "cache"), PYTHONDONTWRITEBYTECODE="1")
    (workdir / "tmp").mkdir(exist_ok=True)
    return env


def run_checks(path: str | os.PathLike, model: str | None = None, *, limit: float = TIME_LIMIT, steps: int = 3,
               only: list[str] | None = None, progress=None) -> Report:
    """Run the checks on the package at `path` in a subprocess; `progress(result)` is called as each ends."""
    from ...runtime.model_source import resolve_model

    root = find_package(path)
    spec = resolve_model(model)
    if spec.kind == "hub":
        raise CheckError(f"--model {model}: a hub id cannot be loaded offline; pass a local model directory")
    unknown = set(only or ()) - set(TITLES)
    if unknown:
        raise CheckError(f"--only: unknown checks {sorted(unknown)}; known: {', '.join(TITLES)}")
    if only and set(only) & {"compat", "saved", "reload"}:
        only = [*only, "steps"]  # they judge what train_model did
    out = Report(str(root), spec.location, expected=len({"imports", *only}) if only else len(TITLES))
    with tempfile.TemporaryDirectory(prefix="homework-check-") as tmp:
        workdir = Path(tmp)
        copy, out.notes = prepare_copy(root, workdir)
        read, write = os.pipe()
        log = workdir / "output.log"
        cmd = [sys.executable, str(DRIVER), "--root", str(copy), "--model", spec.location, "--fd", str(write),
               "--limit", str(limit), "--steps", str(steps), "--only", ",".join(only or ())]
        if any(n.startswith("no data/train.json") for n in out.notes):
            cmd.append("--data-substituted")
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(cmd, cwd=copy, env=_child_env(workdir, spec.location), stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, pass_fds=(write,))
        os.close(write)
        deadline = time.monotonic() + limit * (len(TITLES) + 1) + 60
        buffer = b""
        try:
            with os.fdopen(read, "rb") as pipe:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        out.problem = "the checks ran past their overall time limit"
                        break
                    ready, _, _ = select.select([pipe], [], [], min(left, 5.0))
                    if not ready:
                        continue
                    chunk = os.read(pipe.fileno(), 65536)
                    if not chunk:
                        break
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        _take(out, json.loads(line), progress)
        finally:
            try:  # the pipe closes as the driver ends: give it a moment to exit on its own
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if out.problem is None and proc.returncode != 0 and len(out.results) < out.expected:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            out.problem = f"the check process ended with status {proc.returncode}: " + " | ".join(tail)
    return out


def _take(out: Report, message: dict, progress) -> None:
    if message["event"] == "result":
        result = Result(**{k: message[k] for k in ("check", "verdict", "cause", "row", "where", "seconds")})
        out.results.append(result)
        if progress:
            progress(result, len(out.results))
    elif message["event"] == "notes":
        out.notes += message["notes"]


def format_table(rep: Report) -> str:
    """check · verdict · catalog row · where · cause, one line per check."""
    from sft_contract.catalog import CATALOG

    lines = [f"{'check':<9} {'verdict':<13} {'row':<4} {'where':<36} cause"]
    for r in rep.in_order():
        lines.append(f"{r.check:<9} {r.verdict:<13} {str(r.row or ''):<4} {(r.where or '')[:36]:<36} {r.cause}")
    rows = sorted({r.row for r in rep.results if r.row and r.verdict != "ok"})
    if rows:
        lines.append("")
        lines += [f"row {n}: {CATALOG[n].split(':')[0]} (python -m sft_contract.catalog {n})" for n in rows]
    if rep.notes:
        lines.append("")
        lines += [f"note: {n}" for n in rep.notes]
    if rep.problem:
        lines += ["", f"could not finish: {rep.problem}"]
    verdict = {0: "every check holds", 1: "violations found", 2: "some checks could not run"}[rep.exit_code]
    lines += ["", f"{rep.path}: {verdict} (exit {rep.exit_code})"]
    return "\n".join(lines)


def main_check(path: str, model: str | None, json_file: str | None, limit: float, steps: int,
               only: list[str] | None) -> int:
    def progress(result: Result, k: int) -> None:
        report.info(f"[{k}] {result.check}: {result.verdict} ({result.seconds:.1f} s)")

    try:
        rep = run_checks(path, model, limit=limit, steps=steps, only=only, progress=progress)
    except CheckError as exc:
        report.error(str(exc))
        code = 2
        rep = None
        if json_file:
            Path(json_file).write_text(json.dumps({"path": str(path), "exit": 2, "problem": str(exc)}, indent=2))
        return code
    report.result(format_table(rep))
    if json_file:
        Path(json_file).write_text(json.dumps(rep.as_dict(), indent=2) + "\n", encoding="utf-8")
    return rep.exit_code
