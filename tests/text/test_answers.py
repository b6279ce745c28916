import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homework.text.answers import NAMED_CHECKS, format_number, parse_answer, wrap_answer


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


# The named-answer check: an expression that disagrees with the units named before it is not graded as written.

@pytest.fixture(autouse=True)
def _default_named_check(monkeypatch):
    monkeypatch.delenv("HOMEWORK_NAMED_CHECK", raising=False)


def _pairs():
    from homework.datagen import generate as datagen

    return [(a, b) for a in datagen.UNITS for b in datagen.UNITS if a is not b and a.dimension == b.dimension]


def _oracle(q, src, dst):
    """The naive answer: pint's factor between the two units, no rounding, no base units."""
    from homework.datagen.generate import conversion_factor

    return q * conversion_factor(src.key, dst.key)


def _named(src, dst, expression, kind=None):
    return f"{kind or src.dimension}: {src.canonical} to {dst.canonical}: <answer>{expression}</answer>"


def _factor(unit):
    from homework.text.expression_format import format_factor
    from homework.text.vocabulary import BASE_UNIT, base_factor

    assert unit.dimension in BASE_UNIT
    return format_factor(base_factor(unit.key, unit.dimension))


quantities = st.one_of(st.integers(1, 9999).map(str), st.integers(1, 9999).map(lambda n: f"{n / 100:g}"))


@given(st.sampled_from(_pairs()), quantities, st.sampled_from(NAMED_CHECKS))
def test_a_correct_named_answer_parses_to_the_right_value_in_every_mode(pair, q, mode):
    src, dst = pair
    text = _named(src, dst, f"{q} * {_factor(src)} / {_factor(dst)}")
    assert parse_answer(text, mode) == pytest.approx(_oracle(float(q), src, dst), rel=2e-3)


@given(st.sampled_from(_pairs()), quantities, st.sampled_from(__import__("homework.datagen.generate").datagen.generate.UNITS),
       st.booleans(), st.sampled_from(NAMED_CHECKS))
def test_a_factor_of_another_kind_is_caught(pair, q, other, replace_source, mode):
    """A factor of a unit of another kind beside the named units: NaN, or repaired to the right value; as
    written only with the check off. A factor within the grading tolerance of the right one (grams and litres
    are both 1) changes no grade, so it is left as written."""
    src, dst = pair
    if other.dimension == src.dimension:
        return
    factors = [_factor(other) if replace_source else _factor(src), _factor(dst) if replace_source else _factor(other)]
    text = _named(src, dst, f"{q} * {factors[0]} / {factors[1]}")
    right, written = _oracle(float(q), src, dst), float(q) * float(factors[0]) / float(factors[1])
    result = parse_answer(text, mode)
    if mode == "off" or abs(written - right) <= 0.049 * right:  # what grading accepts is left as written
        assert result == pytest.approx(written, rel=1e-9)
    elif abs(written - right) < 0.051 * right:
        return  # at the tolerance's edge the rounding of the factors decides
    elif mode == "nan":
        assert math.isnan(result)
    else:
        assert result == pytest.approx(right, rel=2e-3)


