"""Values copied from the prompt stay copies: guesses the prompt does not continue are dropped."""

import pytest

from tasc.spec.ngram_index import CorpusIndex
from tasc.spec.spelling import SpellingCopy

# Pieces a toy tokenizer cuts text into (longest first), then single characters.
PIECES = ['": "', '"', "{", "}", ", ", "playlist", "intent", "music_item", "AddToPlaylist", " classical", "classical",
          " relaxations", " feast", " album", "album", "track", " add", " this", " to", " my", "my", " the", "<s>"]
VOCAB = PIECES + [chr(c) for c in range(32, 127) if chr(c) not in PIECES]
SEP = VOCAB.index("<s>")


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


def ids(text):
    return encode(text)[0]


PROMPT = [SEP] + ids(" add this album to my classical relaxations") + [SEP]


def copier(copies_key=lambda key: key != "intent"):
    c = SpellingCopy(encode, decode, special_ids=[SEP], copies_key=copies_key)
    c.start(PROMPT)
    return c


@pytest.mark.parametrize("answer, token, keeps", [
    ('{"playlist": "classical', " relaxations", True),  # the prompt's next word
    ('{"playlist": "classical', " feast", False),  # another row's value: not in this prompt
    ('{"playlist": "classical', '"', True),  # closing the value is always a copy's choice
    ('{"playlist": "classical relaxations', "}", False),  # text after the copy that the prompt lacks
    ('{"music_item": "', "album", True),  # a value opening at a prompt word
    ('{"music_item": "', "track", False),  # ... at a word the prompt does not have
    ('{"intent": "', "AddToPlaylist", True),  # a label key: not judged
    ('{"playlist": "feast', " the", True),  # a value that is not a copy: not judged
    ('{"play', "track", True),  # a key, not a value
])
def test_keeps_copy(answer, token, keeps):
    assert copier().keeps_copy(ids(answer), VOCAB.index(token)) is keeps


def test_without_key_statistics_openings_are_not_judged():
    c = copier(copies_key=None)
    assert c.keeps_copy(ids('{"music_item": "'), VOCAB.index("track"))
    assert not c.keeps_copy(ids('{"playlist": "classical'), VOCAB.index(" feast"))


def test_the_drafter_follows_the_prompt_where_the_corpus_would_write_another_value():
    from tasc.spec.drafts import SpecConfig, TascDrafter

    corpus = [ids('{"playlist": "classical feast"}') for _ in range(5)]  # what answers usually say
    answer = ids('{"playlist": "classical')

    def first_draft_token(copy_values):
        drafter = TascDrafter(CorpusIndex(corpus), SpecConfig(neighbours=0, history=0, copy_values=copy_values),
                              spelling=copier())
        drafter.start(PROMPT)
        drafter.update(answer, 0)
        return decode(drafter.propose(8).tokens[:1])

    assert first_draft_token(copy_values=False) == " feast"
    assert first_draft_token(copy_values=True) == " relaxations"


def test_an_opening_skips_a_prompt_word_the_answer_already_copied():
    answer = '{"playlist_owner": "my", "playlist": "'
    c = copier()
    assert not c.keeps_copy(ids(answer), VOCAB.index("my"), answer_text=answer)  # "my" is the owner already
    assert c.keeps_copy(ids(answer), VOCAB.index("classical"), answer_text=answer)
    assert c.keeps_copy(ids(answer), VOCAB.index("my"))  # without the answer's text, not judged
