"""Copy drafts across tokenisations: continue a prompt word in the answer's own spelling.

The context index matches token ids, so it cannot follow a copy whose tokens differ between prompt
and answer. That happens at every JSON value: the prompt says ` digging now` (a leading space, one
token for the word), the answer writes `"dig` + `ging now` after a quote. Once the answer has begun
a word, this index finds that text at a word start in the prompt and drafts the prompt's next
characters as the answer's tokenizer would cut them (`ging`, ` now`), without knowing token ids.

    >>> copier = SpellingCopy(encode, decode)   # the answer tokenizer's
    >>> copier.start(prompt_ids)                # "... add digging now to my playlist ..."
    >>> copier.continuation(answer_tail_ids)    # answer ends '"entity_name": "dig' -> (['ging', ' now', ...], 1)
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Sequence

from tasc.core.tokenizers import text_codec

WORD_STARTERS = " \t\n\"'([{:,;=/"  # a word starts after one of these (or at the start of the text)
# The JSON string value the text ends inside: its key and its text so far (no quote or escape in either).
VALUE_OPENING = re.compile(r'"([^"\\]{1,64})"\s*:\s*"([^"\\]*)$')
VALUE_TEXT = re.compile(r'"\s*:\s*"([^"\\]*)"')  # the text of every closed JSON string value
WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits, as `tasc.spec.value_copy` splits words
MAX_SUFFIX_CHARS = 32  # longest answer suffix looked up in the prompt
WINDOW_CHARS = 40  # prompt characters after the match that are tokenised as the continuation


class SpellingCopy:
    """Continuations of the answer's last word(s) from the prompt text, in the answer's tokens.

    Args:
        encode: text -> token ids, with character offsets (a transformers fast tokenizer's
            `__call__` with `return_offsets_mapping`), wrapped as `encode(text) -> (ids, offsets)`.
        decode: token ids -> text.
        special_ids: ids that separate prompt segments (chat-template markers); copies never cross them.
        min_chars: shortest answer suffix looked up (one letter matches too many words).
        copies_key: whether a JSON key's values are copies of the input (the corpus's `ValueStarts.key_rate`);
            None: any value whose text the prompt has is taken for a copy, and openings are not judged.
    """

    def __init__(self, encode: Callable[[str], tuple[list[int], list[tuple[int, int]]]],
                 decode: Callable[[Sequence[int]], str], special_ids: Sequence[int] = (), min_chars: int = 2,
                 copies_key: Callable[[str], bool] | None = None) -> None:
        self.encode = encode
        self.copies_key = copies_key
        self.decode = decode
        self.special = set(special_ids)
        self.min_chars = min_chars
        self.prompt = ""
        self._memo: dict[tuple[int, ...], tuple[list[int], int]] = {}
        self._values: dict[tuple[int, ...], str | None] = {}

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Take the prompt's text; segments between special tokens are joined by newlines, which copies stop at."""
        segments: list[list[int]] = []
        current: list[int] = []
        for token in prompt_ids:
            if token in self.special:
                segments.append(current)
                current = []
            else:
                current.append(token)
        segments.append(current)
        self.prompt = "\n" + "\n".join(self.decode(s) for s in segments if s)
        self._memo, self._values = {}, {}

    def continuation(self, tail: Sequence[int]) -> tuple[list[int], int]:
        """Tokens that continue `tail` (the answer's last tokens) as a copy of the prompt ([] when none),
        and how many of the tail's tokens the prompt text matched."""
        key = tuple(tail)
        if key not in self._memo:
            self._memo[key] = self._continue(key)
        return self._memo[key]

    def copied_value(self, tail: Sequence[int]) -> str | None:
        """The text so far of the JSON string value the answer's `tail` is inside ("" at its opening quote), when
        that value is a copy of the prompt: its key copies (`copies_key`) and the prompt has the text at a word start."""
        key = tuple(tail)
        if key not in self._values:
            self._values[key] = self._copied_value(self.decode(key))
        return self._values[key]

    def _copied_value(self, text: str) -> str | None:
        opened = VALUE_OPENING.search(text)
        if opened is None or (self.copies_key is not None and not self.copies_key(opened.group(1))):
            return None
        value = opened.group(2)
        if "\ufffd" in value or (value and self._find_at_word_start(value) < 0):
            return None
        if not value and self.copies_key is None:
            return None  # without the corpus's word on this key, an opening may be a label's (an intent)
        return value

    def keeps_copy(self, tail: Sequence[int], token: int, answer_text: str = "") -> bool:
        """Whether `token` after `tail` keeps a value copied from the prompt a copy (or closes it).

        In slot filling a value is a span of the input. Once the answer has opened such a value, a guess
        whose text the prompt does not have there is almost always wrong: another corpus row's value
        (`"classical` -> ` feast` where the prompt says `classical relaxations`; `"music_item": "` -> `track`
        in a request for an album), or, at an opening, a prompt word that `answer_text` (the answer so far)
        has already copied into a value as often as the prompt has it (input spans do not overlap). True
        wherever the rule does not apply: outside such a value, or for a token that is not whole text.
        """
        value = self.copied_value(tail)
        if value is None:
            return True
        piece = self.decode([token])
        body = piece.split('"', 1)[0]  # the text up to a closing quote
        if value == "":
            body = body.lstrip()  # a value's first word: the prompt has it after a space
            if body and answer_text and "\ufffd" not in piece and not self._unused_word_starts(body, answer_text):
                return False
        return not body or "\ufffd" in piece or self._find_at_word_start(value + body) >= 0

    def _unused_word_starts(self, start: str, answer_text: str) -> bool:
        """Whether some prompt word starting with `start` occurs more often in the prompt than in the answer's values."""
        word = start.split()[0].lower()
        in_prompt = Counter(w for w in WORD.findall(self.prompt.lower()) if w.startswith(word))
        in_values = Counter(w for v in VALUE_TEXT.findall(answer_text.lower()) for w in WORD.findall(v) if w.startswith(word))
        return any(n > in_values[w] for w, n in in_prompt.items())

    def _continue(self, tail: tuple[int, ...]) -> tuple[list[int], int]:
        text = self.decode(tail)[-MAX_SUFFIX_CHARS:]
        # Longest first: every suffix that starts a word in the answer, looked up at a word start in the prompt.
        for i in range(len(text)):
            if not (i == 0 or text[i - 1] in WORD_STARTERS) or text[i] in WORD_STARTERS:
                continue
            suffix = text[i:]
            if len(suffix) < self.min_chars or "\ufffd" in suffix:
                continue
            at = self._find_at_word_start(suffix)
            if at < 0:
                continue
            rest = self.prompt[at + len(suffix) : at + len(suffix) + WINDOW_CHARS].split("\n", 1)[0]
            if not rest:
                continue
            ids, offsets = self.encode(suffix + rest)
            k = next((j for j, (_, end) in enumerate(offsets) if end >= len(suffix)), None)
            if k is None or offsets[k][1] != len(suffix) or list(tail[-(k + 1):]) != ids[: k + 1]:
                continue  # the answer spelt this suffix otherwise, so its continuation may be cut otherwise too
            cut = at + len(suffix) + len(rest) < len(self.prompt) and self.prompt[at + len(suffix) + len(rest)] != "\n"
            return (ids[k + 1 : -1] if cut else ids[k + 1 :]), k + 1  # the window may end inside a token
        return [], 0

    def _find_at_word_start(self, suffix: str) -> int:
        """Start of the last occurrence of `suffix` at a word start in the prompt, or -1."""
        end = len(self.prompt)
        while True:
            at = self.prompt.rfind(suffix, 0, end)
            if at <= 0:
                return -1  # the prompt text starts with the "\n" added in `start`
            if self.prompt[at - 1] in WORD_STARTERS:
                return at
            end = at + len(suffix) - 1


def spelling_copy_for(tokenizer: object, copies_key: Callable[[str], bool] | None = None) -> SpellingCopy:
    """A `SpellingCopy` over a transformers fast tokenizer (the answer tokenizer)."""
    encode, decode = text_codec(tokenizer)
    return SpellingCopy(encode, decode, getattr(tokenizer, "all_special_ids", ()), copies_key=copies_key)
