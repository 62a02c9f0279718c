"""The fast-tokenizer plumbing both pipelines share: the backend `tokenizers.Tokenizer`, and a
tokenizer without the strings TASC-ft added (prompts keep the base vocabulary)."""

from __future__ import annotations

import json
from typing import Any

from tasc.core.errors import ModelError


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
