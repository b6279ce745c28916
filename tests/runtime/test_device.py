"""The one place that decides device, dtype and the per-device-class defaults."""

import pytest
import torch

from homework.runtime.device import Placement, check_precision, resolve_placement
from homework.runtime.errors import HomeworkError
from homework.tools.cli import build_parser, given_options
from homework.training.config import TrainConfig


def test_length_grouping_default_follows_the_device_class():
    """Measured: grouping gained 1.22x on 2 CPU cores and lost (0.71x) on an H100, so it is on for CPU only."""
    assert Placement(torch.device("cpu"), torch.float32).groups_by_length is True
    assert Placement(torch.device("cuda"), torch.bfloat16).groups_by_length is False
    assert TrainConfig().group_by_length is None  # unset: the placement decides


def test_cli_can_force_grouping_either_way():
    parse = build_parser().parse_args
    assert "group_by_length" not in given_options(parse(["train"]))  # unset: the placement decides
    assert parse(["train", "--group-by-length"]).group_by_length is True
    assert parse(["train", "--no-group-by-length"]).group_by_length is False


def test_a_placement_describes_itself_as_device_and_dtype():
    assert Placement(torch.device("cpu"), torch.float32).describe() == "cpu/float32"
    assert Placement(torch.device("cuda", 1), torch.bfloat16).describe() == "cuda/bfloat16"


@pytest.fixture
def gpus(monkeypatch):
    """torch as it answers on a machine with `count` GPUs (simulated: only devices are named); the precision
    unpinned, as a user runs it."""
    monkeypatch.delenv("HOMEWORK_PRECISION", raising=False)

    def simulate(count, bf16=True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    return simulate


def test_auto_picks_cuda_in_bf16_where_the_card_has_it_else_fp32(gpus):
    gpus(1)
    assert resolve_placement() == Placement(torch.device("cuda"), torch.bfloat16)
    gpus(1, bf16=False)  # fp16 would overflow bf16-trained weights: fp32 instead
    assert resolve_placement("CUDA") == Placement(torch.device("cuda"), torch.float32)


def test_outside_a_launcher_plain_cuda_names_no_ordinal(gpus):
    gpus(2)
    assert resolve_placement("cuda").device == torch.device("cuda")


def test_an_explicit_ordinal_wins_over_the_launchers_local_rank(gpus, monkeypatch):
    gpus(2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_placement("cuda:0").device == torch.device("cuda", 0)
    assert resolve_placement("cuda").device == torch.device("cuda", 1)


def test_refusals_name_the_visible_gpu_count_in_words(gpus, monkeypatch):
    gpus(2)
    with pytest.raises(HomeworkError, match=r"'cuda:2' was requested but only 2 CUDA devices are visible"):
        resolve_placement("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(HomeworkError, match=r"LOCAL_RANK=3 but only 2 CUDA devices are visible: launch at most 2 "
                                            r"process\(es\) per machine, or train on CPU with --device cpu \(gloo\)"):
        resolve_placement("cuda")


def test_an_unknown_device_is_refused_naming_the_choices():
    with pytest.raises(HomeworkError, match=r"unknown device 'tpu': use auto, cpu or cuda\[:N\]"):
        resolve_placement("tpu")


def test_a_precision_refusal_says_what_to_use_instead():
    with pytest.raises(HomeworkError, match="turns NaN .*Use bf16 where the card supports it, else fp32.$"):
        check_precision(torch.device("cpu"), torch.float16)
    with pytest.raises(HomeworkError, match="turns NaN .*Use bf16 where the card supports it, else fp32.$"):
        check_precision(torch.device("cuda"), torch.float16)


@pytest.mark.parametrize("bf16, asked, expected", [(True, None, torch.bfloat16), (True, "fp32", torch.float32),
                                                   (False, None, torch.float32), (True, "bf16", torch.bfloat16)])
def test_cuda_takes_bf16_where_the_card_has_it_unless_fp32_is_asked_for(gpus, bf16, asked, expected):
    gpus(1, bf16=bf16)
    placement = resolve_placement("cuda", asked)
    assert placement.dtype == expected and placement.reason


def test_bf16_asked_for_on_a_card_without_it_is_refused(gpus):
    gpus(1, bf16=False)
    with pytest.raises(HomeworkError, match="but cuda does not support it; use --precision fp32"):
        resolve_placement("cuda", "bf16")
    with pytest.raises(HomeworkError, match="fp16"):
        resolve_placement("cuda", "fp16")
