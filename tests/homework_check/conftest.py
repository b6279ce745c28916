"""Fixtures of the checker's tests: a tiny random model with the real tokenizer, and test packages built from
packages/course in a shape with a defect (packages/shapes.py)."""

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, random_llama_dir

PACKAGES = Path(__file__).resolve().parent / "packages"


@pytest.fixture(scope="session")
def check_model_dir(hw_tokenizer, tmp_path_factory):
    """2 layers of 16: their 3 training steps take a second."""
    return random_llama_dir(hw_tokenizer, tmp_path_factory.mktemp("check-model"), layers=2, max_positions=512)


def course_data(target: Path, train_rows: int = 24) -> None:
    """A slice of this repository's data in the course's layout (answers from 0.0x to 1e9)."""
    rows = json.loads((REPO / "data" / "train.json").read_text(encoding="utf-8"))
    target.mkdir(parents=True, exist_ok=True)
    (target / "train.json").write_text(json.dumps(rows[:train_rows]), encoding="utf-8")
    (target / "valid.json").write_text(json.dumps(rows[train_rows:train_rows + 8]), encoding="utf-8")


def build_package(root: Path, shape: list, patches: list) -> Path:
    """packages/course with `shape` and `patches` applied, and its data, under root."""
    shutil.copytree(PACKAGES / "course" / "homework", root / "homework",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new in [*shape, *patches]:
        path = root / "homework" / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{file}: {old!r} occurs {text.count(old)} times"
        path.write_text(text.replace(old, new), encoding="utf-8")
    course_data(root / "data")
    return root
