"""Our verify loop on llama.cpp (through llama-cpp-python's low-level API): the engine CPU users run.

`LlamaCppContext` holds one GGUF model and one context with one sequence. A verify pass is one
`llama_decode` of the pending token and the whole draft with logits at every one of those positions
(`llama_get_logits_ith`); the rejected draft positions then leave the KV cache with
`llama_memory_seq_rm`, so the cache always holds exactly the accepted text. `llamacpp_steps` yields the
same `Step`s as `tasc.spec.decode.speculative_steps` (tokens, accepted counts and sources, the time
split), so the Arena, `tasc generate` and the benchmark read it unchanged.

Greedy mode is lossless against llama.cpp's own one-token greedy loop: a draft token is kept only
where it equals the argmax at its position. The context keeps the longest prefix a new prompt shares
with the last one in its KV cache (the system turn every prompt starts with), as llama-cpp-python's
`Llama.generate` does, so both sides prefill only what is new. Chains only: a tree draft runs its main
chain (a tree would need one sequence per branch). One context serves one answer at a time.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Generator, Sequence

import numpy as np
import torch

from tasc.core.errors import ModelError

# The torch loop's own rules (emit and EOS cut, seeded sampler, acceptance), shared so both loops answer alike.
from tasc.spec.decode import (
    COST_WIDTHS,
    DecodeConfig,
    GenerationResult,
    Step,
    _sampler,
    accept_greedy,
    accept_sampling,
    finish_pass,
    relative_costs,
)
from tasc.spec.drafts import Draft, DraftSource, NoDraft

DEFAULT_N_CTX = 2048  # KV positions: a prompt with shots, a 512-token answer and a draft. The lookup baselines keep
# n_ctx x vocabulary float32 logits (llama-cpp-python's logits_all): 400 MB for SmolLM2 at 2048
DEFAULT_N_BATCH = 512  # tokens per llama_decode; longer prompts are fed in chunks
INSTALL_HINT = "the llama.cpp engine needs llama-cpp-python: pip install -r requirements-llamacpp.txt (builds llama.cpp, ~10 min)"


def llama_cpp_module() -> Any:
    """llama-cpp-python's `llama_cpp`, quiet (errors only); a ModelError with the install hint when missing."""
    try:
        import llama_cpp
        from llama_cpp._logger import set_verbose
    except ImportError as exc:  # optional: the default install stays a quick wheel install
        raise ModelError(INSTALL_HINT) from exc
    set_verbose(False)  # llama.cpp logs every tensor it loads to stderr otherwise
    return llama_cpp


def cpu_threads() -> int:
    """Threads llama.cpp computes with: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _free(lc: Any, model: Any, ctx: Any, batch: Any) -> None:
    """Release a context's llama.cpp objects (weakref.finalize: once, when the context goes)."""
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)


