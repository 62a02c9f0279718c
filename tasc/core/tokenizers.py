"""The fast-tokenizer plumbing both pipelines share: the backend `tokenizers.Tokenizer`, and a
tokenizer without the strings TASC-ft added (prompts keep the base vocabulary)."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from tasc.core.errors import ModelError

Encode = Callable[[str], tuple[list[int], list[tuple[int, int]]]]  # text -> (ids, character offsets)
Decode = Callable[[Sequence[int]], str]  # ids -> text, special tokens kept


def backend(tokenizer: Any) -> Any:
    """The `tokenizers.Tokenizer` of a transformers fast tokenizer (or the object itself)."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    found = getattr(tokenizer, "backend_tokenizer", None)
    if found is None:
        raise ModelError(f"{type(tokenizer).__name__} is not a fast tokenizer: vocabulary enrichment needs one")
    return found


def base_tokenizer(tokenizer: Any, base_vocab_size: int) -> Any:
    """The `tokenizers.Tokenizer` of an enriched tokenizer without its added strings (ids >= base_vocab_size)."""
    from tokenizers import Tokenizer

    spec = json.loads(backend(tokenizer).to_str())
    spec["added_tokens"] = [t for t in spec.get("added_tokens", []) if t["id"] < base_vocab_size]
    return Tokenizer.from_str(json.dumps(spec))


def text_codec(tokenizer: Any) -> tuple[Encode, Decode]:
    """Encode (ids with character offsets, no special tokens added) and decode (special tokens kept) for a tokenizer.

    The drafters call these thousands of times per answer on a few tokens each, where transformers'
    per-call argument handling costs 4-5x the Rust tokenizer's work; so a fast tokenizer whose
    transformers wrapper adds nothing (no truncation, padding or clean-up of spaces) is called on its
    backend directly, with the same output. Any other tokenizer goes through transformers.
    """
    from tokenizers import Tokenizer

    tok = getattr(tokenizer, "backend_tokenizer", None)
    if (isinstance(tok, Tokenizer) and tok.truncation is None and tok.padding is None
            and not getattr(tokenizer, "clean_up_tokenization_spaces", False)):
        def encode(text: str) -> tuple[list[int], list[tuple[int, int]]]:
            enc = tok.encode(text, add_special_tokens=False)
            return enc.ids, enc.offsets

        def decode(ids: Sequence[int]) -> str:
            return tok.decode(list(ids), skip_special_tokens=False)

        return encode, decode

    def slow_encode(text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    def slow_decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=False)

    return slow_encode, slow_decode
