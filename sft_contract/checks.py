"""The battery: the contract's checks by name, the one list that both ways in run.

Through the plugin (`pytest --sft-contract=module:factory`, the ini key `sft_contract` or the
`pytest_sft_contract` hook), the battery module sft_contract/battery.py runs every check. In a project's
own test file, in the spirit of scikit-learn's `parametrize_with_checks`:

    import sft_contract

    @sft_contract.parametrize_with_checks(myproject.contract)
    def test_sft_contract(contract, check):
        check(contract)

gives one test per check; the factory runs once, at the first check. Each check is a `Check`: call it
with an SFTContract (or the handle the decorator passes) to run it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from . import contract as sft

DEFAULT_EXAMPLES = 20  # Hypothesis examples per property


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable  # (contract, examples) -> None; raises ContractViolation

    def __call__(self, contract, *, examples: int | None = None) -> None:
        if isinstance(contract, ContractSource):
            examples = examples or contract.examples
            contract = contract.get()
        self.run(contract, examples or DEFAULT_EXAMPLES)

    def __repr__(self) -> str:
        return self.name


class ContractSource:
    """A factory's contract, built at the first check that needs it and kept (one model load per session)."""

    def __init__(self, factory: Callable[[], sft.SFTContract], *, steps: int | None = None,
                 examples: int = DEFAULT_EXAMPLES):
        self.factory, self.steps, self.examples = factory, steps, examples
        self._contract: sft.SFTContract | None = None

    def get(self) -> sft.SFTContract:
        if self._contract is None:
            built = self.factory()
            self._contract = replace(built, steps=self.steps) if self.steps else built
        return self._contract

    def __repr__(self) -> str:
        name = getattr(self.factory, "__qualname__", None)
        return f"{self.factory.__module__}.{name}" if name else repr(self.factory)


CHECKS: list[Check] = []


def _check(fn):
    CHECKS.append(Check(fn.__name__, fn))
    return fn


def _examples(contract) -> list[tuple[str, str]]:
    if not contract.examples:
        raise sft.ContractViolation("the contract has no examples", 2)
    return list(contract.examples)


def hypothesis_settings(examples: int):
    from hypothesis import HealthCheck, Phase, settings

    # no shrinking: the violation already names the cause, and shrinking a failure costs seconds
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate))


def _with_new_numbers(text: str, numbers: list[int]) -> str:
    """`text` with its integers replaced (the same format, other digits for the tokenizer to split)."""
    it = iter(numbers)
    return re.sub(r"\d+", lambda m: str(next(it, m.group(0))), text)


def _for_examples_with_other_numbers(contract, examples: int, check) -> None:
    """check(question, answer) over the examples with their integers redrawn (Hypothesis)."""
    from hypothesis import given
    from hypothesis import strategies as st

    @hypothesis_settings(examples)
    @given(st.sampled_from(_examples(contract)), st.lists(st.integers(0, 10**6), max_size=6))
    def prop(example, numbers):
        check(*(_with_new_numbers(text, numbers) for text in example))

    prop()


@_check
def every_example_supervises_its_answer_and_eos(contract, examples):
    for question, answer in _examples(contract):
        sft.check_row(contract, question, answer)


@_check
def masking_holds_for_other_numbers(contract, examples):
    _for_examples_with_other_numbers(contract, examples, lambda q, a: sft.check_row(contract, q, a))


@_check
def collation_keeps_every_rows_labels_and_eos(contract, examples):
    from hypothesis import given
    from hypothesis import strategies as st

    rows = [contract.tokenize(q, a) for q, a in _examples(contract)]

    @hypothesis_settings(examples)
    @given(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=8))
    def prop(picks):
        sft.check_batch(contract, [rows[i] for i in picks])

    prop()


_untrained: dict[int, object] = {}  # an untrained model, from the first check that needs one to the next


def _untrained_model(contract, keep: bool):
    model = _untrained.pop(id(contract), None) or contract.make_model()
    if keep:
        _untrained[id(contract)] = model
    return model


@_check
def rows_in_a_batch_train_as_if_alone(contract, examples):
    by_question = dict(_examples(contract))
    rows = [contract.tokenize(q, by_question[q]) for q in sft.varied_lengths(contract, 2)]  # 3 forward passes
    sft.check_rows_stay_apart(contract, _untrained_model(contract, keep=True), rows)


@_check
def inference_prompt_is_the_training_prompt(contract, examples):
    _for_examples_with_other_numbers(contract, examples, lambda q, a: sft.check_prompt_identity(contract, q, a))


@_check
def batched_generation_equals_one_by_one(contract, examples):
    sft.check_batched_generation(contract, _untrained_model(contract, keep=False), sft.varied_lengths(contract, 4))


_trained: dict[int, object] = {}  # the model the first-steps check trained, for the save/reload check


@_check
def first_optimizer_steps_are_healthy(contract, examples):
    _, _trained[id(contract)] = sft.check_first_steps(contract)


@_check
def save_and_reload_gives_the_trained_logits(contract, examples):
    trained = _trained.pop(id(contract), None)  # None if that check failed or did not run: train afresh
    sft.check_save_and_reload(contract, _examples(contract)[0][0], trained)


def release() -> None:
    """Drop the models kept between checks (the plugin calls this at the end of a session)."""
    _untrained.clear()
    _trained.clear()


def parametrize_with_checks(factory: Callable[[], sft.SFTContract], *, steps: int | None = None,
                            examples: int = DEFAULT_EXAMPLES, checks: Sequence[str] | None = None):
    """A `pytest.mark.parametrize` over ("contract", "check"): one test per check of the battery (or of the
    names in `checks`) on the contract `factory` returns. Using it opts the run in to the plugin's report."""
    import pytest

    chosen = CHECKS if checks is None else [c for c in CHECKS if c.name in checks]
    unknown = set(checks or ()) - {c.name for c in CHECKS}
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {[c.name for c in CHECKS]}")
    source = ContractSource(factory, steps=steps, examples=examples)
    return pytest.mark.parametrize("contract, check", [pytest.param(source, c, id=c.name) for c in chosen])
