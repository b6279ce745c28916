"""The one place that decides device, dtype and the per-device-class defaults."""

import torch

from homework.runtime.device import Placement
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
