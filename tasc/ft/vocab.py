"""Enriched vocabularies (TASC-ft): add mined strings to a tokenizer, grow and initialise the embeddings.

Why added tokens rather than new BPE merges. A BPE merge can only join pieces *inside* one
pre-token, and byte-level pre-tokenizers cut at every word and punctuation boundary: `{"intent": "`
is four pre-tokens (`{"`, `intent`, `":`, ` "`) and ` is a family-friendly` five, so merges could
only shorten single words — a few per cent on these corpora. Changing the pre-tokenizer to let
merges cross boundaries would also change how the base vocabulary cuts ordinary text, i.e. what the
model has learnt. Added tokens are matched on the raw text before pre-tokenisation (leftmost-longest,
by the tokenizers library's Aho-Corasick matcher) and the text between them is tokenised exactly as
before, so they can span words and punctuation, cost nothing on other text, and round-trip exactly
with the settings below. The miner (`tasc.ft.ngrams`) scores candidates on the corpus as this matcher
really cuts it.

AddedToken settings, all chosen for exact round trips:
- `normalized=False`: matched on the raw text, so no normalizer can make a match differ from the
  characters it stands for;
- `special=False`: `decode(..., skip_special_tokens=True)` keeps them (special ones would vanish);
- `lstrip=rstrip=False`: those would swallow the whitespace next to a match, which decode cannot
  give back;
- `single_word=False`: single_word refuses a match next to any word character on either side, which
  would block `{"intent": "` before a value and every token with a leading space after a word.
Byte-level decoders (GPT-2, SmolLM2, Llama 3, Qwen) read a token's content as byte-level characters
unless it contains a character outside that alphabet (a space, for one), so a content such as
`clásicos` or `Ġx` would decode to other bytes; `TokenizerSegmenter.acceptable` refuses those and
`set_added` double-checks every added token by decoding it.

Embeddings: each new row is the mean of the rows of the base tokens that spell the new string, for
the input embeddings and, when they are not tied to them, the output embeddings (SmolLM2 ties them:
one matrix, initialised once).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tasc.core.errors import ModelError
from tasc.core.progress import Progress, ProgressFn, check_cancel
from tasc.core.prompts import PromptFormat
from tasc.core.tokenizers import backend, base_tokenizer
from tasc.ft.ngrams import MiningConfig, MiningResult, mine


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: character -> the byte it stands for."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:  # unprintable bytes map to U+0100 onwards, in byte order
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


BYTE_DECODER = _byte_decoder()


def added_token(text: str) -> Any:
    """The AddedToken for a mined string (settings explained in the module docstring)."""
    from tokenizers import AddedToken

    return AddedToken(text, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)


def _uses_byte_level(decoder: dict | None) -> bool:
    """Whether a tokenizer.json decoder is (or contains) the byte-level decoder."""
    if not decoder:
        return False
    if decoder.get("type") == "ByteLevel":
        return True
    return any(_uses_byte_level(d) for d in decoder.get("decoders", []) or [])


class TokenizerSegmenter:
    """A `tasc.ft.ngrams.Segmenter` over a `tokenizers.Tokenizer`: its vocabulary plus added strings.

    Args:
        base: the base tokenizer (a `tokenizers.Tokenizer` or a transformers fast tokenizer); not modified.
    """

    def __init__(self, base: Any) -> None:
        from tokenizers import Tokenizer

        self._json = backend(base).to_str()
        spec = json.loads(self._json)
        self.base = Tokenizer.from_str(self._json)
        self.base_size = self.base.get_vocab_size(with_added_tokens=True)
        self._special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
        self._base_added = {t["id"]: t["content"] for t in spec.get("added_tokens", []) if not t.get("special")}
        self._byte_level = _uses_byte_level(spec.get("decoder"))
        self.tokenizer = self.base
        self.added: list[str] = []

    def set_added(self, texts: list[str]) -> list[str]:
        """Rebuild the tokenizer with these added strings; return those refused (not exact)."""
        from tokenizers import Tokenizer

        refused: list[str] = []
        texts = list(dict.fromkeys(texts))
        while True:
            tok = Tokenizer.from_str(self._json)
            if texts:
                tok.add_tokens([added_token(t) for t in texts])
            ids = [tok.token_to_id(t) for t in texts]
            bad = [t for t, i in zip(texts, ids, strict=True) if i is None or i < self.base_size or tok.decode([i]) != t]
            if not bad:
                if ids != list(range(self.base_size, self.base_size + len(texts))):
                    raise ModelError(f"added tokens got ids {ids[:3]}..., expected {self.base_size} onwards")
                break
            refused += bad
            texts = [t for t in texts if t not in bad]
        self.tokenizer, self.added = tok, texts
        return refused

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text with the current added strings, no special tokens."""
        return [e.ids for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]

    def piece(self, token_id: int) -> bytes | None:
        """Bytes a token stands for; None for special tokens."""
        if token_id >= self.base_size:
            return self.added[token_id - self.base_size].encode("utf-8")
        if token_id in self._special:
            return None
        if token_id in self._base_added:
            return self._base_added[token_id].encode("utf-8")
        token = self.base.id_to_token(token_id)
        assert token is not None, f"no base token with id {token_id}"  # ids come from the tokenizer's own encodings
        if self._byte_level and all(c in BYTE_DECODER for c in token):
            return bytes(BYTE_DECODER[c] for c in token)
        byte = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", token)  # sentencepiece byte fallback
        if byte:
            return bytes([int(byte.group(1), 16)])
        return token.replace("\u2581", " ").encode("utf-8")  # sentencepiece's word-start mark

    def base_length(self, text: str) -> int:
        """Number of base tokens of a text."""
        return len(self.base.encode(text, add_special_tokens=False).ids)

    def acceptable(self, text: str) -> bool:
        """False when a byte-level decoder would turn this added token into other bytes."""
        if not text or not self._byte_level or not all(c in BYTE_DECODER for c in text):
            return bool(text)
        return bytes(BYTE_DECODER[c] for c in text).decode("utf-8", "replace") == text