class LlamaCppContext:
    """A GGUF model and one llama.cpp context (one sequence) whose KV cache follows `self.cached`."""

    def __init__(self, path: str | Path, n_ctx: int = DEFAULT_N_CTX, threads: int | None = None,
                 n_batch: int = DEFAULT_N_BATCH) -> None:
        lc = self.lc = llama_cpp_module()
        lc.llama_backend_init()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file {self.path} does not exist")
        self.model = lc.llama_model_load_from_file(str(self.path).encode(), lc.llama_model_default_params())
        if not self.model:
            raise ValueError(f"llama.cpp could not load {self.path}")
        params = lc.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_threads = params.n_threads_batch = threads or cpu_threads()
        params.no_perf = True
        params.flash_attn_type = 0  # disabled, as llama-cpp-python's `Llama` (the baselines) runs: one setting for all
        self.ctx = lc.llama_init_from_model(self.model, params)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise ValueError(f"llama.cpp could not make a context of {n_ctx} positions for {self.path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.n_ctx, self.n_batch = lc.llama_n_ctx(self.ctx), n_batch
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(n_batch, 0, 1)
        self.cached: list[int] = []  # the tokens whose states the KV cache holds, positions 0..n-1
        self.lock = threading.Lock()  # one answer at a time on this context
        self._finalizer = weakref.finalize(self, _free, lc, self.model, self.ctx, self.batch)

    def close(self) -> None:
        """Free the model and context now (else when the object goes)."""
        self._finalizer()

    def truncate(self, n: int) -> None:
        """Keep the first `n` cached positions; the others leave the KV cache."""
        if n < len(self.cached):
            if not self.lc.llama_memory_seq_rm(self.memory, 0, n, -1):
                raise RuntimeError("llama.cpp could not remove positions from its KV cache")
            self.cached = self.cached[:n]

    def start(self, prompt_ids: Sequence[int]) -> list[int]:
        """Make room for a new answer after `prompt_ids`; returns the prompt tokens still to feed.

        The cache keeps the longest prefix shared with what it holds, less at least one prompt token:
        the last prompt token is fed again so its logits give the answer's first token.
        """
        keep = 0
        limit = min(len(self.cached), len(prompt_ids) - 1)
        while keep < limit and self.cached[keep] == prompt_ids[keep]:
            keep += 1
        self.truncate(keep)
        return list(prompt_ids[keep:])

    def _fill(self, tokens: Sequence[int], n_logits: int) -> None:
        """Write one chunk into the batch: positions after the cache, logits for its last `n_logits` tokens."""
        b, start = self.batch, len(self.cached)
        for i, token in enumerate(tokens):
            b.token[i] = token
            b.pos[i] = start + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = i >= len(tokens) - n_logits
        b.n_tokens = len(tokens)

    def decode(self, tokens: Sequence[int], n_logits: int) -> np.ndarray:
        """Feed `tokens` after the cache in one pass (chunks of n_batch for a long prompt); logits of the last
        `n_logits` of them: (n_logits, n_vocab) float32."""
        if not 1 <= n_logits <= min(len(tokens), self.n_batch):
            raise ValueError(f"logits for {n_logits} of {len(tokens)} tokens (at most {self.n_batch})")
        if len(self.cached) + len(tokens) > self.n_ctx:
            raise ValueError(f"llama.cpp context of {self.n_ctx} positions is full: use a larger n_ctx")
        cut = max(len(tokens) - self.n_batch, 0)  # the last chunk holds every judged token
        chunks = [list(tokens[i:min(i + self.n_batch, cut)]) for i in range(0, cut, self.n_batch)] + [list(tokens[cut:])]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            self._fill(chunk, n_logits if last else 0)
            code = self.lc.llama_decode(self.ctx, self.batch)
            if code != 0:
                raise RuntimeError(f"llama_decode failed with code {code}")
            self.cached += chunk
        first = len(chunks[-1]) - n_logits  # outputs are stored contiguously in batch order
        ptr = self.lc.llama_get_logits_ith(self.ctx, first)
        return np.ctypeslib.as_array(ptr, shape=(n_logits, self.n_vocab)).copy()

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """llama.cpp's own tokenization of `text` (special tokens in the text parsed as such by default)."""
        raw = text.encode("utf-8")
        room = len(raw) + 8
        out = (self.lc.llama_token * room)()
        n = self.lc.llama_tokenize(self.vocab, raw, len(raw), out, room, add_special, parse_special)
        if n < 0:
            raise RuntimeError(f"llama_tokenize needs {-n} tokens")
        return list(out[:n])

    def piece(self, token: int) -> bytes:
        """The bytes llama.cpp writes for one token (special tokens included)."""
        buf = ctypes.create_string_buffer(256)
        n = self.lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[:max(n, 0)]


def _accept(draft: Draft, logits: np.ndarray, config: DecodeConfig, generator: torch.Generator | None) -> tuple[int, int]:
    """Accepted draft length and the model's next token, by the same rules as our torch loop."""
    scores = torch.from_numpy(logits)
    if config.do_sample:
        return accept_sampling(draft.tokens, scores, config, generator)
    return accept_greedy(draft.tokens, scores)


# Over 60 lines for the same reason as `speculative_steps`: the loop's five steps read top to bottom.
def llamacpp_steps(
    engine: LlamaCppContext,
    prompt_ids: Sequence[int],
    drafter: DraftSource | None = None,
    config: DecodeConfig | None = None,
    eos_token_id: int | Sequence[int] | None = None,
) -> Generator[Step, None, None]:
    """Generate an answer on llama.cpp, yielding one `Step` per `llama_decode` (as `speculative_steps`).

    Args:
        engine: the llama.cpp model and context (its lock is held while the answer runs).
        prompt_ids: the prompt's token ids (the GGUF has the same vocabulary as our tokenizer).
        drafter: where drafts come from; None decodes plainly (llama.cpp greedy, one token per pass).
        config: length and sampling settings.
        eos_token_id: id(s) that end the answer.
    """
    config = (config or DecodeConfig()).check()
    drafter = drafter or NoDraft()
    eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
    if len(prompt_ids) + config.max_new_tokens + 1 > engine.n_ctx:
        raise ValueError(f"prompt ({len(prompt_ids)} tokens) and answer ({config.max_new_tokens}) exceed llama.cpp's context of {engine.n_ctx}")
    generator = _sampler(config)
    with engine.lock:
        t0 = time.perf_counter()
        head = engine.start(prompt_ids)  # the uncached prompt first, then the pending token
        drafter.start(prompt_ids)
        produced = 0
        setup_s = time.perf_counter() - t0
        while True:
            # 1. Draft (a chain: the cache holds one sequence).
            t_draft = time.perf_counter()
            room = config.max_new_tokens - produced - 1
            draft = drafter.propose(room).limit_depth(room).main_chain() if room > 0 else Draft()
            # 2. One llama_decode over the head and the whole draft, logits at every judged position.
            t_forward = time.perf_counter()
            logits = engine.decode(head + draft.tokens, len(draft) + 1)
            # 3. Accept; 4. the rejected draft positions leave the KV cache.
            t_accept = time.perf_counter()
            n_acc, next_token = _accept(draft, logits, config, generator)
            engine.truncate(len(engine.cached) - (len(draft) - n_acc))
            # 5. Emit, stopping at EOS or the budget; tell the drafter.
            step = finish_pass(draft, range(n_acc), next_token, eos, config.max_new_tokens - produced, drafter,
                               (t0, t_draft, t_forward, t_accept), setup_s)
            produced, head, setup_s = produced + len(step.tokens), [next_token], 0.0
            yield step
            if step.finished:
                return


def measure_llamacpp_costs(engine: LlamaCppContext, prompt_ids: Sequence[int], max_width: int = 33, reps: int = 5) -> tuple[float, ...]:
    """llama.cpp's cost of a verify pass of n = 1..max_width tokens after a prompt, relative to one token.

    The curve differs from PyTorch's (with quantised weights a wide pass costs nearly its width in single
    passes), so TASC drafts on llama.cpp are cut by this one (`SpecConfig.verify_costs`). Each width's time is
    the median of `reps` passes over the cached prompt, cut back after each pass; the first is dropped.
    """
    with engine.lock:
        head = engine.start(prompt_ids)
        engine.decode(head, 1)
        start = len(engine.cached)
        filler = (list(prompt_ids) * (max_width // max(len(prompt_ids), 1) + 1))[:max_width]
        timed: dict[int, float] = {}
        for width in [w for w in COST_WIDTHS if w <= max_width] + ([max_width] if max_width not in COST_WIDTHS else []):
            times = []
            for _ in range(reps + 1):
                t0 = time.perf_counter()
                engine.decode(filler[:width], width)
                times.append(time.perf_counter() - t0)
                engine.truncate(start)
            timed[width] = sorted(times[1:])[len(times[1:]) // 2]
    return relative_costs(timed, max_width)


def llamacpp_generate(engine: LlamaCppContext, prompt_ids: Sequence[int], drafter: DraftSource | None = None,
                      config: DecodeConfig | None = None, eos_token_id: int | Sequence[int] | None = None) -> GenerationResult:
    """Run `llamacpp_steps` (same arguments) to the end and collect the answer."""
    steps = list(llamacpp_steps(engine, prompt_ids, drafter, config, eos_token_id))
    return GenerationResult([t for s in steps for t in s.tokens], steps)
