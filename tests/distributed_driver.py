"""`python -m homework.sft ...` for one process of a torchrun launch, logging every file this project writes.

tests/training/test_distributed.py launches `torchrun ... tests/distributed_driver.py train ...`. Each process
appends the paths it writes through homework.runtime.atomic (adapter directory, metrics, curves, eval results,
checkpoint markers, the run's saved configuration) to $HW_WRITES_DIR/rank<N>.jsonl, so a test can
check that exactly one process writes.
"""

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import homework.runtime.atomic as atomic  # patched before any module binds its functions

LOG = Path(os.environ["HW_WRITES_DIR"]) / f"rank{os.environ.get('RANK', '0')}.jsonl"
_write_bytes, _directory = atomic.atomic_write_bytes, atomic.atomic_directory


def _log(kind: str, path) -> None:
    with open(LOG, "a") as fh:
        fh.write(json.dumps([kind, str(Path(path).resolve())]) + "\n")


def logged_write_bytes(path, data):
    _log("file", path)
    return _write_bytes(path, data)


@contextmanager
def logged_directory(target):
    _log("directory", target)
    with _directory(target) as staging:
        yield staging


atomic.atomic_write_bytes, atomic.atomic_directory = logged_write_bytes, logged_directory

if __name__ == "__main__":
    from homework.tools.cli import main

    raise SystemExit(main(sys.argv[1:]))
