"""Quality of a model's answers on held-out rows: sacreBLEU and chrF for text, parse/match/F1 for JSON, and
for data-to-text from attribute lists (E2E) faithfulness: every input attribute stated, none invented.

Answers are produced by greedy decoding through the verify loop with a TASC-spec drafter over an
optional draft corpus (the training outputs), or prompt lookup without one. Greedy verification is
lossless, so the answers are exactly plain greedy's, only produced faster — which is why drafting
from any corpus, even one holding the references, cannot change a score. Rows that share an
input (E2E has several references per input) are scored once, against all their references.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Sequence

from tasc.core.corpus import Corpus, references_by_input
from tasc.core.errors import CorpusError
from tasc.core.faithfulness import is_attribute_task, score_faithfulness
from tasc.core.models import LoadedModel
from tasc.core.progress import Progress, ProgressFn, check_cancel

JSON_SHARE = 0.9  # a task is "json" when at least this share of references parse as JSON objects


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in `text`, or None when it is not one."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def detect_task(references: Sequence[str]) -> str:
    """"json" when the references are (nearly all) JSON objects, else "text"."""
    if not references:
        return "text"
    parsed = sum(parse_json_object(r) is not None for r in references)
    return "json" if parsed >= JSON_SHARE * len(references) else "text"


def score_text(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus sacreBLEU and chrF, with any number of references per hypothesis.

    sacrebleu wants the same number of reference streams for every segment; a segment with fewer
    references repeats its first one, which leaves BLEU and chrF unchanged (the sacrebleu
    maintainers' recommendation).
    """
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need one reference list per hypothesis, got {len(hypotheses)} and {len(references)}")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    width = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else refs[0] for refs in references] for k in range(width)]
    bleu = BLEU().corpus_score(list(hypotheses), streams)
    chrf = CHRF().corpus_score(list(hypotheses), streams)
    return {"bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2), "references_per_input": round(sum(map(len, references)) / len(references), 2)}


def _fields(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """(slot, value) pairs of an answer: its "slots" object when present, else every field but "intent"."""
    slots = obj.get("slots")
    if not isinstance(slots, dict):
        slots = {k: v for k, v in obj.items() if k != "intent"}
    return {(str(k), json.dumps(v, ensure_ascii=False, sort_keys=True)) for k, v in slots.items()}


def score_json(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Parse rate, exact match (as JSON, key order ignored), intent accuracy and micro slot F1.

    An answer that does not parse counts as wrong everywhere and predicts no slots.
    """
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need one reference per hypothesis, got {len(hypotheses)} and {len(references)}")
    parsed = exact = intents = has_intent = 0
    tp = n_pred = n_gold = 0
    for hyp, ref in zip(hypotheses, references, strict=False):
        gold = parse_json_object(ref)
        if gold is None:
            raise CorpusError(f"reference is not a JSON object: {ref[:80]!r}")
        pred = parse_json_object(hyp)
        parsed += pred is not None
        pred = pred or {}
        exact += pred == gold
        if "intent" in gold:
            has_intent += 1
            intents += pred.get("intent") == gold["intent"]
        gold_fields, pred_fields = _fields(gold), _fields(pred)
        tp += len(gold_fields & pred_fields)
        n_pred += len(pred_fields)
        n_gold += len(gold_fields)
    n = len(hypotheses)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    scores = {"parse_rate": parsed / n, "exact_match": exact / n, "slot_precision": precision, "slot_recall": recall, "slot_f1": f1}
    if has_intent:
        scores["intent_accuracy"] = intents / has_intent
    return {k: round(v, 4) for k, v in scores.items()}


def score_answers(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                  inputs: Sequence[str] | None = None) -> dict[str, Any]:
    """Score answers by task: JSON against each first reference, text against all references.

    With `inputs` that are E2E-style attribute lists, text answers are also checked for faithfulness
    (`score_faithfulness`: every attribute stated, none invented).

    Returns:
        {"task": "json"|"text", metric: value, ...}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"need one reference list per answer, got {len(hypotheses)} answers and {len(references)} reference lists")
    task = detect_task([refs[0] for refs in references])
    if task == "json":
        return {"task": task, **score_json(list(hypotheses), [refs[0] for refs in references])}
    scores = {"task": task, **score_text(list(hypotheses), [list(refs) for refs in references])}
    if inputs is not None and len(inputs) != len(hypotheses):
        raise ValueError(f"need one input per answer, got {len(hypotheses)} answers and {len(inputs)} inputs")
    if inputs is not None and is_attribute_task(inputs):
        scores.update(score_faithfulness(hypotheses, inputs))
    return scores


def answer(lm: LoadedModel, task_input: str, max_new_tokens: int = 128, drafter: Any = None,
           llamacpp: Any = None) -> tuple[str, int, int]:
    """The model's greedy answer to one input, its length in tokens, and the forward passes it took
    (on llama.cpp when `llamacpp`, a `LlamaCppEngine` of the same model, is given)."""
    from tasc.spec.decode import DecodeConfig, generate

    ids = lm.prompt_format.prompt_ids(lm.tokenizer, task_input)
    if llamacpp is not None:
        from tasc.spec.llamacpp import llamacpp_generate

        result = llamacpp_generate(llamacpp.context, ids, drafter, DecodeConfig(max_new_tokens), lm.eos_token_id)
    else:
        result = generate(lm.model, ids, drafter, DecodeConfig(max_new_tokens), lm.eos_token_id)
    return lm.tokenizer.decode(result.tokens, skip_special_tokens=True).strip(), len(result.tokens), result.forward_passes


def evaluate(
    lm: LoadedModel,
    heldout: Corpus,
    n: int | None = None,
    max_new_tokens: int = 128,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    draft_corpus: Corpus | None = None,
    llamacpp: Any = None,
) -> dict[str, Any]:
    """Answer up to `n` distinct held-out inputs greedily and score them against their references.

    `draft_corpus` (e.g. the training rows) only speeds decoding up: its outputs feed TASC-spec drafts.
    `llamacpp` (a `LlamaCppEngine` of `lm`'s model) decodes on llama.cpp: its greedy answers are scored.

    Returns:
        {"task": "json"|"text", metric: value, ..., "n", "wall_s", "answer_tokens", "forward_passes",
        "answers": [...]}.
    """
    from tasc.methods import Resources, build_drafter, get
    from tasc.spec.drafts import build_corpus_index

    if heldout.inputs is None:
        raise CorpusError(f"{heldout.source} has outputs only: evaluation needs inputs and reference outputs")
    refs = references_by_input(heldout)
    inputs = list(refs)[:n] if n else list(refs)
    # Lossless either way: drafts only decide how many greedy tokens one forward pass yields.
    if draft_corpus is not None and draft_corpus.outputs:
        index = build_corpus_index(lm.tokenizer, draft_corpus.outputs, draft_corpus.inputs, lm.prompt_format)
        drafter = build_drafter(get("tasc-spec"), Resources(lm, index))
    else:
        drafter = build_drafter(get("tasc-context"), Resources(lm))
    hypotheses, tokens, passes = [], 0, 0
    t0 = time.perf_counter()
    for k, task_input in enumerate(inputs):
        check_cancel(cancel)
        text, n_tokens, n_passes = answer(lm, task_input, max_new_tokens, drafter, llamacpp)
        hypotheses.append(text)
        tokens += n_tokens
        passes += n_passes
        if on_progress:
            on_progress(Progress("evaluate", k + 1, len(inputs), time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    return {
        **score_answers(hypotheses, [refs[i] for i in inputs], inputs),
        "n": len(inputs),
        "model": lm.name,
        "engine": "torch" if llamacpp is None else f"llamacpp ({llamacpp.path.name})",
        "corpus": heldout.source,
        "wall_s": round(wall, 2),
        "answer_tokens": tokens,
        "answer_chars": sum(map(len, hypotheses)),
        "forward_passes": passes,
        "answers": [{"input": i, "output": h, "references": refs[i]} for i, h in zip(inputs, hypotheses, strict=False)],
    }
