"""Where checkpoints live, how a whole one is marked (and by which run), and which one a resume continues from.

Every run has an identity (a random run id, saved in the checkpoint directory's training configuration and in
each checkpoint's completion marker), so `--resume` continues its own run and never one that an earlier run
left behind; a fresh run moves an earlier run's checkpoints aside before it writes any of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from ..runtime.atomic import atomic_write_bytes, fsync_tree

COMPLETE_MARKER = "homework-checkpoint-complete"


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir.parent / f"{output_dir.name}-checkpoints"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def previous_runs_dir(ckpt_root: Path) -> Path:
    return ckpt_root.parent / f"{ckpt_root.name}.previous"


def retire_earlier_run(ckpt_root: Path) -> Path | None:
    """Move an earlier run's checkpoint directory aside (to `<dir>.previous`, replacing an older one there), so a
    fresh run's rotation never deletes it and its resume never picks it. Returns where it went, if anywhere."""
    if not ckpt_root.is_dir() or not any(ckpt_root.iterdir()):
        return None
    aside = previous_runs_dir(ckpt_root)
    if aside.exists():
        shutil.rmtree(aside)
    os.replace(ckpt_root, aside)
    return aside


def mark_complete(checkpoint: Path, run_id: str | None = None) -> None:
    """Written last and atomically: the Trainer saves a checkpoint file by file, so a kill mid-save
    leaves one without the marker, which a resume skips. The marker names the run that wrote it.
    The Trainer does not sync what it saves: the checkpoint's files are synced first, so a power loss cannot
    keep the marker and lose the files it vouches for."""
    fsync_tree(checkpoint)
    atomic_write_bytes(checkpoint / COMPLETE_MARKER, f"ok {run_id}\n".encode() if run_id else b"ok\n")


def clear_mark(checkpoint: Path) -> None:
    """Before a checkpoint directory is written again: until the new files are whole, it is not complete."""
    (checkpoint / COMPLETE_MARKER).unlink(missing_ok=True)


def marked_run(checkpoint: Path) -> str | None:
    """The run id in a checkpoint's marker (None for an unmarked checkpoint or one from before run ids)."""
    try:
        words = (checkpoint / COMPLETE_MARKER).read_text().split()
    except OSError:
        return None
    return words[1] if len(words) > 1 else None


def checkpoint_step(checkpoint: Path) -> int | None:
    """The optimizer step of a `checkpoint-<step>` directory, or None for any other name."""
    prefix, _, step = checkpoint.name.partition("-")
    return int(step) if prefix == "checkpoint" and step.isdigit() else None


def last_complete_checkpoint(directory: Path, run_id: str | None = None) -> Path | None:
    """The complete checkpoint with the highest step number (by number: checkpoint-100 after -50); with
    `run_id`, only among the checkpoints that run marked."""
    best = None
    for ckpt in sorted(Path(directory).glob("checkpoint-*")):  # a fixed order, whatever the filesystem's
        step = checkpoint_step(ckpt)
        if step is None or not (ckpt / COMPLETE_MARKER).is_file():
            continue
        if run_id is not None and marked_run(ckpt) != run_id:
            continue
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
        except (ValueError, OSError):
            continue
        if best is None or step > best[0]:
            best = (step, ckpt)
    return best[1] if best else None
