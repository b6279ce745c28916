"""What a named answer's prefix claims."""

from homework.text.named import named_units


def test_only_the_line_the_answer_tag_is_on_names_units():
    src, dst = named_units("Question: How many g in 2 kg?\nmass: kilogram to gram: ")
    assert (src.canonical, dst.canonical) == ("kilogram", "gram")
    # a prefix on an earlier line, then a line break before the tag: no claim to check the answer against
    assert named_units("Question: How many g in 2 kg?\nmass: kilogram to gram:\n") is None
