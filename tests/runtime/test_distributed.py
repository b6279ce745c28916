"""Which process this is, and agreeing across processes, with torch.distributed simulated in one process (the
real several-process runs are in tests/training/test_distributed.py, slow tier)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from homework.runtime import distributed


class Group:
    """An initialised process group as one of its processes sees it: `peers` holds what every rank passes, values
    to sum or a problem (or None) to agree on; this rank's own entry is replaced by what it passes."""

    def __init__(self, monkeypatch, rank, peers, backend="gloo"):
        self.rank, self.peers, self.reduced = rank, peers, []
        for name, value in [("is_available", lambda: True), ("is_initialized", lambda: True),
                            ("get_world_size", lambda: len(peers)), ("get_rank", lambda: rank),
                            ("get_backend", lambda: backend), ("all_reduce", self.all_reduce),
                            ("all_gather_object", self.all_gather_object)]:
            monkeypatch.setattr(dist, name, value)

    def all_reduce(self, t):
        self.reduced.append(t.clone())
        for r, values in enumerate(self.peers):
            if r != self.rank:  # another process's values, or its flag: 1 where it has a problem
                t += torch.tensor(values if isinstance(values, list) else [float(values is not None)], dtype=t.dtype)

    def all_gather_object(self, out, obj):
        assert len(out) == len(self.peers)
        out[:] = [obj if r == self.rank else p for r, p in enumerate(self.peers)]


def test_without_a_process_group_the_launchers_variables_decide(monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (distributed.world_size(), distributed.rank(), distributed.local_rank()) == (1, 0, 0)
    assert distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (distributed.world_size(), distributed.rank(), distributed.local_rank()) == (4, 3, 1)
    assert not distributed.is_main()
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # set but empty, as some launch scripts leave them
        monkeypatch.setenv(name, "")
    assert (distributed.world_size(), distributed.rank(), distributed.local_rank()) == (1, 0, 0)


def test_an_initialised_process_group_outranks_the_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    Group(monkeypatch, rank=1, peers=[None, None, None])
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (3, 1, False)


def test_one_process_sums_and_agrees_with_itself_alone(monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    problem = ValueError("mine")
    assert distributed.sum_across_ranks((1.5, 2.0)) == [1.5, 2.0]
    assert distributed.agree_on_failure(problem) is problem and problem.args == ("mine",)
    group = Group(monkeypatch, rank=0, peers=[None])  # a group of one: no collective is needed
    assert distributed.sum_across_ranks((1.5, 2.0)) == [1.5, 2.0]
    assert distributed.agree_on_failure(problem) is problem and group.reduced == []


def test_values_are_summed_element_wise_over_every_process_in_float64(monkeypatch):
    group = Group(monkeypatch, rank=1, peers=[[0.25, 1.0], None, [0.5, 2.0]])
    assert distributed.sum_across_ranks([0.1, 3.0]) == [0.1 + 0.25 + 0.5, 6.0]  # fp32 would round 0.1
    assert group.reduced[0].dtype == torch.float64 and group.reduced[0].device == torch.device("cpu")


def test_nccl_sums_on_this_processs_gpu(monkeypatch):
    """nccl reduces CUDA tensors only: the values go to the current device (simulated: the tensor is made on
    CPU, the device asked for is recorded)."""
    Group(monkeypatch, rank=0, peers=[None, [1.0]], backend="nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    asked = []
    real = torch.tensor

    def tensor(data, *, dtype=None, device=None):
        asked.append(device)
        return real(data, dtype=dtype)

    monkeypatch.setattr(torch, "tensor", tensor)
    assert distributed.sum_across_ranks([2.0]) == [3.0]
    assert asked[0] == torch.device("cuda", 1)


def test_no_problem_anywhere_costs_one_scalar_and_returns_none(monkeypatch):
    group = Group(monkeypatch, rank=0, peers=[None, None])
    group.all_gather_object = lambda out, obj: pytest.fail("nothing to gather when no process failed")
    monkeypatch.setattr(dist, "all_gather_object", group.all_gather_object)
    assert distributed.agree_on_failure(None) is None
    assert [t.tolist() for t in group.reduced] == [[0.0]]


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_every_process_gets_the_lowest_ranked_problem_marked_with_its_rank(monkeypatch, rank):
    """Ranks 1 and 2 found problems: all three processes return rank 1's, whatever they found themselves."""
    peers = [None, RuntimeError("loss is NaN", 7), RuntimeError("grad is inf")]
    group = Group(monkeypatch, rank=rank, peers=peers)
    agreed = distributed.agree_on_failure(peers[rank])
    assert group.reduced[0].tolist() == [0.0 if rank == 0 else 1.0]  # each process flags whether it failed
    assert isinstance(agreed, RuntimeError) and agreed.rank == 1 and agreed.agreed is True
    assert agreed.args == ("on rank 1 of 3: loss is NaN", 7)


def test_a_problem_already_named_by_rank_or_without_a_message_is_not_renamed(monkeypatch):
    peers = [RuntimeError("on rank 0 of 2: loss is NaN"), None, None]
    Group(monkeypatch, rank=2, peers=peers)
    assert distributed.agree_on_failure(None).args == ("on rank 0 of 2: loss is NaN",)
    peers[:] = [None, KeyError(3), None]
    assert distributed.agree_on_failure(None).args == (3,)
    peers[:] = [None, RuntimeError(), None]
    assert distributed.agree_on_failure(None).args == ()
