import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homework.data import DATA_DIR, is_answer_valid
from homework.datagen import generate as datagen
from homework.sft import format_example
from homework.text.answers import evaluate_expression, parse_answer
from homework.text.expression_format import format_example_expression, unit_expression


@pytest.mark.parametrize("question, answer, expected", [
    ("How many gram are there per 6 kg?", 6000.0, "6 * 1000 / 1"),
    ("What is 3 miles in km?", 4.828032, "3 * 1609 / 1000"),
    ("How many m^3 are in 18 gal?", 0.068137412112, "18 * 3.785 / 1000"),
    ("Convert 2.5 hours to minutes.", 150.0, "2.5 * 3600 / 60"),
    ("Need 1,500mL as qt", 1.5850323141, "1,500 * 0.001 / 0.9464"),  # thousands comma, glued unit
    ("I'm baking. In cups, how much is 0.5 l?", 2.1133764189, "0.5 * 1 / 0.2366"),  # "I'm" is no meter
    ("What is 3 cm3 in cubic inches?", 0.183071622, "3 * 0.001 / 0.01639"),  # the 3 of cm3 is no quantity
    ("How many km/h is 12 m/s?", 43.2, "12 * 1 / 0.2778"),
    # units named before the quantity, which is a count ("structures" report)
    ("the conversion from kg to g for 6 units", 6000.0, "6 * 1000 / 1"),
    ("kg → g: 6", 6000.0, "6 * 1000 / 1"),
    ("g from kg, 6 of them", 6000.0, "6 * 1000 / 1"),
    ("For a count of 2, what is yr to days?", 730.5, "2 * 3.156e7 / 86400"),
    ("mi->meter 3", 4828.032, "3 * 1609 / 1"),
    ("Convert in to cm for 6 units", 15.24, "6 * 0.0254 / 0.01"),  # "in" the inch, and "in" no unit at all:
    ("what is 6 in g, from kg?", 6000.0, "6 * 1000 / 1"),  # an inch beside no length is not the quantity's unit
    # a spelling read by the other unit's kind: an ounce beside a quart is a fluid ounce
    ("how many ounces in 2 quarts", 64.0, "2 * 0.9464 / 0.02957"),
    ("oz to g for 2 of them", 56.69904625, "2 * 28.35 / 1"),
    ("how many M in 3G", 3000.0, "3 * 1e9 / 1e6"),
    ("20 in/s in m/s", 0.508, "20 * 0.0254 / 1"),
    ("5 mm^3 to L", 5e-6, "5 * 1e-6 / 1"),
])
def test_unit_expression(question, answer, expected):
    assert unit_expression(question, answer) == expected


SPLITS = ("train", "valid", "heldout", "heldout_structures")


def test_every_committed_row_has_an_expression_worth_its_answer():
    for split in SPLITS:
        for q, a in json.loads((DATA_DIR / f"{split}.json").read_text()):
            ex = format_example_expression(q, a)
            assert "*" in ex["answer"], q
            assert is_answer_valid(parse_answer(ex["answer"]), a), (q, a, ex)


@pytest.mark.parametrize("question, answer", [("What is the meaning of life?", 42.0),
                                              ("How many gram are there per 6 kg?", 1234.0)])
def test_unreadable_questions_fall_back_to_the_plain_number(question, answer):
    assert format_example_expression(question, answer) == format_example(question, answer)


WORDINGS = list(datagen.TEMPLATES) + [w for p in datagen.productions() for w in datagen.wordings(p)]


@given(st.sampled_from(WORDINGS), st.integers(1, 500), st.sampled_from(datagen.UNITS),
       st.sampled_from(datagen.UNITS), st.booleans())
