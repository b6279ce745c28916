"""Crash windows: run a multi-step write in a forked child and SIGKILL it before its k-th filesystem step, for
every k, so a test can check what a reader then sees.

A "step" is one call that changes the filesystem: opening a file for writing, os.open with O_CREAT / O_WRONLY /
O_RDWR, rename/replace, unlink, mkdir/rmdir, rmtree. The child is forked from the test process (no interpreter
start-up per kill point, so every window of a write is cheap to visit) and does only file work before it dies.
"""

from __future__ import annotations

import builtins
import io
import os
import shutil
import signal
from collections.abc import Callable
from contextlib import contextmanager

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _is_write_mode(mode) -> bool:
    return any(c in str(mode) for c in "wax+")


def _arm(kill_at: int | None, counter: list[int]) -> None:
    """Wrap the filesystem-changing calls of this (child) process: count them, and die before step `kill_at`."""

    def step():
        counter[0] += 1
        if kill_at is not None and counter[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner, name, is_step=lambda *a, **k: True):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if is_step(*args, **kwargs):
                step()
            return real(*args, **kwargs)

        setattr(owner, name, wrapper)

    opening = lambda file, mode="r", *a, **k: _is_write_mode(mode)  # noqa: E731
    wrap(builtins, "open", opening)
    io.open = builtins.open  # pathlib opens through io.open
    wrap(os, "open", lambda path, flags, *a, **k: bool(flags & _WRITE_FLAGS))
    for name in ("replace", "rename", "unlink", "remove", "mkdir", "rmdir"):
        wrap(os, name)
    wrap(shutil, "rmtree")


def _in_child(write: Callable[[], None], kill_at: int | None) -> tuple[int, int]:
    """(steps taken, wait status) of `write` run in a forked child armed to die before step `kill_at`."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: arm, write, report the step count, leave without running any cleanup
        os.close(read_end)
        counter = [0]
        code = 0
        try:
            _arm(kill_at, counter)
            write()
        except BaseException:  # noqa: BLE001 - reported through the exit status
            code = 3
        os.write(write_end, str(counter[0]).encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        reported = pipe.read()
    _, status = os.waitpid(pid, 0)
    return (int(reported) if reported else -1), status


def count_steps(write: Callable[[], None]) -> int:
    steps, status = _in_child(write, None)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        raise AssertionError(f"the write failed without any kill (status {status})")
    return steps


def kill_before_step(write: Callable[[], None], k: int) -> None:
    """Run `write` in a child killed (SIGKILL) just before its k-th filesystem step."""
    _, status = _in_child(write, k)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        raise AssertionError(f"the child was not killed before step {k} (status {status})")


def every_crash_window(setup: Callable[[], None], write: Callable[[], None], check: Callable[[str], None]) -> int:
    """For each step k of `write`: fresh `setup()`, a child killed before step k, then `check(where)`; finally the
    uninterrupted write and `check` once more. Returns the number of steps visited."""
    setup()
    n = count_steps(write)
    assert n > 0, "the write changed nothing on disk"
    for k in range(1, n + 1):
        setup()
        kill_before_step(write, k)
        check(f"killed before step {k} of {n}")
    setup()
    count_steps(write)
    check("after the whole write")
    return n


# --------------------------------------------------------------------------- power loss
# A SIGKILL leaves the page cache to the kernel, which writes it out anyway; a power loss does not. What then
# survives is what was fsynced, and a rename may reach the disk before the bytes it points at. So a durable
# write syncs the staged bytes (and, for a directory, every entry under it) before the rename, and the parent
# directory after it. `record_disk_order` logs those calls in order; `assert_durably_renamed` judges them.


class DiskLog(list):
    """("fsync", path, size) and ("replace", source, destination, files under source) entries, in call order."""

    def fsyncs_before(self, index: int) -> dict[str, int]:
        return {e[1]: e[2] for e in self[:index] if e[0] == "fsync"}


@contextmanager
def record_disk_order(monkeypatch):
    """Log every os.fsync (the path its descriptor names, via /proc, and that file's size then) and every
    os.replace / os.rename (with what lay under the source) made inside the block."""
    if not os.path.isdir("/proc/self/fd"):
        import pytest

        pytest.skip("naming a descriptor's file needs /proc (Linux)")
    log = DiskLog()
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        fd = fd if isinstance(fd, int) else fd.fileno()
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))
        return real_fsync(fd)

    def renaming(real):
        def rename(src, dst, *args, **kwargs):
            src, dst = os.path.realpath(src), os.path.realpath(dst)
            log.append(("replace", src, dst, _contents(src)))
            return real(src, dst, *args, **kwargs)

        return rename

    with monkeypatch.context() as patched:  # undone when the block ends
        patched.setattr(os, "fsync", fsync)
        patched.setattr(os, "replace", renaming(real_replace))
        patched.setattr(os, "rename", renaming(real_rename))
        yield log


def _contents(path: str) -> dict[str, int | None]:
    """path -> size for a file; for a directory, itself and everything under it (directories with size None)."""
    if not os.path.isdir(path):
        return {path: os.path.getsize(path)} if os.path.exists(path) else {}
    found: dict[str, int | None] = {path: None}
    for dirpath, dirnames, filenames in os.walk(path):
        found.update({os.path.join(dirpath, d): None for d in dirnames})
        found.update({os.path.join(dirpath, f): os.path.getsize(os.path.join(dirpath, f)) for f in filenames})
    return found


def assert_durably_renamed(log: DiskLog, target) -> None:
    """The last rename onto `target` moved only synced things (each file synced at its final size, each
    directory synced), and `target`'s directory was synced after it."""
    target = os.path.realpath(target)
    renames = [i for i, e in enumerate(log) if e[0] == "replace" and e[2] == target]
    assert renames, f"nothing was renamed onto {target}: {log}"
    i = renames[-1]
    synced = log.fsyncs_before(i)
    for path, size in log[i][3].items():
        assert path in synced, f"{path} was renamed into place before it was fsynced (a power loss can lose it)"
        if size is not None:
            assert synced[path] == size, f"{path} was fsynced at {synced[path]} bytes, renamed at {size}"
    parent = os.path.dirname(target)
    assert any(e[0] == "fsync" and e[1] == parent for e in log[i + 1:]), \
        f"{parent} was not fsynced after the rename onto {target}: the rename itself may not survive a power loss"
