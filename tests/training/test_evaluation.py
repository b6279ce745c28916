"""Grading after training (homework/training/evaluation.py): each family graded and recorded on its own."""

import json

import pytest

from tests.conftest import random_llama


def test_evaluation_grades_both_families_and_records_them_in_results_and_metrics(tmp_path, capsys):
    """train_model's evaluation: data/valid.json (training phrasings) and data/heldout.json (never-trained
    phrasings and spellings), each graded and printed, both in eval_results.json and metrics.json."""
    from homework.data import Dataset
    from homework.training import evaluation
    from homework.training.config import make_config

    valid, held = Dataset("valid").data[:4], Dataset("heldout").data[:5]

    class Answers:  # right on the valid rows, right on 2 of the 5 held-out rows
        def answer(self, *questions):
            truth = dict(valid + held[:2])
            return [truth.get(q, -1.0) for q in questions]

    (tmp_path / "metrics.json").write_text('{"steps": [], "train_seconds": 1.0}')
    evaluations = evaluation.evaluate_families(Answers(), {"valid": "valid", "heldout": "heldout"}, 5)
    summary = evaluation.write_results(tmp_path, evaluations, {"valid": "valid", "heldout": "heldout"})
    evaluation.add_to_metrics(tmp_path, summary)
    out = capsys.readouterr().out
    assert "validation: accuracy=0.800" in out and "held-out phrasings and spellings: accuracy=0.400" in out
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert (results["valid_file"], results["accuracy"], results["questions"]) == ("valid", 0.8, 5)
    assert results["heldout"]["accuracy"] == 0.4 and len(results["heldout"]["misses"]) == 3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_seconds"] == 1.0 and metrics["evaluation"]["heldout"]["accuracy"] == 0.4
    assert metrics["evaluation"]["valid"]["answer_rate"] == 1.0
    assert list(evaluation.evaluate_families(Answers(), {"valid": "valid"}, 2)) == ["valid"]  # --heldout-file '' skips it
    assert list(evaluation.evaluation_files(make_config(heldout_file="", handwritten_file=""))) == ["valid", "structures"]


