"""Where checkpoints live, how a whole one is marked, and which one a resume continues from."""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write_bytes

COMPLETE_MARKER = "homework-checkpoint-complete"


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir.parent / f"{output_dir.name}-checkpoints"


def mark_complete(checkpoint: Path) -> None:
    """Written last and atomically: the Trainer saves a checkpoint file by file, so a kill mid-save
    leaves one without the marker, which a resume skips."""
    atomic_write_bytes(checkpoint / COMPLETE_MARKER, b"ok\n")


def checkpoint_step(checkpoint: Path) -> int | None:
    """The optimizer step of a `checkpoint-<step>` directory, or None for any other name."""
    prefix, _, step = checkpoint.name.partition("-")
    return int(step) if prefix == "checkpoint" and step.isdigit() else None


def last_complete_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint with the highest step number (by number: checkpoint-100 after -50)."""
    best = None
    for ckpt in sorted(Path(directory).glob("checkpoint-*")):  # a fixed order, whatever the filesystem's
        step = checkpoint_step(ckpt)
        if step is None or not (ckpt / COMPLETE_MARKER).is_file():
            continue
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
        except (ValueError, OSError):
            continue
        if best is None or step > best[0]:
            best = (step, ckpt)
    return best[1] if best else None
