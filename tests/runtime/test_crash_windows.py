"""Every multi-step write of the project, killed (SIGKILL) before each of its filesystem steps: a reader -- or
`--resume` -- then sees a whole artifact, the old one or the new one, never a mix (tests/crash_harness.py).

Covered: a single file (metrics, results, configs, markers: atomic_write_bytes), a directory swap (the adapter
and the model cache: atomic_directory, read back through recover_directory as load() and the cache do), and a
checkpoint written again in place (SupervisedTrainer._save_checkpoint: marker cleared, files, marker).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from homework.runtime.atomic import atomic_directory, atomic_write_json, recover_directory
from homework.training.checkpoints import last_complete_checkpoint, mark_complete
from tests.crash_harness import count_steps, every_crash_window

OLD = {"adapter_config.json": "old config", "adapter_model.safetensors": "old weights", "metrics.json": "old"}
NEW = {"adapter_config.json": "new config", "adapter_model.safetensors": "new weights", "training_curves.png": "new"}


def snapshot(directory: Path) -> dict | None:
    if not directory.is_dir():
        return None
    return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file()}


def test_a_single_file_is_old_or_new_at_every_kill_point(tmp_path):
    target = tmp_path / "metrics.json"

    def setup():
        shutil.rmtree(tmp_path, ignore_errors=True)
        tmp_path.mkdir()
        target.write_text(json.dumps({"version": "old"}))

    def check(where):
        assert json.loads(target.read_text()) in ({"version": "old"}, {"version": "new"}), where

    assert every_crash_window(setup, lambda: atomic_write_json(target, {"version": "new"}), check) >= 2


def test_the_adapter_directory_swap_is_old_or_new_at_every_kill_point(tmp_path):
    root = tmp_path / "out"
    target = root / "sft_model"

    def setup():
        shutil.rmtree(root, ignore_errors=True)
        target.mkdir(parents=True)
        for name, text in OLD.items():
            (target / name).write_text(text)

    def write():
        with atomic_directory(target) as staging:
            for name, text in NEW.items():
                (staging / name).write_text(text)

    def check(where):
        recover_directory(target, drop_stale=False)  # what load() does before it reads
        assert snapshot(target) in (OLD, NEW), where
        recover_directory(target)  # and a later writer's clean-up leaves only the target
        assert [p.name for p in root.iterdir()] == ["sft_model"], where

    # staging dir, three files (open + fsync reopen each), two renames, the backup's removal
    assert every_crash_window(setup, write, check) >= 8


def test_a_swap_that_removes_the_old_directory_first_is_caught(tmp_path):
    """The harness itself: the crash window it exists for (delete, then rename in) must fail the check."""
    target = tmp_path / "sft_model"

    def setup():
        shutil.rmtree(tmp_path, ignore_errors=True)
        target.mkdir(parents=True)
        (target / "a").write_text("old")

    def careless_swap():
        staging = tmp_path / ".staging"
        staging.mkdir()
        (staging / "a").write_text("new")
        shutil.rmtree(target)
        staging.rename(target)

    seen = []

    def check(where):
        recover_directory(target, drop_stale=False)
        seen.append(snapshot(target))

    every_crash_window(setup, careless_swap, check)
    assert None in seen  # killed between the removal and the rename: no adapter at all


CKPT_FILES = ("model.safetensors", "optimizer.pt", "trainer_state.json")


def _checkpoint(root: Path, step: int, content: str, run_id: str) -> Path:
    ckpt = root / f"checkpoint-{step}"
    ckpt.mkdir(parents=True, exist_ok=True)
    for name in CKPT_FILES:
        (ckpt / name).write_text(json.dumps({"content": content}) if name == "trainer_state.json" else content)
    mark_complete(ckpt, run_id)
    return ckpt


def _resumable(root: Path, run_id: str):
    ckpt = last_complete_checkpoint(root, run_id)
    if ckpt is None:
        return None
    texts = {(ckpt / n).read_text() for n in CKPT_FILES if n != "trainer_state.json"}
    return ckpt.name, texts | {json.loads((ckpt / "trainer_state.json").read_text())["content"]}


def test_a_checkpoint_written_again_is_whole_or_not_resumed_from_at_every_kill_point(tmp_path, monkeypatch):
    """Ctrl-C right after a periodic save rewrites checkpoint-4 in place. Killed anywhere in that, a resume takes a
    whole checkpoint of this run -- checkpoint-4 old or new, or the earlier checkpoint-2 -- never a mixed one."""
    from transformers import Trainer

    from homework.training.trainer import SupervisedTrainer

    root = tmp_path / "sft_model-checkpoints"

    def trainer_save(self, model, trial, *args, **kwargs):  # the Trainer's save: file by file, in place
        for name in CKPT_FILES:
            path = root / "checkpoint-4" / name
            path.write_text(json.dumps({"content": "new"}) if name == "trainer_state.json" else "new")

    monkeypatch.setattr(Trainer, "_save_checkpoint", trainer_save)
    trainer = SupervisedTrainer.__new__(SupervisedTrainer)
    trainer.args = SimpleNamespace(output_dir=str(root), should_save=True)
    trainer.state = SimpleNamespace(global_step=4)
    trainer.accelerator = SimpleNamespace(wait_for_everyone=lambda: None)
    trainer.run_id = "run"

    def setup():
        shutil.rmtree(root, ignore_errors=True)
        _checkpoint(root, 2, "two", "run")
        _checkpoint(root, 4, "old", "run")

    def check(where):
        assert _resumable(root, "run") in (("checkpoint-4", {"old"}), ("checkpoint-4", {"new"}),
                                           ("checkpoint-2", {"two"})), where

    assert every_crash_window(setup, lambda: trainer._save_checkpoint(None, None), check) >= 5
    assert _resumable(root, "run") == ("checkpoint-4", {"new"})


def test_the_harness_counts_only_steps_that_change_the_disk(tmp_path):
    (tmp_path / "r").write_text("x")
    assert count_steps(lambda: (tmp_path / "r").read_text()) == 0 or pytest.fail("a read counted as a step")
    assert count_steps(lambda: (tmp_path / "w").write_text("y")) == 1
