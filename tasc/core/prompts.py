"""Prompt formats: how a task input becomes the token ids a model answers after.

The same format is used to fine-tune, evaluate, generate and benchmark, so it is stored with every
model TASC writes (`tasc.json`, see `tasc.core.models`). Answers are always tokenised on their own
(never jointly with the prompt) so that training targets are exactly the token sequences that
decoding produces.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tasc.core.tokenizers import base_tokenizer

DEFAULT_SYSTEM = "Answer the task input with the task output only."


@dataclass(frozen=True)
class PromptFormat:
    """How to turn an input string into a prompt.

    Attributes:
        style: "chat" renders with the tokenizer's chat template; "plain" joins `template` strings.
            "auto" picks "chat" when the tokenizer has a chat template.
        system: system message (chat) or preamble line (plain); None for none.
        template: the user turn; `{input}` is replaced by the task input.
        shots: few-shot (input, output) pairs shown before the real input.
        prompt_vocab_size: when set, prompts are encoded with token ids below it only. An enriched
            model (`tasc.ft.vocab.enrich`) sets it to its base vocabulary: its added strings are answer
            n-grams, and letting them match inside a prompt would cut the user's words in ways the
            model never read (the added "album" turned " album" into " " + "album").
    """

    style: str = "auto"
    system: str | None = DEFAULT_SYSTEM
    template: str = "{input}"
    shots: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    prompt_vocab_size: int | None = None

    def resolved(self, tokenizer: Any) -> "PromptFormat":
        """Return a copy with style "auto" replaced by "chat" or "plain" for this tokenizer."""
        if self.style != "auto":
            return self
        style = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
        return replace(self, style=style)

    def with_shots(self, shots: list[tuple[str, str]]) -> "PromptFormat":
        """Return a copy that shows these (input, output) examples first."""
        return replace(self, shots=tuple((shot_in, shot_out) for shot_in, shot_out in shots))

    def render(self, tokenizer: Any, task_input: str) -> str:
        """Render the prompt text for one input (ends where the answer starts)."""
        fmt = self.resolved(tokenizer)
        if fmt.style == "chat":
            messages = [{"role": "system", "content": fmt.system}] if fmt.system else []
            for shot_in, shot_out in fmt.shots:
                messages.append({"role": "user", "content": fmt.template.format(input=shot_in)})
                messages.append({"role": "assistant", "content": shot_out})
            messages.append({"role": "user", "content": fmt.template.format(input=task_input)})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if fmt.style != "plain":
            raise ValueError(f"unknown prompt style {fmt.style!r}; use 'chat', 'plain' or 'auto'")
        parts = [fmt.system + "\n"] if fmt.system else []
        eos = tokenizer.eos_token or ""
        for shot_in, shot_out in fmt.shots:
            parts.append(f"Input: {fmt.template.format(input=shot_in)}\nOutput: {shot_out}{eos}\n")
        parts.append(f"Input: {fmt.template.format(input=task_input)}\nOutput: ")
        return "".join(parts)

    def prompt_ids(self, tokenizer: Any, task_input: str) -> list[int]:
        """Token ids of the rendered prompt."""
        return self.encode(tokenizer, [self.render(tokenizer, task_input)])[0]

    def encode(self, tokenizer: Any, texts: list[str]) -> list[list[int]]:
        """Token ids of prompt text as prompts are encoded (only ids below `prompt_vocab_size` when set)."""
        if self.prompt_vocab_size is not None and len(tokenizer) > self.prompt_vocab_size:
            encoded = _base_encoder(tokenizer, self.prompt_vocab_size).encode_batch_fast(texts, add_special_tokens=False)
            return [e.ids for e in encoded]
        return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def shared_prefix_ids(self, tokenizer: Any) -> list[int]:
        """The token ids every prompt of this format starts with (system turn, shots, template head).

        Found as the common start of prompts for unlike probe inputs, so a template whose last token
        merges with the input's first (no space, BPE) loses that token from the prefix, never gains a wrong one.
        """
        probes = [self.prompt_ids(tokenizer, text) for text in ("x", "7 Q", "\u00e9t\u00e9 ?")]
        n = 0
        while all(len(p) > n for p in probes) and len({p[n] for p in probes}) == 1:
            n += 1
        return probes[0][:n]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in tasc.json."""
        d = asdict(self)
        d["shots"] = [list(s) for s in self.shots]
        return d

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "PromptFormat":
        """The format a model's tasc.json stores, or the default when it stores none."""
        return cls.from_dict(meta["prompt_format"]) if "prompt_format" in meta else cls()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PromptFormat":
        """Inverse of `to_dict`; unknown keys are an error so typos do not pass silently."""
        known = {"style", "system", "template", "shots", "prompt_vocab_size"}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown prompt format keys: {sorted(extra)}")
        shots = tuple(tuple(s) for s in d.get("shots", ()))
        return cls(d.get("style", "auto"), d.get("system", DEFAULT_SYSTEM), d.get("template", "{input}"), shots,
                   d.get("prompt_vocab_size"))


_BASE_ENCODERS: "weakref.WeakKeyDictionary[Any, tuple[int, Any]]" = weakref.WeakKeyDictionary()


def _base_encoder(tokenizer: Any, vocab_size: int) -> Any:
    """The tokenizer's `tokenizers.Tokenizer` without its added strings from `vocab_size` on (cached per tokenizer)."""
    cached = _BASE_ENCODERS.get(tokenizer)
    if cached is None or cached[0] != vocab_size:
        cached = _BASE_ENCODERS[tokenizer] = (vocab_size, base_tokenizer(tokenizer, vocab_size))
    return cached[1]


def answer_ids(tokenizer: Any, output: str, add_eos: bool = True) -> list[int]:
    """Token ids of an answer as the model should write it, ending with EOS."""
    ids = tokenizer(output, add_special_tokens=False)["input_ids"]
    if add_eos and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids
