"""Atomic writes: readers see the old file/directory or the new one, never a half-written one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """Every file's bytes and every directory's entries under `root` (itself included), deepest first: a
    staged directory renamed into place before its files and entries reach the disk can come back from a
    power loss renamed but empty."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


def _atomic_file(path: Path, write) -> None:
    """Stage `write(fh)` in a hidden sibling, fsync it, rename it over `path`, then fsync the directory.

    The order is what makes it survive a power loss, not only a kill: a rename can reach the disk before
    the data it points at, so the staged bytes are synced first; the directory is synced after, so the
    rename itself is durable once this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic_file(Path(path), lambda fh: fh.write(data))


def atomic_copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy `source` to `path` atomically and durably, streaming (for files too large to hold in memory)."""

    def copy(fh):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)

    _atomic_file(Path(path), copy)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh sibling directory; on success it replaces `target` in (nearly) one rename.

    The old directory is first renamed aside, then the new one renamed in, then the old one removed,
    so at every instant `target` is either absent for a moment or complete -- never partial. A crash
    between the two renames leaves `<target>.old-*` beside it, which `recover_directory` restores.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        backup = None
        if target.exists():
            backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, backup)
        os.replace(staging, target)
        _fsync_dir(target.parent)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def recover_directory(target: str | os.PathLike, drop_stale: bool = True) -> None:
    """Undo a crash between atomic_directory's two renames; with drop_stale, also remove leftover backups and
    staging dirs (a reader that may run beside a writer passes False: a staging dir may be in use)."""
    target = Path(target)
    if not target.parent.exists():
        return
    backups = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and backups:
        os.replace(backups[-1], target)
        _fsync_dir(target.parent)
        backups = backups[:-1]
    if not drop_stale:
        return
    for stale in backups + list(target.parent.glob(f".{target.name}.staging-*")):
        shutil.rmtree(stale, ignore_errors=True)