def round_trip_failures(tokenizer: Any, texts: Sequence[str]) -> list[str]:
    """Texts that do not come back from `decode(encode(text), skip_special_tokens=True)` unchanged."""
    tok = backend(tokenizer)
    encoded = tok.encode_batch_fast(list(texts), add_special_tokens=False)
    decoded = tok.decode_batch([e.ids for e in encoded], skip_special_tokens=True)
    return [t for t, d in zip(texts, decoded, strict=True) if t != d]


def adoption(tokenizer: Any, base_vocab_size: int, texts: Sequence[str],
             ids: Sequence[Sequence[int]] | None = None) -> dict[str, float]:
    """How much answers use the added tokens, and the tokens they save against the base tokenizer.

    Args:
        tokenizer: the enriched tokenizer (transformers fast tokenizer or `tokenizers.Tokenizer`).
        base_vocab_size: ids from here on are added tokens (`load_enriched_info(dir)["base_vocab_size"]`).
        texts: the answers.
        ids: the token ids the model generated for each answer, when known; else `texts` are
            re-encoded (a model may spell a text with other tokens than the tokenizer would).
    """
    texts = list(texts)
    if ids is None:
        ids = [e.ids for e in backend(tokenizer).encode_batch_fast(texts, add_special_tokens=False)]
    if len(ids) != len(texts):
        raise ValueError(f"adoption: {len(texts)} texts but {len(ids)} token lists")
    base = base_tokenizer(tokenizer, base_vocab_size)
    base_counts = [len(e.ids) for e in base.encode_batch_fast(texts, add_special_tokens=False)]
    n = max(len(texts), 1)
    tokens, base_tokens = sum(map(len, ids)), sum(base_counts)
    new = sum(1 for seq in ids for t in seq if t >= base_vocab_size)
    return {
        "n": len(texts),
        "answers_using_new_tokens": sum(any(t >= base_vocab_size for t in seq) for seq in ids) / n,
        "new_token_share": new / tokens if tokens else 0.0,
        "tokens_per_answer": tokens / n,
        "base_tokens_per_answer": base_tokens / n,
        "tokens_saved": base_tokens - tokens,
        "reduction": 1 - tokens / base_tokens if base_tokens else 0.0,
        "compression": base_tokens / tokens if tokens else 1.0,
    }


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> Any:
    """The transformers tokenizer of a model alias, directory or hub id (no weights are loaded)."""
    from transformers import AutoTokenizer

    from tasc.core.models import resolve_model_path

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(spec), trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelError(f"could not load the tokenizer of {spec!r}: {str(exc).splitlines()[0]}") from exc


def load_enriched_info(model_dir: str | Path) -> dict | None:
    """The "enriched" entry of a model directory's tasc.json ({base_vocab_size, added_tokens, ...}), or None."""
    from tasc.core.models import read_meta

    if not Path(model_dir).is_dir():
        return None
    return read_meta(model_dir).get("enriched")


