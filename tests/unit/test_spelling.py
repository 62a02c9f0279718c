"""The spelling copy: prompt words continued in the answer's own tokenisation."""

import pytest

from tasc.spec.spelling import SpellingCopy

# A toy vocabulary where the prompt and the answer spell the same words with different tokens.
VOCAB = ["<s>", " add", " digging", " now", " to", " my", " playlist", '"', "dig", "ging", "d", "i", "g", "n", "o", "w",
         " ", "t", "m", "y", "p", "l", "a", "s", "e", "ad", "{", ":", "x"]
SEP = 0  # a special token: copies never cross it


def encode(text):
    """Greedy longest match over VOCAB, with character offsets (like a fast tokenizer's)."""
    ids, offsets, i = [], [], 0
    pieces = sorted(((t, j) for j, t in enumerate(VOCAB) if j != SEP), key=lambda p: -len(p[0]))
    while i < len(text):
        token, j = next((t, j) for t, j in pieces if text.startswith(t, i))
        ids.append(j)
        offsets.append((i, i + len(token)))
        i += len(token)
    return ids, offsets


def decode(ids):
    return "".join(VOCAB[i] for i in ids if i != SEP)


def ids_of(*tokens):
    return [VOCAB.index(t) for t in tokens]


@pytest.fixture
def copier():
    c = SpellingCopy(encode, decode, special_ids=[SEP])
    c.start([SEP] + ids_of(" add", " digging", " now", " to", " my", " playlist") + [SEP])
    return c


def test_a_word_begun_after_a_quote_continues_as_the_answer_spells_it(copier):
    following, matched = copier.continuation(ids_of("{", '"', "dig"))
    # the prompt's " digging now to my playlist", cut by the answer's tokenizer after "dig"
    assert decode(following) == "ging now to my playlist" and following[:2] == ids_of("ging", " now")
    assert matched == 1


def test_no_copy_without_a_match_a_one_letter_word_or_another_spelling(copier):
    assert copier.continuation(ids_of('"', "x", "x")) == ([], 0)  # "xx" is not in the prompt
    assert copier.continuation(ids_of('"', "d")) == ([], 0)  # one letter matches too many words
    # "dig" spelt d-i-g: the answer's tokenizer would not cut it so, so its continuation is unknown
    assert copier.continuation(ids_of('"', "d", "i", "g")) == ([], 0)


def test_copies_stop_at_special_tokens():
    c = SpellingCopy(encode, decode, special_ids=[SEP], min_chars=2)
    c.start(ids_of(" add", " digging") + [SEP] + ids_of(" now"))
    following, _ = c.continuation(ids_of('"', "dig"))
    assert decode(following) == "ging"


def test_the_drafter_drafts_the_copy_and_reports_it_as_context(copier):
    from tasc.spec.drafts import CONTEXT, SpecConfig, TascDrafter

    drafter = TascDrafter(None, SpecConfig(use_corpus=False, neighbours=0), spelling=copier)
    prompt = [SEP] + ids_of(" add", " digging", " now", " to", " my", " playlist") + [SEP]
    drafter.start(prompt)
    assert drafter.spelling is copier
    drafter.update(ids_of("{", '"', "dig"), 0)
    draft = drafter.propose(8)
    assert draft.tokens[:2] == ids_of("ging", " now") and set(draft.sources) == {CONTEXT}
    off = TascDrafter(None, SpecConfig(use_corpus=False, neighbours=0, spelling=False), spelling=copier)
    off.start(prompt)
    off.update(ids_of("{", '"', "dig"), 0)
    assert off.propose(8).tokens[:1] != ids_of("ging")
