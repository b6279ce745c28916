"""The grammar of a named answer's head, `mass: kilogram to gram:`, as a trie of token ids, so that decoding can
be held to heads that can be right: one kind, two different units of that kind, each by its standard name.

A head outside it is never right: two kinds ("mass: kilobyte to gram") leave nothing to grade, and one unit
named twice ("volume: gallon to gallon") has the factor 1, while no question converts a unit into itself.
BaseLLM re-decodes such a generation inside the grammar (see answers.NAMED_CHECKS).
"""

from __future__ import annotations

import functools
from collections import defaultdict

from .answers import ANSWER_OPEN
from .named import named_units
from .prompt import encode
from .vocabulary import units


def _valid_heads() -> tuple[str, ...]:
    """Every head a named answer can rightly have: `{kind}: {source} to {target}:`, source != target."""
    names = defaultdict(list)
    for unit in units():
        names[unit.dimension].append(unit.canonical)
    return tuple(f"{kind}: {src} to {dst}:" for kind, kind_names in sorted(names.items())
                 for src in kind_names for dst in kind_names if src != dst)


# Cached by assignment, not by decorator: mutmut leaves decorated functions unmutated.
valid_heads = functools.lru_cache(maxsize=1)(_valid_heads)


def head_is_wrong(text: str) -> bool:
    """Whether a generation's named head is outside the grammar in a way that is never right: units of two
    kinds, or one unit named twice. A head with a name the vocabulary lacks, or no head, is not judged."""
    start = text.find(ANSWER_OPEN)
    if start < 0 or ":" not in text[:start]:
        return False
    claim = named_units(text[:start])
    return claim is False or (claim is not None and claim[0].key == claim[1].key)


class HeadTrie:
    """Token-id trie of the valid heads as one tokenizer spells them."""

    def __init__(self, sequences):
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for token in seq:
                node = node.setdefault(token, {})

    def allowed(self, generated) -> list[int] | None:
        """The tokens that may follow `generated` (the ids decoded so far) inside a head; None once the head is
        complete or the ids have left the grammar (from then on decoding is free)."""
        node = self.root
        for token in generated:
            node = node.get(token)
            if not node:  # left the trie, or a complete head (a leaf)
                return None
        return list(node)


def _head_trie(tokenizer) -> HeadTrie:
    """The trie for `tokenizer`; the heads are tokenized alone, as they are in context after the prompt's
    newline and before " <answer>" (tests/text/test_head_grammar.py checks this against whole answers)."""
    return HeadTrie(encode(tokenizer, head) for head in valid_heads())


head_trie = functools.lru_cache(maxsize=4)(_head_trie)
