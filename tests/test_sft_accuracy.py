"""The slow tier: full default training and evaluation, on whatever device the session resolves.

On a GPU runner this uses CUDA (bf16); select the course's 360M model with
`pytest -m slow --hw-model HuggingFaceTB/SmolLM2-360M-Instruct` (or a local directory).
"""

import json
import statistics

import pytest
import torch

from homework.sft import TRAIN_CONFIG_FILE, load, train_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# Thresholds set from measured runs with a margin (docs/results.md). The default measured on 2 CPU cores, lower
# of seeds 0 and 1: 0.990 in-family, 0.973 on held-out spellings and phrasings, 0.963 on held-out sentence
# structures (300 each) and 0.973 on the 226 hand-written questions. One standard error there is about 0.01;
# each bound sits 3-4 of them below, and still far above the regressions measured on the way (1,600 rows: 0.873
# on structures at seed 1; no prompt lead: 0.823 held out; the expression format: 0.463).
MIN_ACCURACY = 0.96
MIN_HELDOUT_ACCURACY = 0.93
MIN_STRUCTURES_ACCURACY = 0.93
MIN_HANDWRITTEN_ACCURACY = 0.93
MIN_ANSWER_RATE = 0.95


@pytest.fixture(scope="module")
def trained(tmp_path_factory, hw_settings):
    out = tmp_path_factory.mktemp("slow") / "sft_model"
    model = None if hw_settings["model"] == "embedded" else hw_settings["model"]
    device = None if hw_settings["device"] == "auto" else hw_settings["device"]
    # the precision a user's run takes on this machine (bf16 mixed precision on a CPU with native bf16 that
    # measures it faster, else fp32), not the fp32 the other tiers pin
    result = train_model(out, model=model, device=device, precision="auto")
    return out, result


def test_full_training_reaches_the_accuracy_threshold(trained):
    out, result = trained
    print(f"\nfull training: {result.train_seconds:.0f} s, accuracy {result.accuracy:.3f} (held-out family "
          f"{result.heldout_accuracy:.3f}), answer rate {result.answer_rate:.3f} (held-out "
          f"{result.heldout_answer_rate:.3f}), eval {result.eval_seconds:.1f} s")
    assert result.answer_rate >= MIN_ANSWER_RATE and result.heldout_answer_rate >= MIN_ANSWER_RATE
    assert result.accuracy >= MIN_ACCURACY


def test_accuracy_holds_on_phrasings_and_spellings_never_trained_on(trained):
    """data/heldout.json: templates, context sentences and unit spellings that never occur in training -- the
    generator's stand-in for questions written by someone else."""
    out, result = trained
    assert result.heldout_accuracy >= MIN_HELDOUT_ACCURACY
    evaluation = json.loads((out / "metrics.json").read_text())["evaluation"]
    assert evaluation["heldout"]["accuracy"] == result.heldout_accuracy and evaluation["heldout"]["questions"] == 300


def test_accuracy_holds_on_sentence_structures_and_questions_typed_by_hand(trained):
    """data/heldout_structures.json: whole productions of the question grammar (orders, quantity phrases, frames)
    never trained on; data/handwritten.json: questions typed by hand, never generated."""
    out, result = trained
    print(f"\nheld-out structures {result.structures_accuracy:.3f} (answer rate {result.structures_answer_rate:.3f}), "
          f"hand-written {result.handwritten_accuracy:.3f} (answer rate {result.handwritten_answer_rate:.3f})")
    assert result.structures_accuracy >= MIN_STRUCTURES_ACCURACY
    assert result.handwritten_accuracy >= MIN_HANDWRITTEN_ACCURACY
    assert min(result.structures_answer_rate, result.handwritten_answer_rate) >= MIN_ANSWER_RATE
    evaluation = json.loads((out / "metrics.json").read_text())["evaluation"]
    assert (evaluation["structures"]["questions"], evaluation["handwritten"]["questions"]) == (300, 226)
    assert evaluation["structures"]["accuracy"] == result.structures_accuracy


def test_loss_curve_fell(trained):
    _, result = trained
    losses = [r.loss for r in result.records]
    k = max(len(losses) // 10, 1)
    assert statistics.mean(losses[-k:]) < 0.5 * statistics.mean(losses[:k])


def test_saved_adapter_reloads_with_the_same_accuracy(trained):
    from homework.data import Dataset, benchmark

    out, result = trained
    assert (out / "metrics.json").is_file() and (out / "training_curves.png").is_file()
    assert json.loads((out / TRAIN_CONFIG_FILE).read_text())["lora_rank"] > 0
    llm = load(out)
    assert benchmark(llm, Dataset("valid")).accuracy == pytest.approx(result.accuracy, abs=0.01)
    assert benchmark(llm, Dataset("heldout")).accuracy == pytest.approx(result.heldout_accuracy, abs=0.01)


@pytest.mark.gpu
def test_gpu_training_uses_bf16_when_supported(hw_placement, train_steps, training_health):
    from homework.runtime.device import resolve_placement

    assert hw_placement.device.type == "cuda"
    chosen = resolve_placement("cuda", "auto", training=True)  # the fixtures pin fp32; a user's run does not
    if torch.cuda.is_bf16_supported():
        assert chosen.dtype == torch.bfloat16
    training_health(train_steps(3, learning_rate=1e-3, bf16=chosen.bf16))


def test_course_grader_convention_scores_the_default_adapter(trained, tmp_path):
    """The grader's three cases on the default adapter, in a fresh interpreter, exactly as it calls them
    (homework.tools.grader_check). The SFT case must earn its full points; the generation cases grade the embedded
    base model, whose figures are printed, not bounded here (docs/results.md says why they score low)."""
    from homework.tools import grader_check

    out, _ = trained
    results = grader_check.run_cases(grader_check.lay_out_submission(tmp_path / "sub", out))
    rows = grader_check.score(results)
    print("\ngrader convention: " + "; ".join(
        f"{case} {r['seconds']:.1f} s (limit {r['limit']:.0f}) {r['graded']} {r['value']:.3f} -> {r['share']:.0%}"
        for case, r in rows.items()))
    assert results["sft"]["questions"] == 100 and results["sft"]["accuracy"] >= grader_check.ACCURACY_FULL
    assert rows["sft"]["share"] == 1.0
    assert len(results["generate"]["outputs"]) == len(results["batched"]["outputs"]) == 32
