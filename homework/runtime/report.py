"""The one way this package prints: progress and results to stdout, notices and errors to stderr, each from one
process only when several train together (torchrun / accelerate launch), and progress only when asked for.

Every line the package writes for a person goes through here, so a second process never repeats a line and a
quiet run stays quiet; a test pins that no other module calls print().
"""

from __future__ import annotations

import sys

PREFIX = "[homework] "


def _is_main() -> bool:
    from .distributed import is_main

    return is_main()


def info(message: str, *, show: bool = True) -> None:
    """A progress line (stdout, prefixed); `show=False` (a run without progress) drops it."""
    if show and _is_main():
        print(PREFIX + message, flush=True)


def result(message: str, stream=None) -> None:
    """A result a person or a script reads (stdout, or `stream`, as is: tables, figures, a resolved path)."""
    if _is_main():
        print(message, file=stream or sys.stdout, flush=True)


def notice(message: str) -> None:
    """Something the user should know that is not the result: a fetch, a rebuild, how to resume (stderr)."""
    if _is_main():
        print(PREFIX + message, file=sys.stderr, flush=True)


def error(message: str, *, agreed: bool = False) -> None:
    """A failure (stderr). An error every process agreed on is printed once, by the main process; one found by a
    single process is printed by that process, which may be the only one that knows it."""
    if _is_main() or not agreed:
        print(f"error: {message}", file=sys.stderr, flush=True)