def test_each_family_is_graded_on_its_own_share_of_one_generation(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from homework.training import evaluation

    files = {}
    for name, n in (("valid", 2), ("heldout", 3), ("handwritten", 6)):
        files[name] = str(tmp_path / f"{name}.json")
        (tmp_path / f"{name}.json").write_text(json.dumps(
            [[f"How many gram are in {i + 1} kilogram{'s' * (name == 'heldout')}?", 1000.0 * (i + 1)]
             for i in range(n)]))

    class Answers:  # right on the rows of 1 or 2 kilogram, wrong on every other
        def answer(self, *questions):
            return [1000.0 if " 1 " in q else 2000.0 if " 2 " in q else -1.0 for q in questions]

    clock = iter([10.0, 30.0])
    monkeypatch.setattr(evaluation, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    out = evaluation.evaluate_families(Answers(), files, 5)
    assert {name: (bench.accuracy, len(bench.samples), seconds) for name, (bench, seconds) in out.items()} == {
        "valid": (1.0, 2, 4.0), "heldout": (2 / 3, 3, 6.0), "handwritten": (0.4, 5, 10.0)}  # 20 s shared by questions
    assert capsys.readouterr().out.splitlines()[0] == (
        f"[homework] evaluating 2 ({files['valid']}) + 3 ({files['heldout']}) + 5 ({files['handwritten']}) questions "
        "(batched greedy generation) ...")


def test_results_record_seconds_and_at_most_50_misses_per_family(tmp_path):
    from homework.data import BenchmarkResult
    from homework.training import evaluation

    misses = [{"question": f"q{i}", "answer": 1.0, "is_correct": False} for i in range(60)]
    bench = BenchmarkResult.from_samples(misses)
    summary = evaluation.write_results(tmp_path, {"valid": (bench, 2.5), "heldout": (bench, 1.5)},
                                       {"valid": "v.json", "heldout": "h.json"})
    assert summary["heldout"] == {"file": "h.json", "accuracy": 0.0, "answer_rate": 1.0, "questions": 60,
                                  "seconds": 1.5}
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert (results["seconds"], len(results["misses"]), len(results["heldout"]["misses"])) == (2.5, 50, 50)
    assert results["misses"] == misses[:50]


@pytest.fixture
def saved_adapter(tmp_path, monkeypatch):
    """A LoRA adapter of a tiny random Llama saved to tmp_path/"adapter"; BaseLLM builds that Llama again."""
    from types import SimpleNamespace

    import torch
    from peft import LoraConfig, get_peft_model

    from homework import base_llm

    peft = get_peft_model(random_llama(), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    built = []

    def fake_base_llm(spec, device, precision=None):
        built.append((spec, device))
        return SimpleNamespace(model=random_llama(), device=torch.device(device if device == "meta" else "cpu"))

    monkeypatch.setattr(base_llm, "BaseLLM", fake_base_llm)
    return SimpleNamespace(path=tmp_path / "adapter", built=built, logits=peft.eval()(torch.tensor([[1, 2, 3]])).logits)


def test_load_puts_the_saved_adapter_on_the_base_model_it_was_trained_on(saved_adapter):
    import torch
    from peft import PeftModel

    from homework.training import evaluation

    merged = evaluation.load(saved_adapter.path, device="cpu")
    assert not isinstance(merged.model, PeftModel) and not merged.model.training
    assert torch.allclose(merged.model(torch.tensor([[1, 2, 3]])).logits, saved_adapter.logits, atol=1e-5)
    kept = evaluation.load(str(saved_adapter.path), merge=False)
    assert isinstance(kept.model, PeftModel) and not kept.model.training
    assert torch.equal(kept.model(torch.tensor([[1, 2, 3]])).logits, saved_adapter.logits)
    # no saved training config (or "embedded"): the default model; else the one named
    (saved_adapter.path / "homework_train_config.json").write_text('{"model": "embedded"}')
    evaluation.load(saved_adapter.path)
    (saved_adapter.path / "homework_train_config.json").write_text('{"model": "/models/mine"}')
    evaluation.load(saved_adapter.path, device="cuda:1")
    assert saved_adapter.built == [(None, "cpu"), (None, None), (None, None), ("/models/mine", "cuda:1")]
    # the adapter goes to the base model's device ("meta" stands in for a GPU here)
    on_meta = evaluation.load(saved_adapter.path, device="meta", merge=False)
    assert {p.device.type for p in on_meta.model.parameters()} == {"meta"}


def test_load_restores_a_save_interrupted_between_its_renames(saved_adapter):
    from homework.training import evaluation

    aside = saved_adapter.path.parent / ".adapter.old-1234"
    saved_adapter.path.rename(aside)
    writing = saved_adapter.path.parent / ".adapter.staging-5678"  # a save under way beside this reader
    writing.mkdir()
    evaluation.load(saved_adapter.path, merge=False)
    assert saved_adapter.path.is_dir() and not aside.exists()
    assert writing.is_dir()  # a reader never removes what a writer may be using


def test_load_without_an_adapter_says_to_train_first(tmp_path):
    from homework.runtime.errors import ModelResolutionError
    from homework.training import evaluation

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelResolutionError) as err:
        evaluation.load(tmp_path / "empty")
    assert str(err.value) == (f"no adapter at {tmp_path / 'empty'} (adapter_config.json missing); "
                              "run `python -m homework.sft train` first")


def test_test_model_grades_the_reloaded_adapter_on_the_families_asked_for(monkeypatch):
    from homework.training import evaluation

    calls = []
    monkeypatch.setattr(evaluation, "load", lambda path: f"loaded {path}")
    monkeypatch.setattr(evaluation, "evaluate_families", lambda llm, files, limit: calls.append((llm, files, limit))
                        or {"valid": ("valid result", 1.0), "heldout": ("heldout result", 1.0)})
    assert evaluation.test_model("ckpt", valid_file="v", limit=3, heldout_file="", structures_file="s") == "valid result"
    assert evaluation.test_model("ckpt", heldout_file="hf", structures_file="") == "valid result"
    assert evaluation.test_model(handwritten_file="h") == "valid result"
    assert calls == [("loaded ckpt", {"valid": "v", "structures": "s"}, 3),
                     ("loaded ckpt", {"valid": "valid", "heldout": "hf"}, None),
                     (f"loaded {evaluation.DEFAULT_OUTPUT_DIR}", {"valid": "valid", "handwritten": "h"}, None)]
