"""The SFT contract kit: what any supervised fine-tuning setup must satisfy, checked on that setup's own
tokenizer, prompt builder, collator, model and trainer, with a pytest plugin that runs it as a battery.

Why a top-level package, beside `homework` in the same distribution: pytest imports every `pytest11`
entry point into every run of every project where the distribution is installed. hypothesis keeps its
plugin in a module of its own outside the `hypothesis` package for the same reason; here loading the
plugin (sft_contract.plugin) imports nothing of the course package and no torch. torch, transformers
and peft load only when a check runs. The kit imports nothing from `homework`; homework imports the kit
(its failure catalog, row checks and step checks).

    sft_contract.contract   SFTContract, ContractViolation, the check_* functions
    sft_contract.checks     the battery by name; parametrize_with_checks for a project's own test file
    sft_contract.rows       the row checks (homework's pre-flight scan runs them too)
    sft_contract.steps      StepRecord and step_problem, the one definition of a healthy optimizer step
    sft_contract.recorder   StepRecorder, the TrainerCallback that records steps (imports transformers)
    sft_contract.catalog    the failure catalog: python -m sft_contract.catalog [ROW]
    sft_contract.plugin     the pytest plugin (entry point `sft_contract`); battery.py is its test module
    sft_contract.course     the course homework check's names, and `--sft-homework=PATH` (course_battery.py)
"""

import importlib

# Loaded on first use (PEP 562), so `python -m sft_contract.catalog` finds its module not yet imported.
_PUBLIC = {"CHECKS": "checks", "Check": "checks", "parametrize_with_checks": "checks",
           "ContractViolation": "contract", "SFTContract": "contract", "Tolerance": "contract"}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
