"""N-gram mining on hand-made corpora with known answers, driven by a pure-Python character segmenter."""

import threading
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasc.core.errors import Cancelled
from tasc.ft.ngrams import (
    MiningConfig,
    SpanIndex,
    classify,
    entity_words,
    free_occurrences,
    holds_an_entity,
    joins_two_fields,
    measure,
    mine,
    splits_a_value,
)


class CharSegmenter:
    """Characters are the base tokens; added strings are matched leftmost-longest, like tokenizers' added tokens."""

    def __init__(self, alphabet: str, refuse: tuple[str, ...] = ()) -> None:
        self.alphabet = sorted(set(alphabet))
        self.ids = {c: i for i, c in enumerate(self.alphabet)}
        self.base_size = len(self.alphabet)
        self.added: list[str] = []
        self.refuse = refuse

    def set_added(self, texts):
        refused = [t for t in texts if t in self.refuse]
        self.added = [t for t in texts if t not in self.refuse]
        return refused

    def encode(self, texts):
        out = []
        for text in texts:
            ids, i = [], 0
            while i < len(text):
                match = max((a for a in self.added if text.startswith(a, i)), key=len, default=None)
                if match:
                    ids.append(self.base_size + self.added.index(match))
                    i += len(match)
                else:
                    ids.append(self.ids[text[i]])
                    i += 1
            out.append(ids)
        return out

    def piece(self, token_id):
        if token_id >= self.base_size:
            return self.added[token_id - self.base_size].encode()
        return self.alphabet[token_id].encode()

    def base_length(self, text):
        return len(text)

    def acceptable(self, text):
        return True


def run(texts, alphabet=None, heldout=None, **config):
    seg = CharSegmenter(alphabet or "".join(texts) + "".join(heldout or []))
    return mine(texts, seg, MiningConfig(**config), heldout=heldout), seg


# --- candidate kinds ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, before, after, kind", [
    ('", "', "x", "y", "punct"),
    ('"}}', "", "", "punct"),
    (" is a", "x", " ", "word"),
    ("Alimentum", "", " ", "word"),
    (" family-friendly", "a", ".", "word"),
    ("Music", "y", '"', "span"),  # starts inside "PlayMusic"
    (" fam", "a", "i", "span"),  # ends inside a word
    ('{"intent": "', "", "P", "span"),  # letters and punctuation
])
def test_classify(text, before, after, kind):
    assert classify(text, before, after) == kind


# --- span counting -----------------------------------------------------------------------------

def brute_counts(seqs, max_span, min_count):
    counts = Counter(tuple(s[i:i + n]) for s in seqs for n in range(2, max_span + 1) for i in range(len(s) - n + 1))
    return {span: c for span, c in counts.items() if c >= min_count}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=6), st.integers(2, 5), st.integers(1, 3))
