"""The value guesser: which prompt word a JSON answer's next string value starts with."""

import json

import pytest

from tasc.spec.drafts import SpecConfig, build_corpus_index, tasc_drafter
from tasc.spec.value_copy import NextValueCopy, ValueStarts, next_value_copy_for
from tests.tiny import make_tiny_tokenizer

PAIRS = [
    ("add jazz to my list", {"intent": "AddToList", "slots": {"music": "jazz", "owner": "my", "list": "list"}}),
    ("add blues to my party", {"intent": "AddToList", "slots": {"music": "blues", "owner": "my", "list": "party"}}),
    ("add rock to the mix", {"intent": "AddToList", "slots": {"music": "rock", "list": "mix"}}),
]
INPUTS = [i for i, _ in PAIRS]
OUTPUTS = [json.dumps(o) for _, o in PAIRS]


def test_value_starts_counts_words_that_open_a_value():
    starts = ValueStarts(INPUTS, OUTPUTS, template_words=["Input"])
    assert starts.active
    assert starts.prob("jazz") == pytest.approx(0.75)  # 1 of 1 rows, smoothed
    assert starts.prob("my") == pytest.approx(2.5 / 3)
    assert starts.prob("add") == pytest.approx(0.5 / 4)  # in every input, never a value
    assert starts.prob("zeppelin") == 0.5  # never seen: names are mostly values
    assert starts.prob("input") == 0.0  # the prompt format's own words
    assert not ValueStarts(["a b"], ["free text, no values"]).active


class Words:
    """A word-level toy tokenizer: every word, space+word and punctuation run is one token."""

    def __init__(self):
        self.vocab = {}

    def encode(self, text):
        import re

        return [self.vocab.setdefault(t, len(self.vocab)) for t in re.findall(r' ?\w+|[^\w ]+| ', text)]

    def decode(self, ids):
        inverse = {i: t for t, i in self.vocab.items()}
        return "".join(inverse[i] for i in ids)


def test_the_guess_is_the_first_unused_likely_word_of_the_prompt():
    words = Words()
    guesser = NextValueCopy(ValueStarts(INPUTS, OUTPUTS), words.encode, words.decode)
    guesser.start(words.encode("add zeppelin to my road trip"))
    token, p = guesser.guess('{"intent": "AddToList", "slots": {"music": "')
    assert words.decode([token]) == "zeppelin" and p == 0.5  # unseen, and "add" never starts a value
    token, _ = guesser.guess('{"intent": "AddToList", "slots": {"music": "zeppelin", "owner": "')
    assert words.decode([token]) == "my"  # "to" is skipped: it never starts one
    token, _ = guesser.guess('..."music": "zeppelin", "owner": "my", "list": "')
    assert words.decode([token]) == "road"
    assert guesser.guess('{"intent": "AddToList", "slots": {"music": "zep') is None  # not at a value opening
    assert guesser.guess('{"intent": "AddToList"') is None


def test_the_drafter_drafts_a_value_start_only_when_asked():
    tokenizer = make_tiny_tokenizer([i for i in INPUTS] + OUTPUTS + ["add zeppelin to my road trip"] * 3)
    index = build_corpus_index(tokenizer, OUTPUTS * 3, INPUTS * 3)
    assert index.value_starts.active
    prompt = tokenizer("Input: add zeppelin to my road trip\nOutput: ")["input_ids"]
    answer = tokenizer('{"music": "')["input_ids"]  # a first value: no earlier `": "` for the context index to continue
    drafts = {}
    for on in (True, False):
        drafter = tasc_drafter(tokenizer, index, SpecConfig(value_starts=on, neighbours=0))
        drafter.start(prompt)
        drafter.update(answer, 0)
        drafts[on] = drafter.propose(8)
    expected = next_value_copy_for(tokenizer, index.value_starts).encode("zeppelin to my")[0]
    assert drafts[True].tokens[:1] == [expected] and drafts[True].sources[0] == "context"
    assert drafts[False].tokens[:1] != [expected]  # the corpus alone offers jazz, blues or rock


def test_keys_whose_values_are_labels_get_no_guess():
    """An intent is a label, never a prompt word: the guesser stays silent there and still guesses slot values."""
    starts = ValueStarts(INPUTS, OUTPUTS)
    assert starts.key_rate("intent") < 0.3 and starts.key_rate("music") > 0.7
    assert starts.key_rate("never-seen") == 1.0  # a key the corpus lacks: no evidence against copying
    words = Words()
    guesser = NextValueCopy(starts, words.encode, words.decode)
    guesser.start(words.encode("add zeppelin to my road trip"))
    assert guesser.guess('{"intent": "') is None
    token, _ = guesser.guess('{"intent": "AddToList", "slots": {"music": "')
    assert words.decode([token]) == "zeppelin"


def test_the_next_key_is_the_one_the_next_unused_word_starts_in_the_corpus():
    words = Words()
    guesser = NextValueCopy(ValueStarts(INPUTS, OUTPUTS), words.encode, words.decode)
    guesser.start(words.encode("add jazz to my party"))
    token, p = guesser.guess_key('{"intent": "AddToList", "slots": {"')
    assert words.decode([token]) == "music" and 0 < p < 1  # "jazz" started a "music" value
    token, _ = guesser.guess_key('{"intent": "AddToList", "slots": {"music": "jazz", "')
    assert words.decode([token]) == "owner"  # "my" comes next, and "my" fills "owner"
    guesser.start(words.encode("add zeppelin to the mix"))
    assert guesser.guess_key('{"intent": "AddToList", "slots": {"') is None  # no value ever began with "zeppelin"
    assert guesser.guess_key('{"intent": "AddToList", "slots": {"music": "') is None  # a value opening, not a key


def test_the_drafter_takes_a_key_guess_only_where_the_corpus_continues_with_it():
    tokenizer = make_tiny_tokenizer(INPUTS + OUTPUTS + ["add jazz to my party"] * 3)
    index = build_corpus_index(tokenizer, OUTPUTS * 3, INPUTS * 3)
    drafter = tasc_drafter(tokenizer, index, SpecConfig(neighbours=0, history=0))
    drafter.start(tokenizer("Input: add jazz to my party\nOutput: ")["input_ids"])
    opener = tokenizer('{"')["input_ids"]
    at_start = drafter.corpus.walk(drafter.corpus.start_state(), opener)
    assert drafter.values.guess_key('{"') is not None  # the guesser alone would say "music" here ...
    assert drafter._key_guess(tuple(opener), at_start) is None  # ... but every corpus answer starts with "intent"
    state = drafter.corpus.walk(drafter.corpus.start_state(), tokenizer('{"intent": "AddToList", "slots": {"')["input_ids"])
    drafter._answer_text = '{"intent": "AddToList", "slots": {'
    key = drafter._key_guess(tuple(tokenizer('"')["input_ids"]), state)
    assert key is not None and tokenizer.decode([key.token]).startswith("mus")
