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
import re
import threading
import time
from typing import Any, Sequence

from tasc.core.corpus import Corpus, parse_attributes, references_by_input
from tasc.core.errors import CorpusError
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


# --- faithfulness of data-to-text answers (E2E-style attribute inputs) ------------------------------------
# A deliberately simple slot matcher: an attribute is "stated" when one of its value's phrasings occurs in
# the answer. Values of one price / rating class share phrasings (E2E writes "cheap" and "less than £20"
# for the same thing). `name` and `near` are matched literally and blanked out first, so "Raja Indian
# Cuisine" or "Café Brazil" do not read as food or as a coffee shop. An absent name cannot be detected
# (every E2E input has one); an absent `near` counts as invented when "near"/"close to"/"next to" is
# followed by a capitalised word other than an area word (a place name; "near the City centre" is area).
# The human references of E2E dev score 68% faithful (most misses are real: E2E references often leave an
# attribute out), 1% invented: a model near that is as faithful as the references.
E2E_ATTRIBUTES = ("name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near")
_W = r"\W+(?:\w+\W+){0,3}?"  # up to three words between two cues


def _either(word: str, anchor: str) -> str:
    """A regex for `word` within a few words of `anchor`, in either order."""
    return rf"\b(?:{word})\w*{_W}(?:{anchor})|(?:{anchor})\w*{_W}(?:{word})\b"


_PRICE, _RATING = r"pric|cost", r"rat|review|score|star"
_PRICE_CLASSES = {
    "low": r"cheap|inexpensive|affordabl|budget|(?:less than|under|below)\s*£?\s*20\b|£\s*20\s*or (?:less|under)|" + _either("low", _PRICE),
    "mid": r"moderate(?:ly)?[- ]pric|mid[- ]?range|reasonabl[ey]|£?\s*\b20\s*(?:-|–|to)\s*£?\s*25\b|"
           + _either("moderate|average|medium|mid", _PRICE),
    "high": r"expensive|pricey|costly|high[- ]end|upscale|(?:more than|over|above|from|starting at)\s*£?\s*30\b|£\s*30\s*(?:\+|or more|minimum)|" + _either("high", _PRICE),
}
_RATING_CLASSES = {
    "low": r"\b(?:1|one)(?:\s*out of\s*(?:5|five)|[- ]star|\s*/\s*5)|poorly[- ]rated|badly[- ]rated|"
           + _either("low|poor|bad", _RATING),
    "mid": r"\b(?:3|three)(?:\s*out of\s*(?:5|five)|[- ]star|\s*/\s*5)|" + _either("average|medium|moderate|decent", _RATING),
    "high": r"\b(?:5|five)(?:\s*out of\s*(?:5|five)|[- ]star|\s*/\s*5)|highly[- ]rated|well[- ]rated|"
            + _either("high|excellent|great|top|good|very good|well", _RATING),
}
# value -> regex of its phrasings, per attribute; None: any phrasing of the attribute (to spot inventions)
_VALUES: dict[str, dict[str, str]] = {
    "eatType": {"coffee shop": r"coffee[- ]?shop|caf[eé]\b(?!(?-i:\s+[A-Z]))", "pub": r"\bpub\b", "restaurant": r"\brestaurant"},
    "food": {"English": r"\benglish\b|\bbritish\b", "Chinese": r"\bchinese\b", "Italian": r"\bitalian\b",
             "French": r"\bfrench\b", "Indian": r"\bindian\b", "Japanese": r"\bjapanese\b|\bsushi\b",
             "Fast food": r"fast[- ]food|burgers?\b"},
    "priceRange": {"cheap": _PRICE_CLASSES["low"], "less than £20": _PRICE_CLASSES["low"],
                   "moderate": _PRICE_CLASSES["mid"], "£20-25": _PRICE_CLASSES["mid"],
                   "high": _PRICE_CLASSES["high"], "more than £30": _PRICE_CLASSES["high"]},
    "customer rating": {"low": _RATING_CLASSES["low"], "1 out of 5": _RATING_CLASSES["low"],
                        "average": _RATING_CLASSES["mid"], "3 out of 5": _RATING_CLASSES["mid"],
                        "high": _RATING_CLASSES["high"], "5 out of 5": _RATING_CLASSES["high"]},
    "area": {"city centre": r"cent(?:re|er)|downtown|middle of (?:the )?(?:city|town)|heart of (?:the )?(?:city|town)",
             "riverside": r"river|waterfront|water'?s edge|by the water"},
}
# "Café Rouge" (a capitalised word after café) is a place name, not an eatType.
# Mentions of an attribute whatever its value, for those E2E often leaves out (generic "restaurant" is not one).
_ANY = {
    "eatType": r"coffee[- ]?shop|caf[eé]\b(?!(?-i:\s+[A-Z]))|\bpub\b",
    "priceRange": r"£|\bpric(?:e|ed|es|ing|ey)\b|cheap|expensive|affordabl|\bcosts?\b",
    "customer rating": r"\brat(?:ed|ing|ings)\b|\bstars?\b|out of (?:5|five)\b|\breviews?\b",
    "near": r"\b(?:[Nn]ear|[Cc]lose to|[Nn]ext to)\s+(?:the\s+)?(?!(?i:city|centre|center|river|riverside)\b)[A-Z]",
}
_FAMILY = re.compile(r"\b(?:family|families|kid|kids|child|children|adults?)\b", re.I)
_NEGATION = re.compile(r"\b(?:not|no|non|never|without|isn't|aren't|doesn't|don't|won't)\b|n't\b", re.I)