def test_generated_questions_round_trip(template, q, src, dst, borrowed):
    """Every template and every production's wordings, units first or quantity first, read back to the
    units they were written with (an ounce beside a volume as the fluid ounce it is)."""
    if src is dst or src.dimension != dst.dimension:
        return
    answer = q * datagen.conversion_factor(src.key, dst.key)
    spell = [u.borrowed[0] if borrowed and u.borrowed else u.names[0] for u in (src, dst)]
    question = template.format(q=q, src=spell[0], dst=spell[1])
    ex = format_example_expression(question, answer)
    assert is_answer_valid(parse_answer(ex["answer"]), answer)
    from homework.text.expression_format import read_conversion

    assert [u.key for u in read_conversion(question, answer)[1:]] == [src.key, dst.key], question


@pytest.mark.parametrize("text, value", [("6 * 1000 / 1", 6000), ("-(2 + 3) * 2", -10), ("1.5e3 / 3", 500),
                                         ("2 × 3 ÷ 4", 1.5), ("1,000 * 2", 2000)])
def test_evaluate_expression(text, value):
    assert evaluate_expression(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "6 *", "(1 + 2", "import os", "2 ** 3", "1 2"])
def test_evaluate_expression_rejects_non_arithmetic(text):
    with pytest.raises(ValueError):
        evaluate_expression(text)


@pytest.mark.parametrize("text, value", [("8 / 4 / 2", 1.0), ("100 / 10 * 2", 20.0), ("2 * 3 / 4 * 8", 12.0),
                                         ("1 - 2 - 3", -4.0), ("6 * 1000 / 1 / 1000", 6.0), ("2 - 3 + 4", 3.0)])
def test_chained_operators_evaluate_left_to_right(text, value):
    assert evaluate_expression(text) == pytest.approx(value)


@given(st.lists(st.tuples(st.sampled_from("*/"), st.integers(1, 999)), min_size=1, max_size=6),
       st.integers(1, 999))
def test_products_and_quotients_match_a_left_fold(ops, first):
    """Oracle: the naive left-to-right fold that arithmetic convention prescribes."""
    expected = float(first)
    for op, n in ops:
        expected = expected * n if op == "*" else expected / n
    text = f"{first}" + "".join(f" {op} {n}" for op, n in ops)
    assert evaluate_expression(text) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("text, message", [("", "empty or too long"), ("6 *", "expected a number"),
                                           ("(1 + 2", "unbalanced"), ("1 2", "trailing tokens"), ("6 $ 2", r"\$"),
                                           ("6 X 2", "X")])
def test_a_malformed_expression_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        evaluate_expression(text)


def test_expressions_are_limited_to_64_tokens():
    """A bound on the work per answer: 64 tokens parse, 65 do not."""
    sixty_four = "-1" + " + 1" * 31
    assert evaluate_expression(sixty_four) == 30
    with pytest.raises(ValueError, match="too long"):
        evaluate_expression("-" + sixty_four)


@pytest.mark.parametrize("text, value", [("+5", 5.0), ("2 * +3", 6.0), ("1_000 * 2", 2000.0), ("−3 * 2", -6.0),
                                         ("-(-4)", 4.0)])
def test_signs_and_separators_inside_expressions(text, value):
    assert evaluate_expression(text) == pytest.approx(value)


def test_division_by_zero_is_nan_not_an_error():
    assert math.isnan(evaluate_expression("1 / 0")) and math.isnan(evaluate_expression("6 * 1000 / (1 - 1)"))


def test_unit_mentions_prefer_the_longest_name_and_keep_later_ones():
    """"kilometers per hour" is one speed unit, not kilometers; a later, separate "kilometers" still counts."""
    from homework.text.expression_format import _mentions

    question = "Convert 5 kilometers per hour into meters per second (kilometers are long)"
    found = [(pos, unit.key) for pos, unit in _mentions(question)]
    assert found == [(question.index("kilometers per"), "kilometer / hour"),
                     (question.index("meters per second"), "meter / second"),
                     (question.index("kilometers are"), "kilometer")]


