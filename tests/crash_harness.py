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
