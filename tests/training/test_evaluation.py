"""Grading after training (homework/training/evaluation.py): each family graded and recorded on its own."""

import json


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
