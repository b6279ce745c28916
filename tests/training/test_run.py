"""train_model end to end on a few rows: checkpoints, resume, metrics, plots, and the CLI's errors."""

import json
import math

import pytest
from transformers import TrainerCallback

from homework.sft import train_model
from homework.training.checkpoints import checkpoints_dir, last_complete_checkpoint
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
def test_resume_continues_its_own_run_to_the_uninterrupted_loss(tmp_path, capsys):
    """Run A finishes (checkpoints 2 and 4). Run B, the same recipe, is interrupted by Ctrl-C after step 1: it saves
    a checkpoint, says how to resume and leaves A's adapter alone. --resume continues B -- not A's newer checkpoint,
    not one copied in beside B's -- refuses a changed learning rate, applies --no-eval, and ends on A's loss. Once B
    is finished, a further --resume trains nothing and replaces nothing."""
    import shutil

    from homework.runtime.errors import HomeworkError
    from homework.training.checkpoints import previous_runs_dir

    out = tmp_path / "sft_model"
    full = train_model(out, **TINY)  # run A
    a_adapter = (out / "adapter_model.safetensors").read_bytes()
    b = {**TINY, "evaluate": True}
    with pytest.raises(KeyboardInterrupt):
        train_model(out, callbacks=[InterruptAt(1)], **b)
    assert "Resume with: python -m homework.sft train --resume" in capsys.readouterr().err
    assert (out / "adapter_model.safetensors").read_bytes() == a_adapter  # an interrupted run writes no adapter
    root = checkpoints_dir(out)
    assert last_complete_checkpoint(root).name == "checkpoint-1"
    assert sorted(p.name for p in previous_runs_dir(root).glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    shutil.copytree(previous_runs_dir(root) / "checkpoint-4", root / "checkpoint-9")  # another run's, complete
    with pytest.raises(HomeworkError, match=r"--lr 0.005 \(the run's: 0.001\)"):
        train_model(out, resume=True, **{**b, "learning_rate": 5e-3})
    resumed = train_model(out, resume=True, **{**b, "evaluate": False, "progress": True})
    assert [r.step for r in resumed.records] == [2, 3, 4]
    assert resumed.records[-1].loss == pytest.approx(full.records[-1].loss, abs=1e-5)
    assert "applied from this call: --eval False" in capsys.readouterr().out
    assert resumed.accuracy is None and not (out / "eval_results.json").exists()
    assert [s["step"] for s in json.loads((out / "metrics.json").read_text())["steps"]] == [2, 3, 4]
    assert (out / "training_curves.png").stat().st_size > 1000
    saved = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(HomeworkError, match="trained 0 optimizer steps; the run had already finished at step 4"):
        train_model(out, resume=True, **b)
    assert (out / "adapter_model.safetensors").read_bytes() == saved


@pytest.mark.timeout(600)
def test_seeded_runs_reproduce_their_loss_trajectory(tmp_path, monkeypatch):
    from homework.base_llm import BaseLLM
    from homework.data import Dataset
    from homework.runtime import allocator
    from homework.runtime.device import resolve_placement

    tuned = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: tuned.append(1))
    a = train_model(tmp_path / "a", **{**TINY, "max_steps": 3, "save_steps": 0})
    # run b also evaluates, through an answerer right on the validation file only: each figure is its own file's
    truth = dict(Dataset("valid").data[:3])
    monkeypatch.setattr(BaseLLM, "answer", lambda self, *qs: [truth.get(q, -1.0) for q in qs])
    b = train_model(tmp_path / "b", **{**TINY, "max_steps": 3, "save_steps": 0, "evaluate": True, "eval_limit": 3})
    assert (b.accuracy, b.heldout_accuracy) == (1.0, 0.0)
    evaluation = json.loads((tmp_path / "b" / "metrics.json").read_text())["evaluation"]
    assert (evaluation["valid"]["accuracy"], evaluation["heldout"]["accuracy"]) == (1.0, 0.0)
    assert [r.loss for r in a.records] == [r.loss for r in b.records]
    assert all(math.isfinite(r.grad_norm) for r in a.records)
    # CPU training keeps freed memory (homework/runtime/allocator.py); the CUDA caching allocator needs no help
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
