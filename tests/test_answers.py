import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homework.answers import format_number, parse_answer, wrap_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>6000</answer>", 6000.0),
        ("<answer>6000", 6000.0),  # missing closing tag
        ("<answer>1,234,567.5</answer>", 1234567.5),  # thousands separators
        ("<answer>-3.5</answer>", -3.5),
        ("<answer>+2</answer>", 2.0),
        ("<answer>−7</answer>", -7.0),  # unicode minus
        ("<answer>1.5e3</answer>", 1500.0),
        ("<answer>2E-4</answer>", 0.0002),
        ("<answer> 42 </answer>", 42.0),
        ("<answer>.5</answer>", 0.5),
        ("The result is <answer>12.25</answer> meters", 12.25),
        ("<answer>3 km</answer>", 3.0),
        ("<answer>2.75 kg</answer>", 2.75),  # the fallback (not an expression) keeps decimals
        ("<answer>about 0.5 litres</answer>", 0.5),
        ("<answer>12.5 (rounded)</answer>", 12.5),
        ("<answer>1</answer><answer>2</answer>", 1.0),  # first answer wins
    ],
)
def test_parse_answer_edge_cases(text, expected):
    """Catalog row 13: a missing closing tag, separators, signs and exponents still parse."""
    assert parse_answer(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "6000", "<answer></answer>", "<answer>abc</answer>", "<answer>", "no tags",
                                  "<answer>inf</answer>", "<answer>nan</answer>", "<answer>1e999</answer>"])
def test_parse_answer_without_an_answer_is_nan(text):
    assert math.isnan(parse_answer(text))


def test_parse_answer_non_string_is_nan():
    assert math.isnan(parse_answer(None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value, text",
    [(6000.0, "6000"), (0.00274738934452, "0.002747"), (244.620288, "244.6"), (1e9, "1000000000"),
     (65745.0, "65745"), (0.5, "0.5"), (-3.14159, "-3.142"), (0.0, "0"), (123456.7, "123457")],
)
def test_format_number_rounds_to_four_significant_digits_without_exponent(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_format_number_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="non-finite"):
        format_number(bad)


@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_wrap_then_parse_is_within_rounding(value):
    parsed = parse_answer(wrap_answer(value))
    assert "e" not in format_number(value).lower()
    assert parsed == pytest.approx(value, rel=1e-3, abs=1e-12 + 1e-3 * abs(value))


@given(st.text())
def test_parse_answer_fuzz_returns_a_float(text):
    """Any text: a float (finite or NaN), never an exception (issue 6, item 5)."""
    result = parse_answer(text)
    assert isinstance(result, float)
    assert math.isnan(result) or math.isfinite(result)


@given(st.text(alphabet="<>/answer0123456789.,-+eE \n", max_size=40))
def test_parse_answer_fuzz_tag_soup(text):
    result = parse_answer(text)
    assert isinstance(result, float)
    if "<answer>" not in text:
        assert math.isnan(result)


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
       st.sampled_from(["km", "kg", "litres", "(approx.)", "units"]))
def test_fallback_number_with_trailing_words_keeps_its_decimals(value, words):
    assert parse_answer(f"<answer>{value} {words}</answer>") == pytest.approx(float(value), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>−3 km</answer>", -3.0),  # the fallback reads a unicode minus too
        ("<answer>- 3 km</answer>", -3.0),  # and a sign spaced from its number
        ("<answer>-\t3 km</answer>", -3.0),  # by any whitespace (a tab read as nan before)
        ("<answer>+\n2.5 m</answer>", 2.5),
        ("<answer>1,000 km</answer>", 1000.0),  # and thousands separators
        ("<answer>1_000 km</answer>", 1000.0),
        ("<answer>2 * 3</answer></answer>", 6.0),  # the first closing tag ends the answer
        ("<answer>4</answer> then <answer>2 * 3</answer>", 4.0),
    ],
)
def test_the_fallback_number_and_the_answer_boundary(text, expected):
    assert parse_answer(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["<answer></answer> 5", "<answer>1e999 km</answer>", "<answer>1/0</answer>",
                                  "<answer>-1e999 m</answer>"])
def test_an_empty_or_non_finite_answer_is_nan_not_a_number_found_elsewhere(text):
    """An empty tag does not borrow a number from after it; an infinite or undefined value is no answer."""
    assert math.isnan(parse_answer(text))


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
def test_format_number_is_plain_decimal_and_reads_back(value):
    text = format_number(value)
    assert text and text != "-0" and "e" not in text.lower()
    assert float(text) == pytest.approx(value, rel=1e-3, abs=1e-300)
    if "." in text:
        assert not text.endswith(("0", "."))  # no trailing zeros or bare point


def test_the_fallback_drops_every_separator_before_reading_the_number():
    assert parse_answer("<answer>1__000 m</answer>") == 1000.0  # float() itself refuses a doubled underscore
