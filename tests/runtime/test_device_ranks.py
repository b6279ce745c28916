"""A process of a multi-process run on a machine with fewer GPUs than processes: a clear refusal when it asks
for CUDA, and CPU with gloo when it asks for CPU. CUDA is simulated (torch.cuda patched), so this runs here."""

import pytest
import torch

from homework.runtime.device import resolve_placement
from homework.runtime.errors import HomeworkError


@pytest.fixture
def one_gpu(monkeypatch):
    """torch as it answers on a one-GPU machine (no CUDA call is made: only devices are named)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_rank_beyond_the_visible_gpus_is_refused_naming_both_numbers(one_gpu, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(HomeworkError, match=r"LOCAL_RANK=1 but only 1 CUDA device is visible") as info:
        resolve_placement("cuda")
    assert "--device cpu" in str(info.value)  # the message names the way out
    with pytest.raises(HomeworkError, match=r"LOCAL_RANK=1 but only 1 CUDA device is visible"):
        resolve_placement(None)  # auto picks CUDA here, then the same check


def test_rank_within_the_visible_gpus_takes_its_own(one_gpu, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    placement = resolve_placement("cuda")
    assert placement.device == torch.device("cuda", 0) and placement.dtype == torch.bfloat16


def test_an_explicit_ordinal_beyond_the_visible_gpus_is_refused(one_gpu):
    with pytest.raises(HomeworkError, match=r"'cuda:1' was requested but only 1 CUDA device is visible"):
        resolve_placement("cuda:1")
    assert resolve_placement("cuda:0").device == torch.device("cuda", 0)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_cpu_requested_on_a_gpu_machine_stays_on_cpu_for_every_rank(one_gpu, monkeypatch, how):
    """What the ddp tests rely on: `--device cpu` / HOMEWORK_DEVICE=cpu wins over CUDA for rank 1 too."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    if how == "environment":
        monkeypatch.setenv("HOMEWORK_DEVICE", "cpu")
    placement = resolve_placement("cpu" if how == "argument" else None)
    assert placement.device == torch.device("cpu") and placement.dtype == torch.float32


def test_cpu_processes_get_gloo_even_where_cuda_is_present(one_gpu, monkeypatch):
    """TrainingArguments(use_cpu=True), which a CPU placement sets, makes accelerate start gloo, not nccl."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    prepare = getattr(PartialState, "_prepare_backend", None)
    if prepare is None:
        pytest.skip("this accelerate has no PartialState._prepare_backend")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "is_mpi_available", lambda: False)
    assert prepare(None, cpu=True) == ("gloo", DistributedType.MULTI_CPU)
    assert prepare(None, cpu=False)[0] == "nccl"  # the default that failed on the one-GPU runner


@pytest.mark.parametrize("processes,launcher", [(1, "torchrun"), (2, "torchrun"), (2, "accelerate")])
def test_the_ddp_launches_name_cpu_explicitly(tmp_path, processes, launcher):
    from tests.training.test_distributed import launch_plan

    cmd, env = launch_plan(tmp_path, processes, ("--limit", "4"), launcher=launcher)
    train = cmd.index("train")
    assert cmd[train:train + 3] == ["train", "--device", "cpu"] and cmd[-2:] == ["--limit", "4"]
    assert env["HOMEWORK_DEVICE"] == "cpu"
