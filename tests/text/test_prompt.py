"""The one prompt builder: inference sees exactly the prompt that training masked (catalog row 11)."""

from hypothesis import given
from hypothesis import strategies as st

from homework.base_llm import BaseLLM
from homework.runtime.device import resolve_placement
from homework.text.prompt import build_prompt, encode, prompt_ids
from homework.text.tokenization import tokenize_row
from homework.training.collate import IGNORE_INDEX

# irregular whitespace (tabs, runs of spaces, newlines, unicode spaces) and non-ASCII text
messy_questions = st.text(alphabet=st.sampled_from(list("How many g in 2.5 kg?") + [" ", "\t", "\n", "\u00a0",
                                                                                    "\u2009", "é", "µ", "³", "→"]),
                          min_size=1, max_size=60).filter(lambda q: q.strip())


@given(messy_questions)
def test_inference_prompt_text_is_the_training_prompt_text(question):
    llm = BaseLLM.from_components(model=None, tokenizer=None, placement=resolve_placement("cpu"))
    assert llm.format_prompt(question) == build_prompt(question)
    assert build_prompt(question).endswith("\n") and "  " not in build_prompt(question)


@given(messy_questions)
def test_inference_prompt_ids_are_the_masked_training_prompt(hw_tokenizer, question):
    llm = BaseLLM.from_components(model=None, tokenizer=hw_tokenizer, placement=resolve_placement("cpu"))
    row = tokenize_row(hw_tokenizer, question, "<answer>1</answer>", max_length=None, pad=False)
    n_prompt = row.labels.index(next(lab for lab in row.labels if lab != IGNORE_INDEX))
    assert row.input_ids[:n_prompt] == encode(hw_tokenizer, llm.format_prompt(question))


@given(messy_questions)
def test_no_question_starts_the_sequence(hw_tokenizer, question):
    """The first token of a sequence is where attention parks (SmolLM2 adds no BOS): a question that began
    with its quantity lost that quantity's first digit ("40 gram" copied as "10"). Every prompt opens with
    the same lead tokens, and the question's own tokens follow them."""
    from homework.text.prompt import PROMPT_LEAD

    lead = encode(hw_tokenizer, PROMPT_LEAD.rstrip())
    ids = encode(hw_tokenizer, build_prompt(question))
    assert lead and ids[:len(lead)] == lead and len(ids) > len(lead)
    assert ids[0] == encode(hw_tokenizer, build_prompt("40 gram, in milligram?"))[0]  # one first token for all


def test_prompt_ids_are_the_encoded_prompt():
    def tokenizer(text, add_special_tokens):  # one id per character; a BOS (0) where special tokens are asked for
        return {"input_ids": [0] * add_special_tokens + [ord(c) for c in text]}

    assert prompt_ids(tokenizer, "2  kg\tin g?") == [ord(c) for c in "Question: 2 kg in g?\n"]