def init_new_embeddings(model: Any, sub_token_ids: Sequence[Sequence[int]], start: int) -> None:
    """Grow the embeddings for new ids start, start+1, ...; each new row = mean of its sub-token rows.

    Done for the input embeddings and, when not tied to them, the output embeddings (and their
    bias). The mean is taken in float32 and cast to the weights' dtype.

    Args:
        model: a transformers causal LM.
        sub_token_ids: for each new token, the base token ids that spell it.
        start: id of the first new token (the base tokenizer's size).
    """
    import torch

    if any(not ids or max(ids) >= start or min(ids) < 0 for ids in sub_token_ids):
        raise ValueError(f"every new token needs base sub-token ids in [0, {start})")
    need = start + len(sub_token_ids)
    if model.get_input_embeddings().weight.shape[0] < need:
        model.resize_token_embeddings(need, mean_resizing=False)
    emb = model.get_input_embeddings().weight  # (V, D)
    out_layer = model.get_output_embeddings()
    out = None if out_layer is None or out_layer.weight.data_ptr() == emb.data_ptr() else out_layer.weight
    bias = getattr(out_layer, "bias", None) if out is not None else None
    with torch.no_grad():
        for i, ids in enumerate(sub_token_ids):
            idx = torch.as_tensor(list(ids), dtype=torch.long, device=emb.device)
            emb[start + i] = emb[idx].float().mean(0).to(emb.dtype)
            if out is not None:
                out[start + i] = out[idx].float().mean(0).to(out.dtype)
            if bias is not None:
                bias[start + i] = bias[idx].float().mean().to(bias.dtype)


def mining_config_for(config: MiningConfig, corpus: Any) -> MiningConfig:
    """`config` with the names `corpus`'s inputs hold (`tasc.core.corpus.entity_names`), which mining never makes a
    token of (`holds_an_entity`)."""
    from tasc.core.corpus import entity_names

    return replace(config, entities=tuple(entity_names(corpus)))


