"""Guess which prompt word a JSON answer copies next, where no n-gram can: at the start of a value.

Slot-filling answers copy words of the input into string values, in the input's order. After a key
(`"entity_name": "`) the corpus knows the key but not this prompt's value, the context index has no
token match yet, and the spelling copy (`tasc.spec.spelling`) needs the value's first letters. So the first
token of every value was a pass of its own. This source guesses it: among the prompt's words not yet
used by the answer, the first (in prompt order) that often starts a value in the corpus answers, or a
word the corpus never saw (names and titles mostly are values). Keys whose corpus values are labels
rather than copies (`"intent": "`) get no guess: there a prompt word cost SNIPS answers their first pass.
The same order names the next key: where an object's next key begins, the key whose corpus values the
next unused likely word most often starts (`my` -> `playlist_owner`); the drafter takes it only where
the corpus has seen that key continue the answer so far.

    >>> starts = ValueStarts(["add jazz to my list"], ['{"slots": {"music": "jazz", "owner": "my"}}'])
    >>> round(starts.prob("jazz"), 2), round(starts.prob("to"), 2)
    (0.75, 0.25)

For answers without `: "` values (free text) the statistics are empty and the source stays silent.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable, Sequence

from tasc.core.tokenizers import text_codec

WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits; quotes, spaces and "_" separate words
VALUE_START = re.compile(r':\s*"([^\W_]+)', re.UNICODE)  # a JSON string value and its first word
OPENER = re.compile(r':\s*"$')  # the answer ends where a string value begins
KEYED_VALUE = re.compile(r'"([^"\\]{1,64})"\s*:\s*"([^\W_]+)', re.UNICODE)  # a key and its string value's first word
KEY_OPENER = re.compile(r'[{,]\s*"$')  # the answer ends where an object's next key begins
KEY_AT_END = re.compile(r'"([^"\\]{1,64})"\s*:\s*"$')  # the key whose value the answer is about to write
UNSEEN = 0.5  # chance that a word the corpus inputs never had starts a value
MIN_PROB = 0.3  # words less likely than this to start a value are skipped
WINDOW_CHARS = 24  # prompt characters tokenised to find the value's first token


class ValueStarts:
    """How often each input word starts a string value of its row's answer, from the corpus's pairs.

    Args:
        inputs, outputs: the corpus rows.
        template_words: the prompt format's own words (system message, role names): never values.
    """

    def __init__(self, inputs: Iterable[str], outputs: Iterable[str], template_words: Iterable[str] = ()) -> None:
        self.seen: Counter[str] = Counter()
        self.starts: Counter[str] = Counter()
        self.key_values: Counter[str] = Counter()  # string values per key
        self.key_copied: Counter[str] = Counter()  # of those, values whose first word is in the row's input
        self.word_keys: dict[str, Counter[str]] = {}  # input word -> the keys of the values it started
        for text, answer in zip(inputs, outputs, strict=False):
            opened = {m.group(1).lower() for m in VALUE_START.finditer(answer)}
            words = {w.lower() for w in WORD.findall(text)}
            for word in words:
                self.seen[word] += 1
                self.starts[word] += word in opened
            for m in KEYED_VALUE.finditer(answer):
                self.key_values[m.group(1)] += 1
                first = m.group(2).lower()
                if first in words:
                    self.key_copied[m.group(1)] += 1
                    self.word_keys.setdefault(first, Counter())[m.group(1)] += 1
        self.template_words = {w.lower() for w in template_words}
        self.active = sum(self.starts.values()) > 0  # the answers have string values at all

    def key_rate(self, key: str | None) -> float:
        """Smoothed share of `key`'s corpus values that start with a word of their row's input (1.0 for an unknown key)."""
        if key is None or not self.key_values[key]:
            return 1.0
        return (self.key_copied[key] + 0.5) / (self.key_values[key] + 1)

    def prob(self, word: str) -> float:
        """Smoothed share of the corpus rows with `word` in the input whose answer starts a value with it."""
        word = word.lower()
        if word in self.template_words:
            return 0.0
        seen = self.seen[word]
        return UNSEEN if seen == 0 else (self.starts[word] + 0.5) / (seen + 1)


class NextValueCopy:
    """At a value opening, the first answer token of the prompt word most likely to start the value.

    Args:
        starts: the corpus statistics.
        encode: text -> answer token ids (no special tokens).
        decode: token ids -> text.
        special_ids: chat-template markers, dropped from the prompt text.
    """

    def __init__(self, starts: ValueStarts, encode: Callable[[str], list[int]], decode: Callable[[Sequence[int]], str],
                 special_ids: Sequence[int] = ()) -> None:
        self.starts = starts
        self.encode = encode
        self.decode = decode
        self.special = set(special_ids)
        self.prompt = ""
        self.words: list[tuple[int, str, float]] = []  # (character offset, word, chance it starts a value)
        self._first_token: dict[int, int | None] = {}

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Take the prompt's words that may start a value, in order."""
        self.prompt = self.decode([t for t in prompt_ids if t not in self.special])
        self.words = [(m.start(), m.group(), p) for m in WORD.finditer(self.prompt)
                      if (p := self.starts.prob(m.group())) >= MIN_PROB]
        self._first_token = {}

    def guess(self, answer_text: str) -> tuple[int, float] | None:
        """(token, chance the word starts the value) when `answer_text` ends at a value opening, else None.

        Words the answer already wrote are skipped: values follow the input's order, so the first
        unused likely word is the next value's start.
        """
        if not self.words or not OPENER.search(answer_text):
            return None
        key = KEY_AT_END.search(answer_text)
        rate = self.starts.key_rate(key.group(1) if key else None)
        if rate < MIN_PROB:  # this key's values are labels, not copies (an intent)
            return None
        nxt = self._next_word(answer_text)
        if nxt is None:
            return None
        offset, _, p = nxt
        if offset not in self._first_token:
            ids = self.encode(self.prompt[offset : offset + WINDOW_CHARS])
            self._first_token[offset] = ids[0] if ids else None
        token = self._first_token[offset]
        return (token, p) if token is not None else None

    def _next_word(self, answer_text: str) -> tuple[int, str, float] | None:
        """The first prompt word likely to start a value that the answer has not written yet."""
        used = {w.lower() for w in WORD.findall(answer_text)}
        return next(((o, w, p) for o, w, p in self.words if w.lower() not in used), None)

    def guess_key(self, answer_text: str) -> tuple[int, float] | None:
        """(first token of a key, its chance) when `answer_text` ends where an object's next key begins.

        Values follow the input's order, so the next key is the one whose values the next unused likely
        prompt word starts most often in the corpus (`my` -> `playlist_owner`); None for a word no value began with.
        """
        if not self.words or not KEY_OPENER.search(answer_text):
            return None
        nxt = self._next_word(answer_text)
        keys = self.starts.word_keys.get(nxt[1].lower()) if nxt is not None else None
        if not keys:
            return None
        key, n = keys.most_common(1)[0]
        ids = self.encode(key)
        return (ids[0], nxt[2] * (n + 0.5) / (sum(keys.values()) + 1)) if ids else None  # type: ignore[index]


def next_value_copy_for(tokenizer: object, starts: ValueStarts) -> NextValueCopy:
    """A `NextValueCopy` over a transformers tokenizer (the answer tokenizer)."""
    encode_with_offsets, decode = text_codec(tokenizer)
    return NextValueCopy(starts, lambda text: encode_with_offsets(text)[0], decode, getattr(tokenizer, "all_special_ids", ()))
