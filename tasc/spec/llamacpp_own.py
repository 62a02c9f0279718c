"""llama.cpp's own decoding, and one bundle of everything that runs on one GGUF.

The baselines are what a llama.cpp user gets without TASC, through llama-cpp-python's `Llama`:
    llamacpp-greedy  `Llama.generate` with temperature 0 (its greedy sampler): one token per `llama_decode`
    llamacpp-lookup  the same with llama-cpp-python's `LlamaPromptLookupDecoding` draft model: drafts of up to
                     8 tokens copied from the prompt and the answer so far (the last 1-2 tokens matched), verified
                     by its own loop.
    llamacpp-lookup-corpus  the same loop with llama.cpp's lookup decoding (`examples/lookup`: a static n-gram
                     cache of the task corpus, a context and a dynamic cache), draft 8. llama-cpp-python 0.3.x
                     exposes no `llama_ngram_cache`, so its algorithm is ported to Python (`tasc.spec.llamacpp_lookup`).
All keep the prompt prefix they share with the previous call in the KV cache, as our context does.

`LlamaCppEngine` holds the GGUF path and makes, on first use, our verify loop's low-level context and
each baseline's `Llama` (llama.cpp maps the file once; each holds its own KV cache).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tasc.spec.llamacpp import DEFAULT_N_BATCH, DEFAULT_N_CTX, LlamaCppContext, cpu_threads, llama_cpp_module

LOOKUP_TOKENS = 8  # draft length of llamacpp-lookup
LOOKUP_NGRAM = 2  # longest n-gram it matches (llama-cpp-python's default; as our `pld` baseline)


def prompt_lookup(n_draft: int = LOOKUP_TOKENS) -> Any:
    """llama-cpp-python's prompt lookup draft model (llamacpp-lookup)."""
    llama_cpp_module()
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    return LlamaPromptLookupDecoding(max_ngram_size=LOOKUP_NGRAM, num_pred_tokens=n_draft)


class OwnDecoding:
    """llama-cpp-python's `Llama` on a GGUF: greedy, or its speculative loop with a draft model
    (`prompt_lookup()`, `tasc.spec.llamacpp_lookup.CorpusLookup`: `__call__(input_ids) -> draft ids`)."""

    def __init__(self, path: str | Path, n_ctx: int = DEFAULT_N_CTX, threads: int | None = None, draft: Any = None) -> None:
        llama_cpp_module()  # quiet logs, or the install hint
        from llama_cpp import Llama

        n = threads or cpu_threads()
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=DEFAULT_N_BATCH, n_threads=n, n_threads_batch=n,
                         draft_model=draft, flash_attn=False, verbose=False)  # its default, as our context's
        self.evals = 0
        self.lock = threading.Lock()
        inner = self.llm.eval

        def counted(tokens: Sequence[int]) -> None:
            self.evals += 1  # one eval = one llama_decode pass (a long prompt: its chunks)
            inner(tokens)

        setattr(self.llm, "eval", counted)  # noqa: B010 - count the passes Llama.generate makes

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, eos: set[int]) -> tuple[list[int], int, float]:
        """Greedy answer ids (cut at EOS, included), passes and seconds."""
        with self.lock:
            self.evals = 0
            out: list[int] = []
            t0 = time.perf_counter()
            for token in self.llm.generate(list(prompt_ids), temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
                out.append(int(token))
                if token in eos or len(out) >= max_new_tokens:
                    break
            return out, self.evals, time.perf_counter() - t0


@dataclass
class LlamaCppEngine:
    """One GGUF for llama.cpp: our loop's context and the baselines' `Llama`s, each made at first use."""

    path: Path
    n_ctx: int = DEFAULT_N_CTX
    threads: int | None = None
    _contexts: dict[str, LlamaCppContext] = field(default_factory=dict)
    _own: dict[str, OwnDecoding] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def context(self) -> LlamaCppContext:
        """The low-level context our verify loop drives."""
        return self.context_for("main")

    def context_for(self, name: str) -> LlamaCppContext:
        """A context of its own for `name` (one answer at a time each: the Arena's two panes take two)."""
        with self._lock:
            if name not in self._contexts:
                self._contexts[name] = LlamaCppContext(self.path, self.n_ctx, self.threads)
            return self._contexts[name]

    def own(self, kind: str = "greedy", make_draft: Callable[[], Any] | None = None) -> OwnDecoding:
        """llama.cpp's own decoding of one kind ("greedy", "lookup", ...), made once with `make_draft()`'s draft model."""
        with self._lock:
            if kind not in self._own:
                self._own[kind] = OwnDecoding(self.path, self.n_ctx, self.threads, make_draft() if make_draft else None)
            return self._own[kind]

    def describe(self) -> dict[str, Any]:
        """What the benchmark reports about this engine."""
        import llama_cpp

        return {"gguf": str(self.path), "n_ctx": self.n_ctx, "threads": self.threads or cpu_threads(),
                "llama_cpp_python": llama_cpp.__version__}


def engine_for(spec: str, gguf: str | None = None, kind: str = "f32", n_ctx: int = DEFAULT_N_CTX) -> LlamaCppEngine:
    """The llama.cpp engine of a model spec (alias or directory): see `tasc.core.gguf_export.gguf_for_model`."""
    from tasc.core.gguf_export import gguf_for_model

    llama_cpp_module()  # the install hint before minutes of export
    return LlamaCppEngine(gguf_for_model(spec, gguf, kind), n_ctx)


def own_decoding(engine: LlamaCppEngine, drafts: str, corpus_ids: Callable[[], list[list[int]]] | None = None) -> OwnDecoding:
    """The `OwnDecoding` of a LLAMACPP method by its drafts: "none", "lookup" or "lookup-corpus" (`corpus_ids()`: the
    task corpus outputs' token ids)."""
    if drafts == "none":
        return engine.own("greedy")
    if drafts == "lookup":
        return engine.own("lookup", prompt_lookup)
    if drafts == "lookup-corpus" and corpus_ids is not None:
        from tasc.spec.llamacpp_lookup import CorpusLookup

        return engine.own("lookup-corpus", lambda: CorpusLookup(corpus_ids(), LOOKUP_TOKENS))
    raise ValueError(f"llama.cpp's own decoding has no drafts {drafts!r} (or no corpus for them)")
