"""One method answering one prompt, timed and counted: the runners the benchmark drives.

A runner is built once per method and run (`prompt_ids -> MethodRun`) for every prompt. What a method
name means comes from `tasc.methods`; this module only times it:
    loop    our verify loop with the method's drafter (one drafter per run: its statistics keep learning)
    hf      transformers `generate`: greedy, prompt lookup (`pld`), or assisted by the draft model
    hybrid  one target pass, then the hybrid's decoder
    llamacpp  llama.cpp's own `Llama.generate`: greedy, or with prompt lookup (`llamacpp-lookup`)
With `Resources.loop_engine` LLAMACPP our loop's methods run on llama.cpp's low-level API instead.

"Forward passes" counts the target's passes for every method (the draft model's own passes are part of
its wall time; the hybrid makes one target pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from tasc.core.models import LoadedModel
from tasc.methods import HF, HYBRID, LLAMACPP, Method, Resources, build_drafter
from tasc.spec.decode import DecodeConfig, GenerationResult, PrefixCache, generate
from tasc.spec.drafts import CONTEXT, CORPUS, DraftSource

Runner = Callable[[list[int]], "MethodRun"]


@dataclass
class MethodRun:
    """What one method did on one prompt."""

    tokens: list[int]
    wall_s: float
    forward_passes: int
    accepted_by_source: dict[str, int] = field(default_factory=dict)
    step_lengths: list[int] = field(default_factory=list)
    # Our loop only: seconds per phase of its passes (`PHASES`), summed over the answer; None for the others.
    phases: dict[str, float] | None = None


# Where a verify loop's time goes (`tasc.spec.decode.Step`): per-answer setup (KV cache or prefix copy,
# drafter.start), drafting (propose), the model call, acceptance + cache rollback, emit + drafter.update.
PHASES = ("setup", "draft", "forward", "accept", "update")


@dataclass(frozen=True)
class HfSettings:
    """transformers prompt lookup's settings (the `pld` baseline)."""

    pld_tokens: int = 10  # draft length
    pld_ngram: int = 2  # longest n-gram matched


class ForwardCounter:
    """Counts calls of a model's forward (for methods we do not drive ourselves, like pld)."""

    def __init__(self, model: Any) -> None:
        self.calls = 0
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: Any) -> None:
        self.calls += 1

    def close(self) -> None:
        """Remove the hook."""
        self._handle.remove()


def run_hf(lm: LoadedModel, prompt_ids: list[int], config: DecodeConfig, prefix: PrefixCache | None = None,
           **extra: Any) -> MethodRun:
    """transformers `generate`, greedy; `extra` adds prompt lookup or an assistant model."""
    counter = ForwardCounter(lm.model)
    ids = torch.tensor([prompt_ids], device=lm.device)
    try:
        t0 = time.perf_counter()
        if prefix is not None and prefix.covers(prompt_ids):
            extra["past_key_values"] = prefix.fork()  # generate runs only the uncached prompt tokens
        with torch.inference_mode():
            out = lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                eos_token_id=lm.eos_token_id,
                pad_token_id=lm.tokenizer.pad_token_id or lm.eos_token_id,
                **extra,
            )
        wall = time.perf_counter() - t0
    finally:
        counter.close()
    return MethodRun(out[0, len(prompt_ids):].tolist(), wall, counter.calls)


def run_loop(lm: LoadedModel, prompt_ids: list[int], drafter: DraftSource, config: DecodeConfig,
             prefix: PrefixCache | None = None, llamacpp: Any = None) -> MethodRun:
    """Our verify loop with a drafter (NoDraft = our plain greedy loop); on llama.cpp when `llamacpp` (an engine) is given."""
    t0 = time.perf_counter()
    if llamacpp is not None:
        from tasc.spec.llamacpp import llamacpp_generate

        result: GenerationResult = llamacpp_generate(llamacpp.context, prompt_ids, drafter, config, lm.eos_token_id)
    else:
        result = generate(lm.model, prompt_ids, drafter, config, lm.eos_token_id, prefix)
    wall = time.perf_counter() - t0
    by_source = {CORPUS: 0, CONTEXT: 0}
    for step in result.steps:
        for src in step.sources[: step.n_accepted]:
            by_source[src] = by_source.get(src, 0) + 1
    phases = {"setup": 0.0, "draft": 0.0, "forward": 0.0, "accept": 0.0, "update": 0.0}
    for s in result.steps:
        phases["setup"] += s.setup_s
        phases["draft"] += s.draft_s
        phases["forward"] += s.forward_s
        phases["accept"] += s.accept_s
        phases["update"] += s.update_s
    return MethodRun(result.tokens, wall, result.forward_passes, by_source, [len(s.tokens) for s in result.steps], phases)


