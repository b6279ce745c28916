"""The course grader's calling convention (homework.tools.grader_check): a fresh interpreter, a copy of the package
laid out as a submission, `importlib.import_module("homework")` and attribute access only.

The fast tier submits a tiny untrained adapter and asks for two questions per case: it proves the names the
grader reads exist and return the right types. The slow tier submits the default training's adapter
(tests/test_sft_accuracy.py) and grades it as the course would.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from homework.tools import grader_check


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, hw_base_model):
    """An untrained LoRA r=1 adapter on two projections of the embedded model, saved as train_model saves one."""
    import copy

    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("tiny") / "adapter"
    cfg = LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"], r=1, lora_alpha=2)
    get_peft_model(copy.deepcopy(hw_base_model), cfg).save_pretrained(out)
    return out


def test_submission_copy_holds_the_package_data_and_adapter_only(tmp_path, tiny_adapter):
    sub = grader_check.lay_out_submission(tmp_path / "sub", tiny_adapter)
    assert (sub / "homework" / "__init__.py").is_file() and (sub / "data" / "valid.json").is_file()
    assert (sub / "homework" / "sft_model" / "adapter_config.json").is_file()
    assert not list(sub.rglob("__pycache__"))


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_grader_convention_on_a_tiny_adapter(tmp_path, tiny_adapter):
    sub = grader_check.lay_out_submission(tmp_path / "sub", tiny_adapter)
    results = grader_check.run_cases(sub, questions=2, bench_questions=2)
    # the package the grader imported is the submission's, not this checkout's
    assert Path(results["package_file"]).resolve() == (sub / "homework" / "__init__.py").resolve()
    for case in ("generate", "batched"):
        outputs = results[case]["outputs"]
        assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
        assert math.isfinite(results[case]["loss"]) and results[case]["loss"] > 0
    sft = results["sft"]
    assert 100_000_000 < sft["parameters"] <= grader_check.MAX_PARAMETERS
    assert sft["questions"] == 2 and 0.0 <= sft["accuracy"] <= 1.0 and 0.0 <= sft["answer_rate"] <= 1.0
    rows = grader_check.score(results)
    assert set(rows) == {"generate", "batched", "sft"} and all(0.0 <= r["share"] <= 1.0 for r in rows.values())


@pytest.mark.integration  # a fresh interpreter on a copy of the package: seconds, and outside mutation runs
def test_a_broken_submission_fails_loudly_with_the_graders_error(tmp_path, tiny_adapter):
    """The convention reads `homework.data` without importing it: a package that never binds it fails."""
    sub = grader_check.lay_out_submission(tmp_path / "sub", tiny_adapter)
    init = sub / "homework" / "__init__.py"
    # the package as it was when the grader scored 0: `data` unbound, only the listed names resolved lazily
    init.write_text(init.read_text() + "\ndel data\n\n\ndef __getattr__(name):\n    if name in _LAZY:\n"
                    "        return getattr(importlib.import_module('.' + _LAZY[name], __name__), name)\n"
                    "    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')\n")
    with pytest.raises(RuntimeError, match="has no attribute 'data'"):
        grader_check.run_cases(sub, questions=1, bench_questions=1, timeout=120)


@pytest.mark.parametrize(("loss", "share"), [(6.2, 1.0), (5.0, 1.0), (7.1, 0.5), (8.0, 0.0), (9.5, 0.0)])
def test_loss_rule(loss, share):
    assert grader_check.loss_fraction(loss) == pytest.approx(share)


@pytest.mark.parametrize(("accuracy", "share"), [(0.3, 0.0), (0.4, 0.0), (0.5, 0.5), (0.6, 1.0), (0.95, 1.0)])
def test_accuracy_rule(accuracy, share):
    assert grader_check.accuracy_fraction(accuracy) == pytest.approx(share)


def test_a_case_over_its_limit_scores_nothing():
    results = {"generate": {"seconds": 41.0, "loss": 5.0}, "batched": {"seconds": 1.0, "loss": 5.0},
               "sft": {"seconds": 10.0, "accuracy": 0.9, "parameters": 400_000_000}}
    rows = grader_check.score(results)
    assert rows["generate"]["share"] == 0.0 and rows["batched"]["share"] == 1.0
    assert rows["sft"]["share"] == 0.0  # over the parameter limit


def test_a_case_exactly_at_its_limits_scores_in_full_and_each_row_names_what_was_graded():
    results = {"generate": {"seconds": 40.0, "loss": 6.2}, "batched": {"seconds": 15.0, "loss": 7.1},
               "sft": {"seconds": 60.0, "accuracy": 0.5, "parameters": grader_check.MAX_PARAMETERS}}
    assert grader_check.score(results) == {
        "generate": {"seconds": 40.0, "limit": 40.0, "graded": "loss", "value": 6.2, "share": 1.0},
        "batched": {"seconds": 15.0, "limit": 15.0, "graded": "loss", "value": 7.1, "share": pytest.approx(0.5)},
        "sft": {"seconds": 60.0, "limit": 60.0, "graded": "accuracy", "value": 0.5, "share": pytest.approx(0.5)}}


def test_the_submission_leaves_out_caches_leftovers_and_the_checkouts_own_adapter(tmp_path, monkeypatch):
    from homework import data

    package, data_dir, adapter = tmp_path / "homework", tmp_path / "data", tmp_path / "trained"
    for path in ["__init__.py", "tools/cli.py", "__pycache__/x.cpython-311.pyc", "tools/old.pyc",
                 "sft_model/adapter_config.json", "sft_model/stale.safetensors", "sft_model.bak/adapter_config.json"]:
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text("")
    data_dir.mkdir()
    (data_dir / "valid.json").write_text("[]")
    (data_dir / "train.json.tmp").write_text("")  # an interrupted atomic write
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(grader_check, "PACKAGE_DIR", package)
    monkeypatch.setattr(data, "data_dir", lambda: data_dir)
    sub = grader_check.lay_out_submission(tmp_path / "sub", adapter)
    assert sorted(str(p.relative_to(sub)) for p in sub.rglob("*")) == [
        "data", "data/valid.json", "homework", "homework/__init__.py", "homework/sft_model",
        "homework/sft_model/adapter_config.json", "homework/tools", "homework/tools/cli.py"]


def child_running(monkeypatch, code: str) -> None:
    """Stand a short script in for the grader's child process (what run_cases launches and reads back)."""
    monkeypatch.setattr(grader_check, "_CHILD", code)


