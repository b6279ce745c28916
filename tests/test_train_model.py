"""train_model end to end on a few rows: checkpoints, resume, metrics, plots, and the CLI's errors."""

import json
import math

import pytest
from transformers import TrainerCallback

from homework.checkpoints import checkpoints_dir, last_complete_checkpoint
from homework.sft import train_model
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

TINY = dict(limit=16, batch_size=4, max_steps=4, save_steps=2, evaluate=False, progress=False, seed=0,
            learning_rate=1e-3, warmup_steps=0)


class InterruptAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


@pytest.mark.timeout(600)
def test_resumed_run_ends_with_the_same_loss_as_an_uninterrupted_one(tmp_path, capsys):
    """Issue 6, item 3: Ctrl-C leaves a resumable checkpoint; --resume reproduces the trajectory."""
    full = train_model(tmp_path / "full", **TINY)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_model(out, callbacks=[InterruptAt(3)], **TINY)
    assert "Resume with: python -m homework.sft train --resume" in capsys.readouterr().err
    assert not out.exists()  # no adapter is written by an interrupted run
    assert last_complete_checkpoint(checkpoints_dir(out)).name == "checkpoint-3"
    resumed = train_model(out, resume=True, **TINY)
    assert [r.step for r in resumed.records] == [4]
    assert resumed.records[-1].loss == pytest.approx(full.records[-1].loss, abs=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["step"] for s in metrics["steps"]] == [4]
    assert (out / "training_curves.png").stat().st_size > 1000
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.timeout(600)
def test_seeded_runs_reproduce_their_loss_trajectory(tmp_path, monkeypatch):
    from homework import allocator
    from homework.device import resolve_placement

    tuned = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: tuned.append(1))
    a = train_model(tmp_path / "a", **{**TINY, "max_steps": 3, "save_steps": 0})
    b = train_model(tmp_path / "b", **{**TINY, "max_steps": 3, "save_steps": 0})
    assert [r.loss for r in a.records] == [r.loss for r in b.records]
    assert all(math.isfinite(r.grad_norm) for r in a.records)
    # CPU training keeps freed memory (homework/allocator.py); the CUDA caching allocator needs no help
    assert tuned == ([1, 1] if resolve_placement().device.type == "cpu" else [])


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    proc = run_cli("-m", "homework.sft", "train", "--resume", "--output-dir", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "no complete checkpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_training_file_exits_non_zero_with_one_message(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('[["How many g in 1 kg?", "a thousand"]]')
    proc = run_cli("-m", "homework.sft", "train", "--train-file", str(bad), "--output-dir", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert f"{bad}, row 0" in proc.stderr and "not a number" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fault, words", [("nan_loss", "row 1"), pytest.param("labels_all_masked",
                                          "pre-flight scan refused", marks=pytest.mark.slow)])
def test_seed_failure_stops_train_and_keeps_the_earlier_adapter(tmp_path, fault, words):
    """Issue 4 done-when: the seed's failure exits non-zero at once and leaves the earlier adapter untouched."""
    out = tmp_path / "sft_model"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"earlier adapter")
    proc = run_cli("-m", "homework.sft", "train", "--output-dir", str(out), "--limit", "8", "--batch-size", "4",
                   "--max-steps", "3", env={"HOMEWORK_FAULT": fault})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert "step 2" not in proc.stderr and "step 3" not in proc.stderr
    assert (out / "adapter_model.safetensors").read_bytes() == b"earlier adapter"


def test_cli_help_lists_the_commands_and_options(capsys):
    """In-process (the `python -m homework.sft` entry itself is run by the other CLI tests here)."""
    from homework.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for option in ("--model", "--device", "--epochs", "--lr", "--rank", "--resume", "--answer-format",
                   "--group-by-length"):
        assert option in out