def test_span_index_agrees_with_brute_force(seqs, max_span, min_count):
    index = SpanIndex(seqs, np.ones(4, dtype=np.int64), max_span, max_base=99, min_count=min_count)
    ranked = list(index.ranked())
    expected = brute_counts(seqs, max_span, min_count)
    assert {span: score // (len(span) - 1) for score, span, _ in ranked} == expected
    assert [score for score, _, _ in ranked] == sorted((score for score, _, _ in ranked), reverse=True)
    for _, span, first in ranked:
        pos = index.occurrences(span)
        assert len(pos) == expected[span] and first in pos.tolist()
        assert all(index.flat[p:p + len(span)].tolist() == list(span) for p in pos)


def test_span_index_respects_barriers_and_base_length():
    unit_len = np.array([1, 1, 3, 0])  # token 2 spells 3 base tokens; token 3 is special (a barrier)
    index = SpanIndex([[0, 1, 3, 0, 1], [0, 1, 2]], unit_len, max_span=3, max_base=4, min_count=1)
    spans = {span for _, span, _ in index.ranked()}
    assert (0, 1) in spans and (1, 2) in spans  # 1 + 3 base tokens
    assert (0, 1, 2) not in spans  # 5 base tokens > max_base
    assert not any(3 in span for span in spans)
    assert not any(span[-1] == 0 and len(span) == 2 and span[0] == 1 for span in spans)  # no span across texts


def test_free_occurrences_skips_taken_and_self_overlaps():
    taken = np.zeros(20, dtype=bool)
    assert free_occurrences(np.array([0, 1, 2, 3]), 2, taken).tolist() == [0, 2]  # "a a" in "a a a a a"
    taken[6] = True
    assert free_occurrences(np.array([5, 7, 10]), 2, taken).tolist() == [7, 10]
    assert free_occurrences(np.array([], dtype=np.int64), 2, taken).tolist() == []


# --- mining ------------------------------------------------------------------------------------

def test_longest_frequent_span_wins():
    result, _ = run(["abcd", "abcd", "abce"], budget=1, rounds=1, min_count=2)
    [c] = result.tokens
    assert (c.text, c.count, c.tokens, c.base_tokens, c.saved, c.round) == ("abc", 3, 3, 3, 6, 1)


def test_overlapping_candidates_are_not_both_added():
    # "xy" and "yz" each save 1 token per text, but only after "xyz" is added they save nothing.
    result, seg = run(["xyz"] * 10, budget=3, rounds=1)
    assert result.texts == ["xyz"]
    assert seg.encode(["xyz"]) == [[seg.base_size]]


def test_savings_are_counted_after_earlier_picks():
    # "ab" is in both kinds of text; once "abab" is picked, "ab" only saves on the "abx" texts.
    texts = ["abab"] * 10 + ["abw", "abx", "aby", "abz"]
    result, _ = run(texts, budget=2, rounds=1)
    first, second = result.tokens
    assert (first.text, first.saved) == ("abab", 30)
    assert (second.text, second.count, second.saved) == ("ab", 4, 4)


def test_rounds_grow_spans_and_drop_unused_picks():
    # max_span 2: round 1 can only pick pairs; round 2 joins them into the whole text.
    result, seg = run(["abcd"] * 6, budget=3, rounds=2, max_span=2)
    assert result.texts == ["abcd"] and seg.encode(["abcd"]) == [[seg.base_size]]
    assert result.dropped and all(d in "abcd" for d in result.dropped)  # earlier picks, unused once "abcd" exists
    reductions = [r["reduction"] for r in result.rounds]
    assert reductions == sorted(set(reductions)) and result.rounds[-1]["tokens_per_output"] == 1


def test_min_count_and_length_limits():
    texts = ["hello world"] * 2 + ["qq"] * 5
    result, _ = run(texts, budget=10, rounds=1, min_count=3)
    assert result.texts == ["qq"]
    result, _ = run(["abcdefgh"] * 5, budget=1, rounds=1, max_chars=3)
    assert len(result.texts[0]) <= 3
    result, _ = run(["abcdefgh"] * 5, budget=1, rounds=1, max_base_tokens=4)
    assert len(result.texts[0]) == 4


def test_kinds_restrict_candidates():
    texts = ['"}}', "hello", '"}}', "hello", '"}}', "hello"]
    result, _ = run(texts, budget=5, rounds=1, kinds=("punct",))
    assert result.texts == ['"}}']
    assert result.tokens[0].kind == "punct"


@pytest.mark.parametrize("text, splits", [
    ('", "artist": "', False), ('object_name": "', False), ('{"intent": "GetWeather", "slots": {"', False),
    ('"}}', False), ('", "service": "youtube"}}', False), ("gastropub", False), (" of the", False),
    ('", "artist": "j', True), ('a"}}', True), ('object_name": "the', True), (' from now"}}', True), ('5"}}', True),
])
def test_splits_a_value(text, splits):
    assert splits_a_value(text) is splits


def test_mined_tokens_keep_json_values_copyable():
    # Every answer ends its value with 'a"}}' and starts it with '"j': frequent, but fused they
    # would change how a value copied from the input is spelled.
    texts = ['{"artist": "jazza"}}', '{"artist": "jimma"}}', '{"artist": "jolla"}}'] * 6
    result, _ = run(texts, budget=20, rounds=3)
    assert result.texts and not any(splits_a_value(t) for t in result.texts)
    assert '{"artist": "' in result.texts or any('"artist": "' in t for t in result.texts)
    loose, _ = run(texts, budget=20, rounds=3, whole_values=False)
    assert any(splits_a_value(t) for t in loose.texts)  # the test can fail: without the rule they are picked


@pytest.mark.parametrize("text, joins", [
    ('", "artist": "', False), ('{"intent": "GetWeather", "slots": {"', False), ('", "service": "youtube"}}', False),
    ('object_name": "', False), (" of the", False), ('"}}', False),
    ('music_item": "artist", "artist": "', True), ('", "playlist_owner": "my", "playlist": "', True),
    ('{"intent": "GetWeather", "slots": {"city": "', True), ('{"a":"x","b":"', True),
])
def test_joins_two_fields(text, joins):
    assert joins_two_fields(text) is joins


def test_mined_tokens_hold_one_json_field_at_most():
    # Every answer has the same two fields: fused, "a" and "b" would become one decision.
    texts = [f'{{"a": "{v}", "b": "{w}"}}' for v in ("xx", "yy", "zz") for w in ("pp", "qq")] * 5
    result, _ = run(texts, budget=30, rounds=4, max_base_tokens=24)
    assert result.texts and not any(joins_two_fields(t) for t in result.texts)
    loose, _ = run(texts, budget=30, rounds=4, max_base_tokens=24, one_field=False)
    assert any(joins_two_fields(t) for t in loose.texts)  # the test can fail: without the rule they are picked


def test_refused_strings_are_dropped_and_not_mined_again():
    seg = CharSegmenter("xyz", refuse=("xyz",))
    result = mine(["xyz"] * 10, seg, MiningConfig(budget=1, rounds=2))
    assert "xyz" in result.dropped and "xyz" not in result.texts
    assert len(result.texts) == 1  # the budget went to the next best string


def test_rounds_report_compression_on_corpus_and_heldout():
    seen = []
    seg = CharSegmenter("abcdxyz")
    result = mine(["abcd"] * 8, seg, MiningConfig(budget=1, rounds=1), heldout=["abcd", "xyz"], on_round=seen.append)
    assert seen == result.rounds and [r["round"] for r in seen] == [0, 1]
    base, last = result.rounds
    assert (base["added"], base["compression"], base["reduction"]) == (0, 1.0, 0.0)
    assert last["added"] == 1 and last["tokens_per_output"] == 1 and last["compression"] == 4.0
    assert last["heldout_tokens"] == 1 + 3 and last["heldout_compression"] == 7 / 4
    assert result.tokens[0].uses == 8


def test_budget_is_respected_over_rounds():
    texts = [f"{a}{b}{c}" for a in "abcdef" for b in "ghijkl" for c in "mn"] * 3
    result, _ = run(texts, budget=7, rounds=3, min_count=2)
    assert len(result.texts) == 7 and len(set(result.texts)) == 7
    assert all(c.saved == c.count * (c.tokens - 1) for c in result.tokens)


def test_cancel_stops_between_rounds():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        mine(["abab"] * 5, CharSegmenter("ab"), MiningConfig(budget=2), cancel=cancel)


def test_nothing_to_mine_and_bad_config():
    result, _ = run(["abc", "xyz"], budget=5)  # nothing repeats
    assert result.texts == [] and len(result.rounds) == 1
    with pytest.raises(ValueError, match="budget"):
        MiningConfig(budget=0).check()
    with pytest.raises(ValueError, match="max_span"):
        MiningConfig(max_span=1).check()
    with pytest.raises(ValueError, match="kinds"):
        MiningConfig(kinds=("words",)).check()
    with pytest.raises(ValueError, match="at least one text"):
        mine([], CharSegmenter("a"))


def test_measure():
    m = measure([[1, 2], [3]], [4, 2])
    assert m == {"tokens": 3, "tokens_per_output": 1.5, "base_tokens_per_output": 3.0, "compression": 2.0, "reduction": 0.5}


def test_holds_an_entity():
    words = entity_words(["The Cambridge Blue", "Browns Cambridge", "Café Brazil"])
    assert words == {"Cambridge", "Blue", "Browns", "Café", "Brazil"}  # articles identify nothing
    assert holds_an_entity("Browns Cambridge", words) and holds_an_entity(" near Café Brazil", words)
    assert holds_an_entity("The Cambridge", words) and not holds_an_entity(" is a coffee shop", words)
    assert not holds_an_entity("The ", words) and not holds_an_entity("Browns", frozenset())
    assert holds_an_entity("The Cambr", words) and holds_an_entity(" near Bra", words)  # a name cut short
    assert holds_an_entity("idge is a", words) and holds_an_entity(" is a Ca", frozenset({"Cambridge"}))
    assert not holds_an_entity(" near the", words) and not holds_an_entity(" Blueberry", words - {"Blue"})


def test_mined_tokens_never_hold_a_name():
    # Every answer names one of two places near one landmark: frequent, but a name fused into a token is
    # written whole, also for a name the model has never seen.
    texts = [f"{n} is a pub near Kings Arms." for n in ("Zed Hall", "Yew Hall")] * 8
    result, _ = run(texts, budget=30, rounds=4, max_base_tokens=24, entities=("Zed Hall", "Yew Hall", "Kings Arms"))
    names = entity_words(["Zed Hall", "Yew Hall", "Kings Arms"])
    assert result.texts and not any(holds_an_entity(t, names) for t in result.texts)
    assert " is a pub near" in result.texts or any(" is a pub" in t for t in result.texts)
    loose, _ = run(texts, budget=30, rounds=4, max_base_tokens=24)
    assert any(holds_an_entity(t, names) for t in loose.texts)  # the test can fail: without the rule they are picked


def test_entity_names_come_from_attribute_inputs(data_dir):
    from tasc.core.corpus import entity_names, load_corpus

    names = entity_names(load_corpus(data_dir / "e2e" / "dev.jsonl"))
    assert "The Cambridge Blue" in names and "Burger King" in names and 20 <= len(names) <= 60, names
    assert entity_names(load_corpus(data_dir / "snips" / "valid.jsonl")) == []