@pytest.mark.parametrize("text, nan, repair, off", [
    # the case: a mass ounce's factor beside "quart to ounce"; an ounce beside a volume is a fluid ounce
    ("volume: quart to ounce: <answer>6 * 0.9464 / 28.35</answer>", None, 192.0, 0.2003),
    ("volume: quart to fluid ounce: <answer>6 * 0.9464 / 28.35</answer>", None, 192.0, 0.2003),
    ("volume: quart to ounce: <answer>6 * 0.9464 / 0.02957</answer>", 192.0, 192.0, 192.0),
    ("mass: kilogram to gram: <answer>6 * 1000 / 1</answer>", 6000.0, 6000.0, 6000.0),
    ("mass: kilogram to gram: <answer>6 * 453.6 / 1</answer>", None, 6000.0, 2721.6),  # a pound's factor
    ("speed: inch per second to meter per second: <answer>10 * 0.001 / 1</answer>", None, 0.254, 0.01),
    ("volume: cubic millimeter to liter: <answer>5 * 0.001 / 1</answer>", None, 5e-6, 0.005),
    ("data: gigabyte to megabyte: <answer>3 * 1e9 / 1e6</answer>", 3000.0, 3000.0, 3000.0),
    ("length: quart to ounce: <answer>6 * 0.9464 / 28.35</answer>", None, 192.0, 0.2003),  # the quart's kind rules
    ("volume: ounce to gram: <answer>2 * 28.35 / 1</answer>", 56.7, 56.7, 56.7),  # a wrong kind word alone: as written
    ("mass: quart to gram: <answer>6 * 0.9464 / 1</answer>", None, None, 5.678),  # two kinds: nothing to repair
    ("volume: pound to liter: <answer>2 * 453.6 / 1</answer>", None, None, 907.2),
    ("mass: slug to gram: <answer>6 * 453.6 / 1</answer>", 2721.6, 2721.6, 2721.6),  # not in the vocabulary: as written
    ("<answer>6 * 453.6 / 1</answer>", 2721.6, 2721.6, 2721.6),  # the expression format names nothing
    ("<answer>6000</answer>", 6000.0, 6000.0, 6000.0),
    # no expression, so no quantity to check: a bare number, text, a broken expression
    ("mass: kilogram to gram: <answer>6000</answer>", 6000.0, 6000.0, 6000.0),
    ("mass: kilogram to gram: <answer>6 kg</answer>", 6.0, 6.0, 6.0),
    ("mass: kilogram to gram: <answer>* 1000 / 1</answer>", 1000.0, 1000.0, 1000.0),
    ("mass: kilogram to gram: <answer>(6) * 1,000 / 1</answer>", 6000.0, 6000.0, 6000.0),
    ("time: month to day: <answer>2 * 2.592e6 / 86400</answer>", 60.0, 60.0, 60.0),  # a 30-day month: 1.4 % off
    ("time: month to day: <answer>2 * 2.419e6 / 86400</answer>", None, 60.875, 56.0),  # a 4-week month: 8 % off
])
def test_named_answers_in_each_mode(text, nan, repair, off):
    for mode, expected in (("nan", nan), ("repair", repair), ("constrain", repair), ("off", off)):
        result = parse_answer(text, mode)
        if expected is None:
            assert math.isnan(result), (mode, result)
        else:
            assert result == pytest.approx(expected, rel=2e-3), mode


def test_the_default_is_constrain_and_the_environment_switches_it(monkeypatch):
    from homework.text import answers

    text = "volume: quart to ounce: <answer>6 * 0.9464 / 28.35</answer>"
    from homework.data import RELATIVE_TOLERANCE

    assert answers.NAMED_TOLERANCE == RELATIVE_TOLERANCE
    assert answers.DEFAULT_NAMED_CHECK == "constrain" and answers.named_check() == "constrain"
    assert parse_answer(text) == pytest.approx(192.0, rel=1e-3)
    monkeypatch.setenv("HOMEWORK_NAMED_CHECK", "nan")
    assert math.isnan(parse_answer(text))
    assert parse_answer(text, "repair") == pytest.approx(192.0, rel=1e-3)  # an explicit mode wins
    monkeypatch.setenv("HOMEWORK_NAMED_CHECK", "fix")
    with pytest.raises(ValueError, match="HOMEWORK_NAMED_CHECK='fix': choose from constrain, repair, nan, off"):
        parse_answer(text)


def test_the_model_interface_reads_the_named_prefix():
    """BaseLLM decodes only the generated tokens, so the text it parses starts with the named prefix."""
    from homework.base_llm import BaseLLM

    llm = BaseLLM.__new__(BaseLLM)
    # repaired (the default check): a quart is 32 fluid ounces, whatever factor the expression used
    assert llm.parse_answer("volume: quart to ounce: <answer>6 * 0.9464 / 28.35</answer>") == pytest.approx(192.0, rel=1e-3)
    assert llm.parse_answer("mass: kilogram to gram: <answer>6 * 1000 / 1</answer>") == 6000.0


@given(st.sampled_from(["mass", "volume", "data", "weight", ""]), st.sampled_from(
    ["kilogram", "ounce", "fluid ounce", "quart", "G", "gram to", "", "x"]), st.sampled_from(
    ["gram", "ounce", "megabyte", "to", " "]), st.text(alphabet="0123456789.,*/+-() e", max_size=25),
    st.sampled_from(NAMED_CHECKS))
def test_named_answer_soup_returns_a_float(kind, src, dst, expression, mode):
    result = parse_answer(f"{kind}: {src} to {dst}: <answer>{expression}</answer>", mode)
    assert isinstance(result, float) and (math.isnan(result) or math.isfinite(result))


def test_named_units_read_any_spelling_and_a_unicode_minus():
    """The named prefix is read as standard names first, then as any spelling ("qt", "oz"); the leading quantity
    may carry a unicode minus."""
    from homework.text.named import named_units, named_value

    src, dst = named_units("volume: qt to oz: ")
    assert (src.canonical, dst.canonical) == ("quart", "fluid ounce")
    claim = named_units("mass: kilogram to gram: ")
    assert named_value(claim, "−2 * 1000 / 1") == pytest.approx(-2000.0)