@pytest.mark.parametrize("question, answer", [
    ("It took 5 days, no, 5 minutes: how many seconds?", 300.0),  # only the first unit after the quantity is its unit
    ("How many meters is 5 grams?", 5.0),  # units of different dimensions never pair, even when the numbers agree
    ("How many meters are there in 5 meters?", 5.0),  # nor does a unit with itself
])
def test_questions_the_expression_reader_does_not_guess_at(question, answer):
    assert unit_expression(question, answer) is None


@pytest.mark.parametrize("value, text", [
    (1000, "1000"), (0.3048, "0.3048"), (3600, "3600"), (86400, "86400"), (604800, "6.048e5"), (3155760000, "3.156e9"),
    (1e12, "1e12"), (0.000001, "1e-6"), (0.00001639, "1.639e-5"), (0.001, "0.001"), (999960, "1e6"),
    (0.125, "0.125"), (0.00025, "2.5e-4"), (0.001639, "0.001639"), (28316.8, "28317"), (1609.344, "1609"),
])
def test_factors_are_short(value, text):
    from homework.text.expression_format import format_factor

    assert format_factor(value) == text
    assert evaluate_expression(text) == pytest.approx(value, rel=5e-4)


@given(st.floats(1e-12, 1e15))
def test_a_short_factor_keeps_four_significant_digits(value):
    from homework.text.expression_format import format_factor

    text = format_factor(value)
    assert evaluate_expression(text) == pytest.approx(value, rel=5.01e-4)
    assert len(text.replace(".", "").replace("-", "")) <= 8  # at most 4 digits, "e" and a 2-digit exponent


def test_the_named_format_names_the_kind_and_the_standard_units_before_the_same_expression():
    from homework.text.expression_format import format_example_named

    ex = format_example_named("How many g per 6 KG?", 6000.0)
    assert ex == {"question": "How many g per 6 KG?",
                  "answer": "mass: kilogram to gram: <answer>6 * 1000 / 1</answer>"}
    assert parse_answer(ex["answer"]) == 6000.0
    held = format_example_named("So 10 meg would be how many bit?", 8e7)["answer"]
    assert held == "data: megabyte to bit: <answer>10 * 1e6 / 0.125</answer>"
    assert format_example_named("What is the meaning of life?", 42.0) == format_example("What is the meaning of life?", 42.0)


def test_every_committed_row_has_a_named_answer_worth_its_answer():
    from homework.text.expression_format import format_example_named
    from homework.text.vocabulary import BASE_UNIT

    names = {u.canonical for u in datagen.UNITS}
    assert len(names) == len(datagen.UNITS)  # one standard name per unit
    for split in ("train", "heldout", "heldout_structures"):
        for q, a in json.loads((DATA_DIR / f"{split}.json").read_text()):
            answer = format_example_named(q, a)["answer"]
            kind, units, _ = answer.split(": ")
            src, _, dst = units.partition(" to ")
            assert kind in BASE_UNIT and {src, dst} <= names and is_answer_valid(parse_answer(answer), a), (q, answer)


def test_every_named_answer_fits_the_generation_budget(hw_tokenizer):
    """BaseLLM generates at most DEFAULT_MAX_NEW_TOKENS: an answer longer than that would be cut off and graded
    unanswered, however right the model was."""
    from homework.base_llm import DEFAULT_MAX_NEW_TOKENS
    from homework.text.expression_format import format_example_named
    from homework.text.prompt import encode

    longest = max(len(encode(hw_tokenizer, format_example_named(q, a)["answer"]))
                  for split in SPLITS for q, a in json.loads((DATA_DIR / f"{split}.json").read_text()))
    assert longest + 1 <= DEFAULT_MAX_NEW_TOKENS


@pytest.mark.parametrize("question", ["How many g is 6kg?", "How many g is 6 kg?"])
def test_a_unit_right_after_the_quantity_is_its_unit_written_with_or_without_a_space(question):
    from homework.text.expression_format import _QUANTITY, _candidates
    from homework.text.vocabulary import reading

    # only one reading, kg -> g: the unit after the quantity is the source, not either of the two
    assert _candidates(question, _QUANTITY.search(question)) == [(reading("kg"), reading("g"))]
