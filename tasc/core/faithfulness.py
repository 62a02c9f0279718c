"""Faithfulness of data-to-text answers to E2E-style attribute inputs (`name[X], area[Y]`): which input
attributes an answer leaves out and which it states without being given them. Used to score answers
(`tasc.bench.evaluate`) and to keep training references that state their input (`faithful_rows`)."""

from __future__ import annotations

import re
from typing import Sequence

from tasc.core.corpus import Corpus, parse_attributes
from tasc.core.errors import CorpusError

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


def attribute_inputs(corpus: Corpus, what: str) -> list[str]:
    """The corpus's inputs when they are E2E-style attribute lists; `CorpusError` saying what needs them otherwise."""
    inputs = corpus.inputs
    if inputs is None or not is_attribute_task(inputs):
        raise CorpusError(f"{corpus.source}: {what} needs attribute-list inputs like name[X], area[Y]")
    return inputs


def faithful_rows(corpus: Corpus) -> Corpus:
    """The rows of a data-to-text corpus whose output states every input attribute and invents none.

    E2E's human references leave an attribute out in about a third of rows; a model trained on them learns to
    drop and to invent attributes. `CorpusError` when the corpus has no attribute-list inputs or no row passes."""
    inputs = attribute_inputs(corpus, "keeping faithful rows")
    keep = [i for i, (task_input, output) in enumerate(zip(inputs, corpus.outputs, strict=True))
            if not any(check_faithfulness(output, parse_attributes(task_input) or []).values())]
    if not keep:
        raise CorpusError(f"{corpus.source}: no output states every attribute of its input")
    kept = corpus.subset(keep)
    kept.source = f"{corpus.source} (faithful rows: {len(keep)} of {len(corpus)})"
    return kept
