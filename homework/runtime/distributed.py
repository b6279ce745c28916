"""Which process this is, in a run launched by `torchrun` or `accelerate launch`, and agreeing across them.

The HF Trainer (through accelerate) starts the process group and averages the gradients; this module only
answers the questions the project's own pieces ask: am I the one process that writes and prints, how many
of us are there, and -- when one process finds a problem -- does every process stop at the same point.
A process that raised alone would leave the others waiting in the next all-reduce until the launcher
kills them, with the cause printed by whichever got there first.
"""

from __future__ import annotations

import os


def _group():
    try:
        import torch.distributed as dist
    except ImportError:  # a torch build without distributed support
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    dist = _group()
    if dist is not None:
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    dist = _group()
    if dist is not None:
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main() -> bool:
    """The process that writes files, prints results and evaluates (rank 0)."""
    return rank() == 0


def sum_across_ranks(values: list[float]) -> list[float]:
    """Element-wise sum over every process (the values themselves in a single process)."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return list(values)
    import torch

    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def agree_on_failure(local: BaseException | None) -> BaseException | None:
    """Every process passes its own problem (or None) and gets back the same one: the lowest-ranked
    process's, marked with that rank, or None when no process has one. A collective: every process
    must call it at the same point."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return local
    flag = sum_across_ranks([1.0 if local is not None else 0.0])[0]
    if flag == 0:  # the common case costs one scalar all-reduce
        return None
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    failing = next(r for r, exc in enumerate(gathered) if exc is not None)
    exc = gathered[failing]
    exc.rank = failing
    exc.agreed = True
    if exc.args and isinstance(exc.args[0], str) and not exc.args[0].startswith("on rank "):
        exc.args = (f"on rank {failing} of {dist.get_world_size()}: {exc.args[0]}", *exc.args[1:])
    return exc