def mine_vocabulary(model: str, texts: Sequence[str] | Any, config: MiningConfig | None = None, *,
                    heldout: Sequence[str] | None = None, trust_remote_code: bool = False,
                    on_progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Mine `texts` with a model's tokenizer without touching the model: the strings and compression per round.

    Same figures as `enrich` returns (out_dir None); `texts` may be a `Corpus` (its outputs are mined).
    Progress events are Progress("mine", round, rounds, elapsed, {"compression", ...}).
    """
    config = config or MiningConfig()
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
    segmenter = TokenizerSegmenter(tokenizer)
    result = mine(_outputs(texts), segmenter, config, heldout=heldout,
                  on_round=_progress_emitter("mine", config.rounds, t0, on_progress), cancel=cancel)
    return _summary(result, None, model, segmenter.base_size, time.perf_counter() - t0)


def _outputs(texts: Sequence[str] | Any) -> list[str]:
    """The texts to mine: a list of strings, or a Corpus's outputs."""
    return list(texts.outputs if hasattr(texts, "outputs") else texts)


def enrich(model: str, texts: Sequence[str] | Any, out_dir: str | Path, config: MiningConfig | None = None, *,
           heldout: Sequence[str] | None = None, trust_remote_code: bool = False,
           on_progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Mine `texts`, add the strings to the model's tokenizer, initialise their embeddings, save to out_dir.

    The result is a plain transformers model directory (safetensors, tokenizer, tasc.json with the
    base model's entries plus "enriched": {base_vocab_size, added_tokens, rounds, base_model}).

    Args:
        model: alias ("smollm2-135m"), model directory or hub id to enrich.
        texts: corpus outputs to mine (or a `Corpus`: its outputs).
        out_dir: where to write the enriched model.
        config: budget, rounds and candidate limits.
        heldout: outputs only measured, for the held-out compression per round.
        trust_remote_code: run a hub model's own code; off unless the user asks.
        on_progress: receives Progress("enrich", round, rounds, elapsed, {"compression", ...}).
        cancel: set it to stop between rounds (raises `Cancelled`).
    """
    from transformers import AutoModelForCausalLM

    from tasc.core.models import resolve_model_path, write_meta

    config = config or MiningConfig()
    t0 = time.perf_counter()
    texts = _outputs(texts)
    path = resolve_model_path(model)
    out = Path(out_dir)
    if Path(path).is_dir() and out.resolve() == Path(path).resolve():
        raise ValueError(f"out_dir {str(out)!r} is the base model's own directory; choose another")
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    base_size = len(tokenizer)
    segmenter = TokenizerSegmenter(tokenizer)
    if segmenter.base_size != base_size:
        raise ModelError(f"{model!r}: tokenizer reports {base_size} ids but its backend {segmenter.base_size}")
    emit = _progress_emitter("enrich", config.rounds, t0, on_progress)
    result = mine(texts, segmenter, config, heldout=heldout, on_round=emit, cancel=cancel)
    check_cancel(cancel)

    _add_mined_tokens(tokenizer, segmenter, result.texts, base_size, list(texts) + list(heldout or []), model)

    if on_progress:
        on_progress(Progress("enrich", config.rounds, config.rounds, time.perf_counter() - t0, {}, "saving the model"))
    lm = AutoModelForCausalLM.from_pretrained(path, dtype="auto", trust_remote_code=trust_remote_code)
    sub_ids = [segmenter.base.encode(t, add_special_tokens=False).ids for t in result.texts]
    init_new_embeddings(lm, sub_ids, base_size)
    check_cancel(cancel)
    out.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_meta(out, _enriched_meta(path, model, base_size, result, config))
    return _summary(result, out, model, base_size, time.perf_counter() - t0)


def _add_mined_tokens(tokenizer: Any, segmenter: TokenizerSegmenter, strings: list[str], base_size: int,
                      texts: list[str], model: str) -> None:
    """Add the mined strings to the tokenizer as ids base_size, base_size + 1, ...; check they round-trip `texts`.

    Raises:
        ModelError: the tokenizer gave the strings other ids.
        RuntimeError: a text the base tokenizer round-trips no longer does (a bug: the miner must only add exact tokens).
    """
    added = tokenizer.add_tokens([added_token(t) for t in strings])
    ids = tokenizer.convert_tokens_to_ids(strings) if strings else []
    if added != len(strings) or list(ids) != list(range(base_size, base_size + added)):
        raise ModelError(f"{model!r}: the tokenizer gave the {len(strings)} new strings unexpected ids")
    base_failures = set(round_trip_failures(segmenter.base, texts))
    failures = [t for t in round_trip_failures(tokenizer, texts) if t not in base_failures]
    if failures:  # a bug, not a user error: the miner must only add exact tokens
        raise RuntimeError(f"enriched tokenizer does not round-trip {len(failures)} texts, e.g. {failures[0]!r}")


def _enriched_meta(path: str | Path, model: str, base_size: int, result: MiningResult, config: MiningConfig) -> dict[str, Any]:
    """The enriched model's tasc.json: the base model's entries plus "enriched" (base size, added tokens, rounds)."""
    from tasc.core.models import read_meta

    meta = read_meta(path) if Path(path).is_dir() else {}
    meta.setdefault("base_model", model)
    # Prompts keep the base vocabulary: the added strings are answer n-grams (see PromptFormat).
    fmt = PromptFormat.from_meta(meta)
    meta["prompt_format"] = replace(fmt, prompt_vocab_size=base_size).to_dict()
    meta["enriched"] = {
        "base_model": model,
        "base_vocab_size": base_size,
        "added_tokens": [{"id": base_size + i, **c.to_dict()} for i, c in enumerate(result.tokens)],
        "rounds": result.rounds,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()},
    }
    return meta


def _progress_emitter(task: str, rounds: int, t0: float, on_progress: ProgressFn | None) -> Callable[[dict], None]:
    """Turn the miner's per-round dicts into Progress events."""

    def emit(row: dict) -> None:
        if on_progress is None:
            return
        metrics = {k: row[k] for k in ("compression", "heldout_compression", "tokens_per_output",
                                         "heldout_tokens_per_output", "added") if k in row}
        done = min(row["round"], rounds)
        on_progress(Progress(task, done, rounds, time.perf_counter() - t0, metrics,
                             f"round {row['round']}: {row['added']} tokens, compression {row['compression']:.2f}x"))

    return emit


def _summary(result: MiningResult, out: Path | None, model: str, base_size: int, wall_s: float) -> dict[str, Any]:
    """The figures `enrich` returns (and the CLI prints / writes as JSON)."""
    last = result.rounds[-1]
    return {
        "out_dir": str(out) if out else None,
        "base_model": model,
        "base_vocab_size": base_size,
        "added": len(result.tokens),
        "compression": last["compression"],
        "reduction": last["reduction"],
        "heldout_compression": last.get("heldout_compression"),
        "heldout_reduction": last.get("heldout_reduction"),
        "rounds": result.rounds,
        "tokens": [c.to_dict() for c in result.tokens],
        "dropped": result.dropped,
        "mining_s": result.wall_s,
        "wall_s": round(wall_s, 3),
    }