def test_the_cases_run_in_the_submission_without_this_checkout_on_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/checkout")
    monkeypatch.setenv("HOMEWORK_DATA_DIR", "/checkout/data")
    monkeypatch.setenv("HF_HOME", "/models")  # the model cache settings are kept
    child_running(monkeypatch, "import json, os, sys\n"
                               "print('GRADER-CHECK {\"an earlier line\": 1}')\nprint('loading...')\n"
                               "print('GRADER-CHECK {\"a second one\": 2}')\n"
                               "print('GRADER-CHECK ' + json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'env': "
                               "[os.environ.get(k) for k in ('PYTHONPATH', 'HOMEWORK_DATA_DIR', 'HF_HOME')]}))")
    assert grader_check.run_cases(tmp_path, questions=2, bench_questions=3) == {
        "argv": [str(tmp_path), "2", "3"], "cwd": str(tmp_path), "env": [None, None, "/models"]}
    assert grader_check.run_cases(tmp_path)["argv"] == [str(tmp_path), "32", "100"]  # what the grader asks


@pytest.mark.parametrize(("code", "exit_code", "tail"), [
    ("import sys\nfor i in range(20): print('line', i, file=sys.stderr)\nsys.exit(3)", 3,
     [f"line {i}" for i in range(5, 20)]),  # the last 15 lines of its errors
    ("for i in range(20): print('out', i)", 0, [f"out {i}" for i in range(5, 20)]),  # no figures: what it printed
    ("import sys\nprint('GRADER-CHECK {}')\nsys.exit(1)", 1, ["GRADER-CHECK {}"]),  # figures, then a crash
])
def test_a_failed_child_raises_with_its_exit_code_and_last_lines(tmp_path, monkeypatch, code, exit_code, tail):
    child_running(monkeypatch, code)
    with pytest.raises(RuntimeError) as err:
        grader_check.run_cases(tmp_path)
    assert str(err.value) == "\n".join([f"the grader's calling convention failed (exit {exit_code}):", *tail])


def test_a_child_that_hangs_is_stopped_at_the_timeout(tmp_path, monkeypatch):
    import subprocess

    child_running(monkeypatch, "import time\ntime.sleep(30)")
    with pytest.raises(subprocess.TimeoutExpired):
        grader_check.run_cases(tmp_path, timeout=0.2)


RESULTS = {"package_file": "sub/homework/__init__.py",
           "generate": {"seconds": 28.84, "loss": 5.1, "outputs": []}, "batched": {"seconds": 4.6, "loss": 7.1},
           "sft": {"seconds": 12.4, "accuracy": 0.96, "answer_rate": 1.0, "questions": 100, "parameters": 134_515_008}}


