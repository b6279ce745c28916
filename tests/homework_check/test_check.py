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
    driver.shared.ROOT = build_package(tmp_path / "p", SHAPES["plain"], [
        ("base_llm.py", "import torch\n", "import torch\nfrom IPython.display import display\n"
                                          "try:\n    import wandb\nexcept ImportError:\n    wandb = None\n"),
        ("sft.py", "    from peft import LoraConfig, get_peft_model", "    import bitsandbytes\n"
                                                                       "    from peft import LoraConfig, get_peft_model")])
    assert driver.package.count_imports() == [("IPython.display", "homework/base_llm.py:2", True),
                                      ("bitsandbytes", "homework/sft.py:37", False)]
    (driver.shared.ROOT / "homework" / "data.py").write_text("def broken(:\n")
    with pytest.raises(driver.shared.Finding) as found:
        driver.package.count_imports()
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


def test_a_missing_module_is_named_for_what_it_is():
    driver = _driver()
    assert "a misspelling?" in driver.shared.missing_module_reason("Transformers")
    assert driver.shared.missing_module_reason("debugpy.common.json").startswith("not installed here")
    # what the course's requirements pull in (lightning: torchmetrics; torch: networkx) is no stray import
    assert all(map(driver.shared._allowed, ("torchmetrics.text", "networkx.utils", "google.protobuf.message", "yaml")))
    assert not any(map(driver.shared._allowed, ("google.colab", "IPython.display", "debugpy", "torchvisionx")))


def test_a_stubbed_module_lets_their_module_level_code_run():
    import sys

    driver = _driver()
    before = list(sys.meta_path)
    driver.shared.STUBBED.add("colab_only_helpers")
    driver.sandbox.stub_missing_modules()
    try:
        from colab_only_helpers.drive import Mount  # noqa: PLC0415 - the stub serves any depth

        class Theirs(Mount):
            pass

        assert Theirs("/content").anything.else_() is not None
        with pytest.raises(ModuleNotFoundError):
            __import__("colab_only_helpers_not_stubbed")
    finally:
        sys.meta_path[:] = before
        for name in [m for m in sys.modules if m.startswith("colab_only_helpers")]:
            del sys.modules[name]


def test_their_own_scheduler_is_judged_over_the_whole_run():
    import torch

    driver = _driver()
    weight = torch.nn.Parameter(torch.zeros(2))

    def judged(make, steps=160):
        optimizer = torch.optim.AdamW([weight], lr=2e-4)
        scheduler = make(optimizer)
        found = driver.training.frozen_schedule(scheduler, optimizer, steps)
        assert optimizer.param_groups[0]["lr"] == 2e-4 and scheduler.last_epoch == 0  # put back as it was
        return found

    found = judged(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.1))
    assert found and "StepLR" in found and "to 2e-08 by step 20 of the run's 160" in found
    assert judged(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=50, gamma=0.5)) is None
    assert judged(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1 - k / 160)) is None


def test_the_schedule_is_counted_at_their_batch_not_the_checks():
    from types import SimpleNamespace as NS

    driver = _driver()
    rows = NS(dataset=list(range(1000)))
    args = NS(max_steps=-1, check_theirs=(32, 2), world_size=1, num_train_epochs=3)
    assert driver.training.their_run_steps(args, NS(max_steps=1500), rows) == 3 * (32 // 2)  # ceil(1000/32) = 32 batches
    assert driver.training.their_run_steps(NS(**{**vars(args), "max_steps": 7}), NS(max_steps=7), rows) == 7


def test_a_timeout_says_where_their_code_was(tmp_path):
    driver = _driver()
    driver.shared.ROOT = tmp_path
    (tmp_path / "homework").mkdir()
    (tmp_path / "homework" / "datagen.py").write_text("import sys\n\ndef generate(alarm):\n    alarm(14, sys._getframe())\n")
    spec = importlib.util.spec_from_file_location("their_datagen", tmp_path / "homework" / "datagen.py")
    theirs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theirs)
    with pytest.raises(driver.shared.CheckTimeout) as stop:
        theirs.generate(driver._alarm)
    assert stop.value.args == ("homework/datagen.py:4 generate",)


def test_removed_arguments_are_read_from_their_source(tmp_path):
    driver = _driver()
    driver.shared.ROOT = build_package(tmp_path / "p", SHAPES["plain"], [
        ("sft.py", "learning_rate=1e-3,", "learning_rate=1e-3, logging_dir=output_dir, eval_strategy='no',"),
        ("sft.py", "trainer = Trainer(model=model,", "trainer = Trainer(tokenizer=llm.tokenizer, model=model,")])
    assert [name for name, _ in driver.training.source_compat()] == ["logging_dir", "Trainer(tokenizer=...)"]
    assert all(where.startswith("homework/sft.py:") for _, where in driver.training.source_compat())


def test_the_child_side_imports_nothing_of_this_homework():
    """In the child process `homework` is theirs: the driver and child/ import only each other, the kit and
    what the course installs (a relative import out of child/ would reach this repository's package)."""
    import ast

    for path in [DRIVER, *sorted((DRIVER.parent / "child").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n == "homework" or n.startswith("homework.") for n in names), (path.name, node.lineno)
            assert not (isinstance(node, ast.ImportFrom) and node.level > 1), (path.name, node.lineno)
            assert not (path == DRIVER and isinstance(node, ast.ImportFrom) and node.level), (path.name, node.lineno)


def test_pad_tokens_after_a_finished_row_are_no_difference():
    driver = _driver()
    ends = ("<|im_end|>", "<pad>")
    assert driver.checks._without_trailing("<answer>5</answer><|im_end|><pad><|im_end|>", ends) == "<answer>5</answer>"
    assert driver.checks._without_trailing("<|im_end|> 5", ends) == "<|im_end|> 5"  # only at the end
