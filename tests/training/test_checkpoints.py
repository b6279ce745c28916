"""Checkpoint layout, the completion marker, and which checkpoint a resume continues from."""

import pytest

from homework.training.checkpoints import (
    COMPLETE_MARKER,
    checkpoint_step,
    checkpoints_dir,
    last_complete_checkpoint,
    mark_complete,
)


def test_checkpoints_sit_beside_the_output_directory(tmp_path):
    assert checkpoints_dir(tmp_path / "sft_model") == tmp_path / "sft_model-checkpoints"


@pytest.mark.parametrize("name, step", [("checkpoint-100", 100), ("checkpoint-7", 7), ("checkpoint-", None),
                                        ("checkpoint-x1", None), ("ckpt-5", None), ("checkpoint-5-old", None)])
def test_checkpoint_step_reads_the_number(tmp_path, name, step):
    assert checkpoint_step(tmp_path / name) == step


def test_unreadable_trainer_state_is_not_resumed_from(tmp_path):
    for step, state in ((3, "{}"), (6, "{ half-written")):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text(state)
        (ckpt / COMPLETE_MARKER).write_text("ok")
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-3"
    assert last_complete_checkpoint(tmp_path / "nothing-here") is None


def test_only_checkpoints_marked_complete_are_resumed_from(tmp_path):
    for step, complete in ((3, True), (6, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{}")
        if complete:
            mark_complete(ckpt)
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-3"  # checkpoint-6 was cut off mid-save


@pytest.mark.parametrize("steps, newest", [((50, 100), "checkpoint-100"), ((9, 10, 2), "checkpoint-10"),
                                           ((100, 50), "checkpoint-100")])
def test_resume_picks_the_checkpoint_with_the_highest_step_not_the_last_name(tmp_path, steps, newest):
    """By name, checkpoint-50 sorts after checkpoint-100; resume must continue from step 100."""
    for step in steps:
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{}")
        (ckpt / COMPLETE_MARKER).write_text("ok")
    assert last_complete_checkpoint(tmp_path).name == newest


def test_the_marker_is_one_named_file_inside_the_checkpoint(tmp_path):
    """What the trainer writes after a checkpoint's files: exactly the marker a resume looks for, nothing else."""
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    mark_complete(ckpt)
    assert [p.name for p in ckpt.iterdir()] == [COMPLETE_MARKER] and (ckpt / COMPLETE_MARKER).read_bytes() == b"ok\n"


@pytest.mark.parametrize("broken", ["unmarked", "unreadable"])
def test_a_broken_checkpoint_before_a_whole_one_does_not_end_the_search(tmp_path, broken):
    for step in (1, 2):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{ half" if step == 1 and broken == "unreadable" else "{}")
        if step == 2 or broken == "unreadable":
            mark_complete(ckpt)
    (tmp_path / "checkpoint-notes").mkdir()  # not a checkpoint at all
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-2"


def test_a_checkpoint_written_again_loses_its_marker_until_its_files_are_whole(tmp_path, monkeypatch):
    """Ctrl-C right after a periodic save writes checkpoint-N again: while the Trainer rewrites its files, a resume
    must not take it for whole. The marker is removed before the write and written (with the run id) after."""
    from types import SimpleNamespace

    from transformers import Trainer

    from homework.training.checkpoints import marked_run
    from homework.training.trainer import SupervisedTrainer

    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    mark_complete(ckpt, "earlier")
    seen = []
    monkeypatch.setattr(Trainer, "_save_checkpoint", lambda self, model, trial, *a, **k: seen.append(
        (ckpt / COMPLETE_MARKER).exists()))
    trainer = SupervisedTrainer.__new__(SupervisedTrainer)
    trainer.args = SimpleNamespace(output_dir=str(tmp_path), should_save=True)
    trainer.state = SimpleNamespace(global_step=4)
    trainer.accelerator = SimpleNamespace(wait_for_everyone=lambda: None)
    trainer.run_id = "run-b"
    trainer._save_checkpoint(None, None)
    assert seen == [False]
    assert marked_run(ckpt) == "run-b"


def test_a_process_that_writes_no_files_leaves_the_marker_alone(tmp_path, monkeypatch):
    """Every process takes part in a save; only the one that writes files (should_save) clears and writes the
    marker. The Trainer's own save is given what the caller passed."""
    from types import SimpleNamespace

    from transformers import Trainer

    from homework.training.checkpoints import marked_run
    from homework.training.trainer import SupervisedTrainer

    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    mark_complete(ckpt, "earlier")
    seen, waited = [], []
    monkeypatch.setattr(Trainer, "_save_checkpoint", lambda self, model, trial, *a, **k: seen.append(
        (model, trial, a, k, (ckpt / COMPLETE_MARKER).exists())))
    trainer = SupervisedTrainer.__new__(SupervisedTrainer)
    trainer.args = SimpleNamespace(output_dir=str(tmp_path), should_save=False)
    trainer.state = SimpleNamespace(global_step=4)
    trainer.accelerator = SimpleNamespace(wait_for_everyone=lambda: waited.append(1))
    trainer.run_id = "run-b"
    trainer._save_checkpoint("model", "trial", "extra", key="value")
    assert seen == [("model", "trial", ("extra",), {"key": "value"}, True)] and waited == [1]
    assert marked_run(ckpt) == "earlier"
    trainer.state.global_step = 6  # a checkpoint the Trainer did not write: nothing to mark
    trainer.args.should_save = True
    trainer._save_checkpoint("model", None)
    assert not (tmp_path / "checkpoint-6").exists()


def test_resume_takes_only_the_checkpoints_of_the_named_run(tmp_path):
    for step, run in ((2, "a"), (8, "a"), (3, "b")):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{}")
        mark_complete(ckpt, run)
    assert last_complete_checkpoint(tmp_path, "b").name == "checkpoint-3"
    assert last_complete_checkpoint(tmp_path, "a").name == "checkpoint-8"
    assert last_complete_checkpoint(tmp_path, "c") is None


def test_a_fresh_run_moves_the_earlier_runs_checkpoints_aside(tmp_path):
    from homework.training.checkpoints import previous_runs_dir, retire_earlier_run

    root = tmp_path / "sft_model-checkpoints"
    assert retire_earlier_run(root) is None  # nothing there yet
    (root / "checkpoint-1").mkdir(parents=True)
    assert retire_earlier_run(root) == previous_runs_dir(root) and not root.exists()
    (root / "checkpoint-9").mkdir(parents=True)
    retire_earlier_run(root)  # one generation is kept: the newer earlier run replaces the older
    assert [p.name for p in previous_runs_dir(root).iterdir()] == ["checkpoint-9"]


def test_markers_without_a_run_id_and_rewrites_without_a_marker(tmp_path):
    """A marker written before run ids ("ok") names no run; a checkpoint that lost its marker (a kill mid-save)
    can be written again: clearing a missing marker is no error."""
    from homework.training.checkpoints import clear_mark, marked_run

    ckpt = tmp_path / "checkpoint-3"
    ckpt.mkdir()
    (ckpt / COMPLETE_MARKER).write_text("ok\n")
    assert marked_run(ckpt) is None
    clear_mark(ckpt)
    clear_mark(ckpt)  # already gone
    assert not (ckpt / COMPLETE_MARKER).exists() and marked_run(ckpt) is None


def test_run_ids_are_short_distinct_hex_names():
    from homework.training.checkpoints import new_run_id

    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 12 and int(i, 16) >= 0 for i in ids)


def test_the_marker_waits_for_every_processes_part_and_vouches_only_for_synced_files(tmp_path, monkeypatch):
    """Several processes save one checkpoint: rank 0 its weights and RNG state, rank 1 its own RNG state, which
    is on disk only once both reach the barrier (the stand-in below writes it there, as the slower process would).
    The marker must be written after the barrier -- never before it, never without it -- and, written last,
    only after every file of the checkpoint, rank 1's included, has been fsynced."""
    from types import SimpleNamespace

    from transformers import Trainer

    from homework.training.trainer import SupervisedTrainer
    from tests.crash_harness import assert_durably_renamed, record_disk_order

    ckpt = tmp_path / "checkpoint-4"
    events = []

    def rank0_save(self, model, trial, *args, **kwargs):
        ckpt.mkdir()
        (ckpt / "model.safetensors").write_text("weights")
        (ckpt / "rng_state_0.pth").write_text("rng of rank 0")
        events.append("rank 0 wrote its part")

    def barrier():
        events.append(f"barrier, marker present: {(ckpt / COMPLETE_MARKER).exists()}")
        (ckpt / "rng_state_1.pth").write_text("rng of rank 1")  # rank 1 finishes its part and arrives

    monkeypatch.setattr(Trainer, "_save_checkpoint", rank0_save)
    trainer = SupervisedTrainer.__new__(SupervisedTrainer)
    trainer.args = SimpleNamespace(output_dir=str(tmp_path), should_save=True)
    trainer.state = SimpleNamespace(global_step=4)
    trainer.accelerator = SimpleNamespace(wait_for_everyone=barrier)
    trainer.run_id = "run"
    with record_disk_order(monkeypatch) as log:
        trainer._save_checkpoint(None, None)
    assert events == ["rank 0 wrote its part", "barrier, marker present: False"]
    assert (ckpt / COMPLETE_MARKER).read_text() == "ok run\n"
    assert_durably_renamed(log, ckpt / COMPLETE_MARKER)
    marker_rename = next(i for i, e in enumerate(log) if e[0] == "replace" and e[2].endswith(COMPLETE_MARKER))
    synced = log.fsyncs_before(marker_rename)
    parts = {str(p.resolve()) for p in ckpt.iterdir() if p.name != COMPLETE_MARKER}
    assert len(parts) == 3 and parts <= set(synced), f"not synced before the marker: {parts - set(synced)}"
