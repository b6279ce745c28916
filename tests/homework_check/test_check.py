"""The checker's own parts, without running anyone's code: where PATH's package is, what the copy holds, the
imports scan, the table and the exit status (fast; the packages themselves run in test_check_packages.py)."""

import importlib.util
import json
from pathlib import Path

import pytest

from homework.tools.check.runner import TITLES, CheckError, Report, Result, find_package, format_table, prepare_copy
from homework.tools.cli import main
from tests.homework_check.conftest import build_package
from tests.homework_check.packages.shapes import SHAPES

DRIVER = Path(__file__).resolve().parents[2] / "homework" / "tools" / "check" / "driver.py"


def test_path_must_hold_a_course_package(tmp_path, capsys):
    with pytest.raises(CheckError, match="no such directory"):
        find_package(tmp_path / "missing")
    with pytest.raises(CheckError, match="no homework/sft.py in it or in one folder below it"):
        find_package(tmp_path)
    package = build_package(tmp_path / "submission" / "homework3", [], [])
    assert find_package(tmp_path / "submission") == package  # an unzipped course zip adds a level
    assert find_package(package / "homework") == package
    assert main(["check", str(tmp_path / "missing"), "--json", str(tmp_path / "r.json")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["exit"] == 2


def test_bad_options_name_the_option(capsys):
    for argv, word in ((["check", ".", "--time-limit", "0"], "--time-limit"), (["check", ".", "--steps", "0"], "--steps")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and word in capsys.readouterr().err


def test_the_copy_leaves_their_adapters_behind_and_cuts_the_evaluation_files(tmp_path):
    package = build_package(tmp_path / "theirs", [], [])
    saved = package / "homework" / "sft_model"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    (package / "homework" / "big.safetensors").write_bytes(b"0")
    before = sorted(p.relative_to(package) for p in package.rglob("*"))
    copy, notes = prepare_copy(package, tmp_path / "work")
    assert not (copy / "homework" / "sft_model").exists() and not (copy / "homework" / "big.safetensors").exists()
    assert (copy / "homework" / "sft.py").read_text() == (package / "homework" / "sft.py").read_text()
    assert json.loads((copy / "data" / "train.json").read_text()) == json.loads((package / "data" / "train.json").read_text())
    assert len(json.loads((copy / "data" / "valid.json").read_text())) == 4
    assert notes == [] and sorted(p.relative_to(package) for p in package.rglob("*")) == before


def _driver():
    spec = importlib.util.spec_from_file_location("check_driver", DRIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_imports_scan_names_what_fails_at_import(tmp_path):
    driver = _driver()
    driver.ROOT = build_package(tmp_path / "p", SHAPES["plain"], [
        ("base_llm.py", "import torch\n", "import torch\nfrom IPython.display import display\n"
                                          "try:\n    import wandb\nexcept ImportError:\n    wandb = None\n"),
        ("sft.py", "    from peft import LoraConfig, get_peft_model", "    import bitsandbytes\n"
                                                                       "    from peft import LoraConfig, get_peft_model")])
    assert driver.count_imports() == [("IPython.display", "homework/base_llm.py:2", True),
                                      ("bitsandbytes", "homework/sft.py:37", False)]
    (driver.ROOT / "homework" / "data.py").write_text("def broken(:\n")
    with pytest.raises(driver.Finding) as found:
        driver.count_imports()
    assert (found.value.row, found.value.where) == (22, "homework/data.py:1")


def test_the_table_and_the_exit_status():
    every = [Result(name, "ok", "fine") for name in TITLES]
    assert Report("p", "m", every).exit_code == 0
    assert Report("p", "m", every[:-1]).exit_code == 2  # a check that never reported
    skipped = [*every[:-1], Result("reload", "could not run", "train_model did not finish")]
    assert Report("p", "m", skipped).exit_code == 2
    broken = [Result("rows", "violation", "24 of 24 rows: ...", 16, "homework/sft.py:15 tokenize"), *skipped[1:]]
    rep = Report("p", "m", broken, notes=["loaded m where their code asked for 'x'"])
    assert rep.exit_code == 1 and rep.as_dict()["exit"] == 1
    text = format_table(rep)
    assert text.splitlines()[0].split() == ["check", "verdict", "row", "where", "cause"]
    assert "rows      violation     16   homework/sft.py:15 tokenize" in text
    assert "row 16: the prompt is trained on (python -m sft_contract.catalog 16)" in text
    assert "note: loaded m where their code asked for 'x'" in text and text.endswith("violations found (exit 1)")
