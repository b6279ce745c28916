"""The head grammar: which heads it holds, which generations it judges wrong, and its token trie."""

import json
from collections import Counter
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from homework.text.expression_format import format_example_named
from homework.text.head_grammar import HeadTrie, head_is_wrong, head_trie, valid_heads
from homework.text.named import named_units
from homework.text.prompt import encode
from homework.text.vocabulary import units

DATA = Path(__file__).resolve().parents[2] / "data"


def test_the_grammar_holds_every_ordered_pair_of_two_different_units_of_one_kind():
    per_kind = Counter(unit.dimension for unit in units())
    heads = valid_heads()
    assert len(heads) == len(set(heads)) == sum(n * (n - 1) for n in per_kind.values())
    for head in heads:
        src, dst = named_units(head + " ")
        assert src.key != dst.key and src.dimension == dst.dimension == head.split(":")[0]
        assert head == f"{src.dimension}: {src.canonical} to {dst.canonical}:"


def test_every_named_answer_in_the_training_data_opens_with_a_head_of_the_grammar():
    heads = set(valid_heads())
    rows = json.loads((DATA / "train.json").read_text())
    answers = [format_example_named(q, a)["answer"] for q, a in rows]
    named = [a.split(" <answer>")[0] for a in answers if not a.startswith("<answer>")]
    assert len(named) > 0.9 * len(rows)
    assert [h for h in named if h not in heads] == []


def test_wrong_heads_are_two_kinds_or_one_unit_twice():
    assert head_is_wrong("mass: kilobyte to gram: <answer>3 * 1000 / 1</answer>")
    assert head_is_wrong("volume: gallon to gallon: <answer>5 * 3.785 / 3.785</answer>")
    assert head_is_wrong("data: foot to foot: <answer>6.5")  # cut short: the head is whole
    assert head_is_wrong("length: ft to foot: <answer>6.5 * 0.3048 / 0.3048</answer>")  # two spellings of one unit
    # the head is the one before the first tag, whatever follows it
    assert head_is_wrong("volume: gallon to gallon: <answer>5 * 1 / 1</answer> <answer>5</answer>")


def test_heads_that_can_be_right_or_cannot_be_judged_are_not_wrong():
    assert not head_is_wrong("mass: kilogram to gram: <answer>3 * 1000 / 1</answer>")
    assert not head_is_wrong("volume: quart to ounce: <answer>2 * 0.9464 / 0.02957</answer>")  # a fluid ounce
    assert not head_is_wrong("mass: kilogam to gram: <answer>3 * 1000 / 1</answer>")  # a name it lacks
    assert not head_is_wrong("<answer>3000</answer>")  # the course's number format: no head
    assert not head_is_wrong("mass: kilogram to kilogram: ")  # no answer tag yet: nothing to judge
    assert not head_is_wrong("")


def _naive_allowed(sequences, prefix):
    """Tokens that extend `prefix` inside some sequence; None when none does."""
    nxt = {s[len(prefix)] for s in sequences if len(s) > len(prefix) and s[:len(prefix)] == prefix}
    return nxt or None


# Prefix-free sequences, as heads are (each ends with ":" and no name holds one): a body over 1..4, then 0.
_sequences = st.lists(st.lists(st.integers(1, 4), max_size=4).map(lambda s: (*s, 0)), min_size=1, max_size=8)


@given(_sequences, st.lists(st.integers(0, 4), max_size=6))
def test_the_trie_allows_exactly_the_tokens_that_continue_some_sequence(sequences, prefix):
    trie = HeadTrie(sequences)
    assert sorted(trie.allowed(prefix) or []) == sorted(_naive_allowed(sequences, tuple(prefix)) or [])
    for seq in sequences:  # along each sequence: its next token is allowed until it is complete
        for cut in range(len(seq)):
            assert seq[cut] in trie.allowed(seq[:cut])
        assert trie.allowed(seq) is None


def test_heads_tokenize_alone_as_they_do_inside_an_answer_after_the_prompt(hw_tokenizer):
    trie = head_trie(hw_tokenizer)
    assert head_trie(hw_tokenizer) is trie  # built once per tokenizer
    for head in valid_heads():
        whole = encode(hw_tokenizer, "Question: 2 kg in g?\n" + head + " <answer>2 * 1000 / 1</answer>")
        alone = encode(hw_tokenizer, head)
        start = len(encode(hw_tokenizer, "Question: 2 kg in g?\n"))
        assert whole[start:start + len(alone)] == alone, head
        assert trie.allowed(alone) is None and trie.allowed(alone[:-1]) == [alone[-1]]
