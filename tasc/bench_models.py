"""Benchmark runners of the trained comparison modes, and answer quality for lossy methods.

Methods (each needs its trained directory in `BenchConfig`):
    draft-model        our verify loop with `DraftModelDrafter` (lossless)
    draft-model-hf     transformers `generate(assistant_model=...)` with the same draft model (the reference)
    draft-model+tasc   our verify loop with `MixedDrafter`: TASC n-grams and the draft model (lossless)
    hybrid             the frozen target encodes the prompt, the hybrid's decoder answers alone (lossy)

Answer quality of every method (lossy ones included) is scored by `tasc.evaluate.score_answers`.

For the draft-model methods "forward passes" counts the target's passes, as for every other method;
the draft model's own passes are part of their wall time. For the hybrid it is the single target pass.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from tasc.models import LoadedModel

if TYPE_CHECKING:
    from tasc.bench import BenchConfig, MethodRun
    from tasc.ngram_index import CorpusIndex

MODEL_METHODS = ("draft-model", "draft-model-hf", "draft-model+tasc", "hybrid")


def _run_assisted(lm: LoadedModel, draft: Any, prompt_ids: list[int], config: "BenchConfig") -> "MethodRun":
    """transformers assisted generation, with our draft length and confidence stop so the two loops compare."""
    import torch

    from tasc.bench import ForwardCounter, MethodRun

    counter = ForwardCounter(lm.model)
    ids = torch.tensor([prompt_ids], device=lm.device)
    try:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = lm.model.generate(
                ids, attention_mask=torch.ones_like(ids), assistant_model=draft, max_new_tokens=config.max_new_tokens,
                do_sample=False, eos_token_id=lm.eos_token_id, pad_token_id=lm.tokenizer.pad_token_id or lm.eos_token_id,
            )
        wall = time.perf_counter() - t0
    finally:
        counter.close()
    return MethodRun(out[0, len(prompt_ids):].tolist(), wall, counter.calls)


def model_method_runner(
    method: str, lm: LoadedModel, corpus_index: "CorpusIndex | None", config: "BenchConfig"
) -> Callable[[list[int]], "MethodRun"]:
    """A function that answers one prompt with a draft-model or hybrid method."""
    from tasc.bench import MethodRun, _run_loop

    if method == "hybrid":
        from tasc.hybrid import HybridModel

        if not config.hybrid_model:
            raise ValueError("method 'hybrid' needs a hybrid model directory: --hybrid-model DIR (from tasc train-hybrid)")
        hybrid = HybridModel.load(config.hybrid_model, lm)

        def run_hybrid(ids: list[int]) -> MethodRun:
            result = hybrid.generate(lm.model, ids, config.max_new_tokens, lm.eos_token_id)
            return MethodRun(result.tokens, result.wall_s, 1, {}, [len(result.tokens)])

        return run_hybrid
    if method not in MODEL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(MODEL_METHODS)}")
    from tasc.draft_model import load_draft_model
    from tasc.drafts import make_drafter
    from tasc.model_drafts import DraftModelDrafter, MixedDrafter
    from tasc.ngram_index import normalised_keys

    if not config.draft_model:
        raise ValueError(f"method {method!r} needs a draft model directory: --draft-model DIR (from tasc train-draft)")
    draft = load_draft_model(config.draft_model, lm)
    if method == "draft-model-hf":
        draft.generation_config.num_assistant_tokens = config.assist.max_draft
        draft.generation_config.num_assistant_tokens_schedule = "constant"
        draft.generation_config.assistant_confidence_threshold = config.assist.min_confidence
        return lambda ids: _run_assisted(lm, draft, ids, config)
    # One drafter per method for the whole run: its calibration (and TASC's) keeps learning.
    drafter: Any = DraftModelDrafter(draft, config.assist, lm.eos_token_id)
    if method == "draft-model+tasc":
        keys = normalised_keys(lm.tokenizer) if config.spec.normalise_context else None
        drafter = MixedDrafter(make_drafter("tasc-spec", lm.tokenizer, corpus_index, config.spec, keys), drafter, config.assist)
    return lambda ids: _run_loop(lm, ids, drafter, config)
