"""The course homework check (`python -m homework.sft check PATH`) as the kit knows it: the names of its checks,
and the pytest battery's way of running it (`pytest --sft-homework=PATH`, ini `sft_homework`).

The checker itself belongs to the homework distribution (homework/tools/check); the kit starts it as a
subprocess, in a directory of its own so that the `homework` package PATH holds is not the one imported.
Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# check name -> what it holds when it passes; the checker reports them in this order
CHECKS = {
    "imports": "imports with the course's requirements",
    "rows": "training rows: answer + EOS supervised, nothing else",
    "answers": "trained answers read back by their parser",
    "prompt": "inference prompt == training prompt",
    "batching": "batched generation == one by one",
    "steps": "3 optimizer steps of their train_model",
    "compat": "arguments the installed transformers accepts",
    "saved": "everything trained is saved",
    "reload": "their load() returns the trained model",
}
MODULE = "homework.tools.check"  # `python -m homework.tools.check PATH` is `python -m homework.sft check PATH`


def run(path: str | os.PathLike, *args: str, timeout: float = 3600) -> dict:
    """The checker's JSON report on the package at `path` (its "exit" is the command's status)."""
    path = Path(path).resolve()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # theirs must not shadow the checker's package
    with tempfile.TemporaryDirectory(prefix="sft-homework-") as tmp:
        out = Path(tmp) / "report.json"
        proc = subprocess.run([sys.executable, "-m", MODULE, str(path), "--json", str(out), *args], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"exit": 2, "problem": f"the checker ended with status {proc.returncode}: " + " | ".join(tail),
                    "checks": []}
        return json.loads(out.read_text(encoding="utf-8"))
