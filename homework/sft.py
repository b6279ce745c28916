"""Supervised fine-tuning with LoRA: the course interface.

The course imports these names from here; each is defined in the folder of its job: the answer formats and
tokenization in text/, the options in training/config.py, a training run in training/run.py, grading and
reloading in training/evaluation.py. `python -m homework.sft train | test | doctor` is the command line
(tools/cli.py).
"""

from __future__ import annotations

from .text.formats import answer_formatter, format_example
from .text.tokenization import TokenizedDataset, tokenize
from .training.config import DEFAULT_OUTPUT_DIR, RESULTS_FILE, TRAIN_CONFIG_FILE, TrainConfig
from .training.evaluation import load, test_model
from .training.run import TrainResult, train_model

__all__ = ["DEFAULT_OUTPUT_DIR", "RESULTS_FILE", "TRAIN_CONFIG_FILE", "TokenizedDataset", "TrainConfig", "TrainResult",
           "answer_formatter", "format_example", "load", "test_model", "tokenize", "train_model"]


if __name__ == "__main__":
    from .tools.cli import main

    raise SystemExit(main())