def _family_mentions(text: str) -> set[str]:
    """"yes"/"no" for each family-friendliness statement in `text` (a negation near it, or "adults", means no)."""
    found = set()
    for m in _FAMILY.finditer(text):
        before, after = text[max(0, m.start() - 25): m.start()], text[m.end(): m.end() + 25]
        after = re.split(r"[.,;]", after, maxsplit=1)[0]
        negated = bool(_NEGATION.search(before) or _NEGATION.search(after)) or m.group().lower().startswith("adult")
        found.add("no" if negated else "yes")
    return found


def _states(text: str, attribute: str, value: str | None) -> bool:
    """Whether `text` (names blanked out) states `attribute` with `value`, or at all when `value` is None."""
    if attribute == "familyFriendly":
        mentions = _family_mentions(text)
        return bool(mentions) if value is None else value.lower() in mentions
    if value is None:
        pattern = _ANY.get(attribute) or "|".join(f"(?:{p})" for p in _VALUES.get(attribute, {}).values())
        flags = 0 if attribute == "near" else re.I  # a place name after "near" is capitalised
        return bool(pattern) and re.search(pattern, text, flags) is not None
    # A value we have no phrasing for must appear as written.
    pattern = _VALUES.get(attribute, {}).get(value) or re.escape(value)
    return re.search(pattern, text, re.I) is not None


def check_faithfulness(answer: str, attributes: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The input attributes an answer leaves out ("missing") and known attributes it states without being given
    them ("invented")."""
    given = dict(attributes)
    text = " ".join(answer.split())
    literal = [a for a in ("name", "near") if a in given]
    missing: list[str] = [a for a in literal if " ".join(given[a].split()).casefold() not in text.casefold()]
    for a in literal:  # blank out the names so their words do not read as other attributes
        text = re.sub(re.escape(" ".join(given[a].split())), " ", text, flags=re.I)
    missing += [a for a, v in given.items() if a not in literal and not _states(text, a, v)]
    invented = [a for a in E2E_ATTRIBUTES if a not in given and a != "name" and _states(text, a, None)]
    return {"missing": missing, "invented": invented}


def score_faithfulness(hypotheses: Sequence[str], inputs: Sequence[str]) -> dict[str, float]:
    """Shares of answers that state every input attribute and invent none ("faithful"), that miss one
    ("missing"), and that invent one ("invented"); `ValueError` when an input is not an attribute list."""
    if len(hypotheses) != len(inputs) or not hypotheses:
        raise ValueError(f"need one input per answer, got {len(hypotheses)} answers and {len(inputs)} inputs")
    faithful = missing = invented = 0
    for hyp, task_input in zip(hypotheses, inputs, strict=True):
        attributes = parse_attributes(task_input)
        if attributes is None:
            raise ValueError(f"input is not an attribute list like name[X], area[Y]: {task_input[:80]!r}")
        verdict = check_faithfulness(hyp, attributes)
        missing += bool(verdict["missing"])
        invented += bool(verdict["invented"])
        faithful += not verdict["missing"] and not verdict["invented"]
    n = len(hypotheses)
    return {"faithful": round(faithful / n, 4), "missing": round(missing / n, 4), "invented": round(invented / n, 4)}


def is_attribute_task(inputs: Sequence[str]) -> bool:
    """Whether every input is an E2E-style attribute list naming at least one known E2E attribute."""
    parsed = [parse_attributes(i) for i in inputs]
    return bool(parsed) and all(p is not None and any(a in E2E_ATTRIBUTES for a, _ in p) for p in parsed)


def answer(lm: LoadedModel, task_input: str, max_new_tokens: int = 128, drafter: Any = None) -> tuple[str, int, int]:
    """The model's greedy answer to one input, its length in tokens, and the forward passes it took."""
    from tasc.spec.decode import DecodeConfig, generate

    ids = lm.prompt_format.prompt_ids(lm.tokenizer, task_input)
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
) -> dict[str, Any]:
    """Answer up to `n` distinct held-out inputs greedily and score them against their references.

    `draft_corpus` (e.g. the training rows) only speeds decoding up: its outputs feed TASC-spec drafts.

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
        text, n_tokens, n_passes = answer(lm, task_input, max_new_tokens, drafter)
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
        "corpus": heldout.source,
        "wall_s": round(wall, 2),
        "answer_tokens": tokens,
        "answer_chars": sum(map(len, hypotheses)),
        "forward_passes": passes,
        "answers": [{"input": i, "output": h, "references": refs[i]} for i, h in zip(inputs, hypotheses, strict=False)],
    }
