"""Training-data augmentation for data-to-text (E2E-style `name[X], area[Y]` inputs): what a small corpus
ties together that a model must learn to take apart.

**Attribute dropout** (`with_attribute_dropout`): copies of faithful rows with one attribute taken out of both
the input and the reference, so a model sees that an attribute it is not given is not stated.

Why: a small corpus ties attributes together. In E2E dev without three held-out names every coffee shop
has a food, so a model fine-tuned on it writes "... a coffee shop that serves English food" for a coffee
shop given no food (4 of 73 unseen-name answers, README, issue 21). A copy is made only where the removal
is clean and the faithfulness checker accepts the result: the new reference states every remaining
attribute and invents none, and no "food"/"cuisine" word is left behind.

Two ways to take an attribute out, both conservative (most rows yield no copy for most attributes):
- a whole sentence after the first that states the attribute alone ("It is family friendly.");
- for `food`, the attribute E2E's coffee shops always carry, a relative or participle clause ("that serves
  Italian food", "serving Italian cuisine") or the adjective before "coffee shop" ("an Italian coffee shop").

**New names** (`with_new_names`): a share of rows get a name made of the corpus's own name words in a new
combination ("Cotto Golden Wrestlers"), in the input and every place the reference writes it. With 17 training
names a model learns the names rather than to copy one, and on an unseen three-word name it writes "The
restaurant, called Travellers, ..." (README, issue 21). Words that read as an attribute ("Indian", "Café")
are left out of the pool, so a new name never states one.
"""

from __future__ import annotations

import random
import re
from typing import Iterator

from tasc.core.corpus import Corpus, compute_stats, parse_attributes
from tasc.core.faithfulness import attribute_inputs, check_faithfulness

_DISH = r"(?:food|cuisine|dishes|meals)"
_LEFT_OVER = re.compile(r"\bfood|\bcuisine", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _attribute_list(attributes: list[tuple[str, str]]) -> str:
    """An input written back as `name[X], area[Y]`."""
    return ", ".join(f"{a}[{v}]" for a, v in attributes)


def _food_clause_patterns(food: str) -> list[str]:
    """Regexes of the phrases that state `food` and can be cut without breaking the sentence."""
    f = re.escape(food)
    return [
        rf",?\s*(?:that|which)\s+(?:also\s+)?(?:serves|offers|provides|sells|speciali[sz]es in|features)\s+"
        rf"(?:\w+\s+){{0,2}}?{f}\s+{_DISH}\b",
        rf",?\s*(?:also\s+)?(?:serving|offering|providing|selling|featuring|with)\s+(?:\w+\s+){{0,2}}?{f}\s+{_DISH}\b",
        rf"(?:,\s*)?\b{f}(?:\s+food)?\s+(?=coffee[- ]?shop)",
    ]


def _tidy(text: str) -> str:
    """Spacing and the article fixed after a cut ("an Italian coffee shop" lost "Italian": "a coffee shop")."""
    text = re.sub(r"\b([Aa])n(\s+coffee)", r"\1\2", text)
    text = re.sub(r"\s+([,.])", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def _without(output: str, attribute: str, value: str) -> Iterator[str]:
    """Candidate rewrites of `output` that no longer state `attribute`, most local cut first."""
    if attribute == "food":
        for pattern in _food_clause_patterns(value):
            cut, n = re.subn(pattern, " ", output, flags=re.I)
            if n:
                yield _tidy(cut)
    sentences = [s for s in _SENTENCE_END.split(output.strip()) if s]
    for k in range(1, len(sentences)):  # the first sentence introduces the name; never drop it
        yield _tidy(" ".join(sentences[:k] + sentences[k + 1:]))


def dropout_row(task_input: str, output: str) -> list[tuple[str, str]]:
    """The clean (input, output) copies of one faithful row, each with one attribute (never `name`) removed."""
    attributes = parse_attributes(task_input)
    if not attributes or any(check_faithfulness(output, attributes).values()):
        return []
    copies = []
    for attribute, value in attributes:
        if attribute == "name":
            continue
        rest = [(a, v) for a, v in attributes if a != attribute]
        for cut in _without(output, attribute, value):
            clean = not any(check_faithfulness(cut, rest).values())
            if clean and not (attribute == "food" and _LEFT_OVER.search(cut)):
                copies.append((_attribute_list(rest), cut))
                break
    return copies


def with_attribute_dropout(corpus: Corpus) -> Corpus:
    """The corpus followed by the attribute-dropout copies of its faithful rows; `CorpusError` when its inputs
    are not attribute lists."""
    inputs = attribute_inputs(corpus, "attribute dropout")
    copies = [pair for task_input, output in zip(inputs, corpus.outputs, strict=True)
              for pair in dropout_row(task_input, output)]
    new_inputs = inputs + [i for i, _ in copies]
    new_outputs = corpus.outputs + [o for _, o in copies]
    return Corpus(new_outputs, new_inputs, f"{corpus.source} (+{len(copies)} attribute-dropout copies)",
                  compute_stats(new_outputs, new_inputs))


def _name_words(corpus: Corpus) -> list[str]:
    """The words of the corpus's `name`/`near` values that do not read as an attribute, sorted."""
    words = set()
    for task_input in corpus.inputs or []:
        for attribute, value in parse_attributes(task_input) or []:
            if attribute in ("name", "near"):
                words.update(value.split())
    return sorted(w for w in words if w[:1].isupper() and w != "The"
                  and not check_faithfulness(f"Xx {w}", [("name", "Xx")])["invented"])


def with_new_names(corpus: Corpus, share: float = 0.5, seed: int = 0) -> Corpus:
    """The corpus with `share` of its rows renamed: a new name of 1-3 of the corpus's own name words (after
    "The" in a third of them) replaces `name[...]` in the input and in the reference; rows whose reference does
    not write the name as given keep it. `CorpusError` when the inputs are not attribute lists with a name."""
    inputs = attribute_inputs(corpus, "renaming rows")
    if not 0 <= share <= 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    words, rng = _name_words(corpus), random.Random(seed)
    taken = {v for i in inputs for a, v in parse_attributes(i) or [] if a in ("name", "near")}
    new_inputs, new_outputs, renamed = list(inputs), list(corpus.outputs), 0
    for k, (task_input, output) in enumerate(zip(inputs, corpus.outputs, strict=True)):
        attributes = parse_attributes(task_input) or []
        name = dict(attributes).get("name")
        if len(words) < 3 or name is None or name not in output or rng.random() >= share:
            continue
        new = " ".join(rng.sample(words, rng.randint(1, 3)))
        new = f"The {new}" if rng.random() < 1 / 3 else new
        if new in taken:
            continue
        new_inputs[k] = _attribute_list([(a, new if a == "name" else v) for a, v in attributes])
        new_outputs[k] = output.replace(name, new)
        renamed += 1
    return Corpus(new_outputs, new_inputs, f"{corpus.source} ({renamed} rows renamed)",
                  compute_stats(new_outputs, new_inputs))
