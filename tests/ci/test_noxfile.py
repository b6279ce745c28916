"""The mutation session's bookkeeping: what counts against a module's score and what makes it fail."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


RESULTS = """\
    homework.text.answers.x_parse__mutmut_1: killed
    homework.text.answers.x_parse__mutmut_2: timeout
    homework.text.answers.x_parse__mutmut_3: survived
    homework.text.answers.x_parse__mutmut_4: survived
    homework.text.answers.x_parse__mutmut_5: survived
    homework.text.answers.x_parse__mutmut_6: no tests
    sft_contract.rows.x_check__mutmut_1: killed
    unrelated.module.x_f__mutmut_1: survived
"""


def test_gaps_count_against_the_score_equivalents_do_not_and_stale_entries_are_named(tmp_path, nox_module):
    listed = tmp_path / "reviewed.txt"
    listed.write_text("# a comment\n"
                      "homework.text.answers.x_parse__mutmut_3  the same NaN\n"
                      "homework.text.answers.x_parse__mutmut_4  GAP: needs a GPU\n"
                      "homework.text.answers.x_parse__mutmut_1  was equivalent once\n")
    scores, unreviewed, stale = nox_module.mutation_scores(RESULTS, nox_module.reviewed_mutants(listed))
    assert scores["text.answers"] == {"killed": 2, "survived": 1, "untested": 1, "equivalent": 1, "gap": 1}
    assert scores["sft_contract.rows"]["killed"] == 1 and "unrelated.module" not in str(scores)
    assert unreviewed == ["homework.text.answers.x_parse__mutmut_5: survived",
                          "homework.text.answers.x_parse__mutmut_6: no tests"]
    assert stale == ["homework.text.answers.x_parse__mutmut_1"]
    assert nox_module.reviewed_mutants(tmp_path / "missing.txt") == {}
