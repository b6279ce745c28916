"""Length-grouped sampling: every epoch is a permutation of the rows, in a new order each epoch."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homework.training.sampling import LengthGroupedSampler

lengths = st.lists(st.integers(1, 60), min_size=1, max_size=300)


@given(st.one_of(lengths, st.lists(st.integers(1, 60), min_size=200, max_size=400)), st.integers(1, 12),
       st.integers(0, 2**16), st.integers(0, 5))
def test_each_epoch_is_a_permutation_of_the_rows(lens, batch, seed, epoch):
    """No row drawn twice and none dropped (a sampler drawing with replacement fails this), over one sort
    window or several (batch x 16 rows each)."""
    sampler = LengthGroupedSampler(lens, batch, seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    assert sorted(order) == list(range(len(lens))) and len(sampler) == len(lens)


@given(st.lists(st.integers(1, 60), min_size=256, max_size=400), st.integers(1, 8), st.integers(0, 2**16))
def test_the_order_changes_between_epochs_and_repeats_for_a_seed(lens, batch, seed):
    """Over at least two sort windows (batch x 16 rows each), as in any real dataset. (Within a single
    window only tie order and batch order vary, and Hypothesis found 16 rows whose two epochs coincide.)"""
    sampler = LengthGroupedSampler(lens, batch, seed=seed)
    assert sampler.window == 16 * batch  # rows are sorted by length within windows of 16 batches
    assert len(lens) >= 2 * sampler.window
    epochs = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert epochs[0] != epochs[1]  # which rows share a window is redrawn: equal only if the epoch were ignored
    assert epochs[0] == epochs[2]  # seeded: the same epoch, the same order (resume relies on it)
    assert sorted(epochs[1]) == list(range(len(lens)))  # several windows: still every row once
    assert list(LengthGroupedSampler(lens, batch, seed=seed)) == epochs[0]  # before any set_epoch: epoch 0


def test_batches_group_similar_lengths():
    """What the grouping is for: far less padding than random batches of the same rows."""
    lens = [(i * 37) % 50 + 1 for i in range(512)]
    order = list(LengthGroupedSampler(lens, 16, seed=0))
    batches = [order[k:k + 16] for k in range(0, len(order), 16)]
    waste = sum(max(lens[i] for i in b) * len(b) - sum(lens[i] for i in b) for b in batches)
    assert waste < 0.2 * sum(lens)


@given(st.lists(st.integers(1, 60), min_size=1, max_size=300), st.integers(1, 8), st.integers(2, 4),
       st.integers(0, 2**16), st.integers(0, 3))
def test_processes_split_the_global_batches_of_one_process(lens, batch, processes, seed, epoch):
    """N processes x batch B see, step by step, the rows one process sees with batch N*B; every process has
    the same number of batches (or the others would wait for it), each of at most B rows; and an epoch
    covers every row once across processes, except that when fewer rows than processes are left over
    for the last step, the first rows fill in (at most N-1 repeats)."""
    single = LengthGroupedSampler(lens, batch * processes, seed=seed)
    single.set_epoch(epoch)
    steps_of_one = [b for b in single.global_batches()]
    shards = []
    for rank in range(processes):
        sampler = LengthGroupedSampler(lens, batch, seed=seed, num_replicas=processes, rank=rank)
        sampler.set_epoch(epoch)
        stream = list(sampler)
        assert len(stream) == len(sampler)
        # what the DataLoader's BatchSampler does with this process's stream
        shards.append([stream[k:k + batch] for k in range(0, len(stream), batch)])
    assert len({len(s) for s in shards}) == 1  # the same number of steps on every process
    together = [sum((shards[r][k] for r in range(processes)), []) for k in range(len(shards[0]))]
    leftover = len(lens) % (batch * processes)
    if leftover == 0 or leftover >= processes:
        assert together == steps_of_one
        assert sorted(sum(together, [])) == list(range(len(lens)))
    else:
        assert together[:-1] == steps_of_one[:-1] and together[-1][:leftover] == steps_of_one[-1]
        seen = sum(together, [])
        assert set(seen) == set(range(len(lens))) and len(seen) == len(lens) + processes - leftover


def test_a_rank_outside_the_process_count_is_refused():
    with pytest.raises(ValueError, match="rank 2 is not in"):
        LengthGroupedSampler([3, 4], 1, num_replicas=2, rank=2)
