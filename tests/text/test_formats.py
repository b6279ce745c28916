"""Answer formats by name."""

import pytest

from homework.runtime.errors import HomeworkError
from homework.text.expression_format import format_example_expression, format_example_named
from homework.text.formats import ANSWER_FORMATS, answer_formatter, format_example


def test_each_accepted_format_name_gives_its_formatter():
    assert [answer_formatter(name) for name in ANSWER_FORMATS] == [format_example_named, format_example_expression,
                                                                   format_example]


def test_an_unknown_format_name_is_refused_naming_the_choices():
    with pytest.raises(HomeworkError, match=r"^unknown answer format 'words': choose from named, expression, number$"):
        answer_formatter("words")
