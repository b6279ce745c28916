"""A process of a multi-process run on a machine with fewer GPUs than processes: a clear refusal when it asks
for CUDA, and CPU with gloo when it asks for CPU. CUDA is simulated (torch.cuda patched), so this runs here."""

import os

import pytest
import torch

from homework.runtime.device import resolve_placement
from homework.runtime.errors import HomeworkError


@pytest.fixture
def one_gpu(monkeypatch):
    """torch as it answers on a one-GPU machine (no CUDA call is made: only devices are named)."""
    monkeypatch.delenv("HOMEWORK_PRECISION", raising=False)
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
    placement = resolve_placement("cpu" if how == "argument" else None, "fp32")
    assert placement.device == torch.device("cpu") and placement.dtype == torch.float32


# A process of a launched run, on a machine where torch reports one GPU (simulated through torch's public
# device queries, in a process of its own: the process group can be started once per process).
_LAUNCHED_PROCESS = """
import sys, torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
if hasattr(torch, "accelerator"):  # newer accelerate asks torch.accelerator which device class is present
    torch.accelerator.is_available = lambda: True
    torch.accelerator.device_count = lambda: 1
    torch.accelerator.current_accelerator = lambda *a, **k: torch.device("cuda")
from homework.runtime.device import Placement
from homework.training.config import TrainConfig
from homework.training.recipe import training_arguments

def backend(kind):
    try:
        args = training_arguments(TrainConfig(), sys.argv[1], Placement(torch.device(kind), torch.float32))
        args.device  # the Trainer's first use of the arguments starts the process group
    except RuntimeError as exc:  # a CPU build of torch has no NCCL to start
        return "nccl (unavailable)" if "NCCL" in str(exc) else f"error: {exc}"
    return torch.distributed.get_backend()

# The control first, where it cannot start anything: it shows the simulated GPU is seen, so the CPU case can fail.
if not torch.distributed.is_nccl_available():
    print("cuda:", backend("cuda"))
print("cpu:", backend("cpu"))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cpu_processes_get_gloo_even_where_cuda_is_present(tmp_path):
    """A CPU placement under a launcher starts gloo, even on a machine with a GPU (where the default is NCCL,
    which failed on the one-GPU runner). Checked through the training arguments the project builds and the
    process group that the Trainer's set-up actually starts, not through a launcher library's private code."""
    import subprocess
    import sys

    env = {**os.environ, "LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    env.pop("HOMEWORK_DEVICE", None)
    done = subprocess.run([sys.executable, "-c", _LAUNCHED_PROCESS, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert done.returncode == 0 and "cpu" in lines, done.stderr[-2000:]
    assert lines["cpu"] == "gloo", done.stdout
    if "cuda" in lines:
        assert lines["cuda"].startswith("nccl"), f"the simulated GPU was not seen, so the check proves nothing: {lines}"


@pytest.mark.parametrize("processes,launcher", [(1, "torchrun"), (2, "torchrun"), (2, "accelerate")])
def test_the_ddp_launches_name_cpu_explicitly(tmp_path, processes, launcher):
    from tests.training.test_distributed import launch_plan

    cmd, env = launch_plan(tmp_path, processes, ("--limit", "4"), launcher=launcher)
    train = cmd.index("train")
    assert cmd[train:train + 3] == ["train", "--device", "cpu"] and cmd[-2:] == ["--limit", "4"]
    assert env["HOMEWORK_DEVICE"] == "cpu"