def test_main_submits_the_adapter_and_prints_each_cases_share_of_the_points(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grader_check, "PACKAGE_DIR", tmp_path)  # the default adapter: <package>/sft_model
    (tmp_path / "sft_model").mkdir()
    (tmp_path / "sft_model" / "adapter_config.json").write_text("{}")
    laid_out, ran = [], []
    monkeypatch.setattr(grader_check, "lay_out_submission", lambda dest, adapter: laid_out.append((dest, adapter))
                        or Path(dest))
    monkeypatch.setattr(grader_check, "run_cases", lambda *args: ran.append(args) or RESULTS)
    assert grader_check.main([]) == 0
    assert capsys.readouterr().out == (
        "case       seconds  limit  graded\n"
        "generate      28.8     40  loss 5.100 -> 100% of the case's points\n"
        "batched        4.6     15  loss 7.100 -> 50% of the case's points\n"
        "sft           12.4     60  accuracy 0.960 -> 100% of the case's points\n"
        "SFT model: 134,515,008 parameters (limit 380,000,000)\n")
    (dest, adapter), = laid_out
    assert adapter == str(tmp_path / "sft_model") and Path(dest).name.startswith("homework-submission-")
    assert ran == [(Path(dest), 32, 100)] and not Path(dest).exists()  # the questions the grader asks; copy removed


def test_main_writes_the_figures_and_scores_to_json_when_asked(tmp_path, monkeypatch):
    import json

    (tmp_path / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(grader_check, "lay_out_submission", lambda dest, adapter: Path(dest))
    ran = []
    monkeypatch.setattr(grader_check, "run_cases", lambda *args: ran.append(args[1:]) or RESULTS)
    out = tmp_path / "figures.json"
    assert grader_check.main(["--adapter", str(tmp_path), "--questions", "2", "--bench-questions", "3",
                              "--json", str(out)]) == 0
    assert ran == [(2, 3)]
    assert json.loads(out.read_text()) == {"results": RESULTS, "scores": grader_check.score(RESULTS)}


def test_main_without_a_trained_adapter_exits_2_saying_to_train_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grader_check, "run_cases", lambda *args: pytest.fail("nothing to submit"))
    assert grader_check.main(["--adapter", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: --adapter {tmp_path}: no adapter_config.json; train first "
                                       "(python -m homework.sft train)\n")


def test_the_help_explains_each_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping
    with pytest.raises(SystemExit):
        grader_check.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m homework.tools.grader_check [-h]")
    assert "\n  generate  BaseLLM() -> model.eval() -> llm.generate(q) one question at a time" in out  # as written
    for line in [f"--adapter ADAPTER     the trained adapter to submit (default: {grader_check.PACKAGE_DIR / 'sft_model'})",
                 "--questions QUESTIONS  questions in the generation cases (grader: 32)",
                 "--bench-questions BENCH_QUESTIONS  questions in the SFT case (grader: 100)",
                 "--json JSON           also write the figures to this file"]:
        assert " ".join(line.split()) in " ".join(out.split()), line


def test_the_generation_loss_scores_every_real_token_and_no_padding(hw_tokenizer):
    """The rule the generation cases are graded by: the mean cross-entropy over the tokens of each question and
    its generation, padding excluded. On a padded batch with pad == EOS, the loss the child computes equals a naive
    one, row by row without any padding -- a real EOS inside a text counted, the padding not."""
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F

    from tests.conftest import random_llama

    tok = hw_tokenizer  # as BaseLLM loads it, which is what the child's llm.tokenizer is
    assert tok.pad_token_id == tok.eos_token_id and tok.padding_side == "right"  # SmolLM2's
    model = random_llama(len(tok), initializer_range=1.0).eval()  # far from uniform: every token's loss its own
    texts = ["How many gram are there per 6 kg? 6000",
             "Convert 2 hours to minutes." + tok.eos_token,  # a generation that ended: its EOS is real
             "1 m to cm? 100 and some longer prose that keeps going for a while"]
    total, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].double()
        total += float(F.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    llm = SimpleNamespace(tokenizer=tok, model=model, device="cpu")
    assert grader_check.token_loss(llm, texts) == pytest.approx(total / count, rel=1e-5)
    assert "\n" + grader_check.TOKEN_LOSS.strip() + "\n" in grader_check._CHILD  # the child runs this very text