def run_own_llamacpp(method: Method, res: Resources, prompt_ids: list[int], config: DecodeConfig) -> MethodRun:
    """llama.cpp's own decoding (llamacpp-greedy, llamacpp-lookup, ...): passes counted as its `eval` calls."""
    eos = {res.lm.eos_token_id} if res.lm.eos_token_id is not None else set()
    tokens, passes, wall = res.own_llamacpp(method).generate(prompt_ids, config.max_new_tokens, eos)
    return MethodRun(tokens, wall, passes)


def run_hybrid(res: Resources, prompt_ids: list[int], config: DecodeConfig) -> MethodRun:
    """The hybrid: one target pass, then its decoder alone."""
    result = res.hybrid.generate(res.lm.model, prompt_ids, config.max_new_tokens, res.lm.eos_token_id)
    return MethodRun(result.tokens, result.wall_s, 1, {}, [len(result.tokens)])


def _hf_runner(method: Method, res: Resources, config: DecodeConfig, hf: HfSettings, prefix: PrefixCache | None) -> Runner:
    """A runner through transformers `generate` (greedy, pld, assisted by the draft model)."""
    if method.drafts == "pld":
        # No prefix cache: transformers 5.23's prompt lookup with a pre-filled cache changed the answers of
        # 7 of 50 SNIPS prompts ("peeter townshend" for "pete townshend"), so it prefills whole and stays exact.
        return lambda ids: run_hf(res.lm, ids, config, prompt_lookup_num_tokens=hf.pld_tokens, max_matching_ngram_size=hf.pld_ngram)
    if method.drafts == "draft-model":
        res.check(method)
        draft = res.draft_model  # our draft length and confidence stop, so the two loops compare
        draft.generation_config.num_assistant_tokens = res.assist.max_draft
        draft.generation_config.num_assistant_tokens_schedule = "constant"
        draft.generation_config.assistant_confidence_threshold = res.assist.min_confidence
        return lambda ids: run_hf(res.lm, ids, config, assistant_model=draft)
    if method.compiled:  # a static cache is built by generate itself: no prefix fork
        return lambda ids: run_hf(res.lm, ids, config, cache_implementation="static")
    return lambda ids: run_hf(res.lm, ids, config, prefix)


def method_runner(method: Method, res: Resources, config: DecodeConfig, hf: HfSettings | None = None,
                  prefix: PrefixCache | None = None) -> Runner:
    """A function that answers one prompt with `method` (`prefix`: the model's shared-prompt cache, if any)."""
    config.check()
    if method.engine == HF:
        return _hf_runner(method, res, config, hf or HfSettings(), prefix)
    if method.engine == HYBRID:
        res.check(method)
        return lambda ids: run_hybrid(res, ids, config)
    if method.engine == LLAMACPP:
        res.check(method)
        if config.do_sample:
            raise ValueError(f"method {method.name!r} is llama.cpp's greedy decoding: sampling is not benchmarked")
        return lambda ids: run_own_llamacpp(method, res, ids, config)
    drafter = build_drafter(method, res)  # one per method for the whole run: its statistics keep learning
    on_llamacpp = res.llamacpp if res.loop_engine == LLAMACPP else None  # llama.cpp keeps its own prompt prefix
    return lambda ids: run_loop(res.lm, ids, drafter, config, prefix, on_llamacpp)
