"""Attribute dropout: clean copies of faithful data-to-text rows with one attribute cut from input and output."""

from __future__ import annotations

import pytest

from tasc.core.corpus import Corpus, compute_stats, load_corpus, parse_attributes, select_split
from tasc.core.errors import CorpusError
from tasc.core.faithfulness import check_faithfulness, faithful_rows
from tasc.ft.augment import dropout_row, with_attribute_dropout

COFFEE = "name[Aromi], eatType[coffee shop], food[Italian], area[riverside]"


def copies(task_input: str, output: str) -> dict[str, str]:
    """The dropout copies of one row, keyed by the attribute each one lost."""
    given = {a for a, _ in parse_attributes(task_input) or []}
    out = {}
    for new_input, new_output in dropout_row(task_input, output):
        (lost,) = given - {a for a, _ in parse_attributes(new_input) or []}
        out[lost] = new_output
    return out


@pytest.mark.parametrize(("output", "without_food"), [
    ("Aromi is a coffee shop that serves Italian food in the riverside area.",
     "Aromi is a coffee shop in the riverside area."),
    ("Aromi is a coffee shop in the riverside area, serving Italian cuisine.",
     "Aromi is a coffee shop in the riverside area."),
    ("Aromi is an Italian coffee shop in the riverside area.", "Aromi is a coffee shop in the riverside area."),
    ("Aromi is a coffee shop in the riverside area. They serve Italian food.",
     "Aromi is a coffee shop in the riverside area."),
])
def test_food_is_cut_cleanly(output, without_food):
    got = copies(COFFEE, output)
    assert got["food"] == without_food
    assert not any(check_faithfulness(without_food, parse_attributes(COFFEE.replace(", food[Italian]", "")) or []).values())


def test_a_sentence_stating_one_attribute_alone_is_dropped_with_it():
    task_input = "name[Aromi], eatType[pub], customer rating[high], familyFriendly[yes]"
    got = copies(task_input, "Aromi is a highly rated pub. It is family friendly.")
    assert got == {"familyFriendly": "Aromi is a highly rated pub."}  # the rating shares the first sentence


def test_no_copy_when_the_cut_would_break_the_sentence_or_leave_the_attribute():
    # "It sells Italian food" has a subject: cutting the clause would leave "It." behind, and dropping the
    # sentence is not possible (it is the first). So no food copy.
    assert "food" not in copies(COFFEE, "It sells Italian food, Aromi, a coffee shop by the riverside.")
    # A food word left behind ("food" without the cuisine) is not a clean cut either.
    assert "food" not in copies(COFFEE, "Aromi is a coffee shop by the riverside with good Italian food and food.")


def test_unfaithful_rows_and_the_name_are_never_cut():
    assert dropout_row(COFFEE, "Aromi is a coffee shop.") == []  # food and area missing: not faithful
    assert all(parse_attributes(i)[0][0] == "name"  # type: ignore[index]
               for i, _ in dropout_row(COFFEE, "Aromi is an Italian coffee shop. It is by the river."))


def test_with_attribute_dropout_keeps_the_rows_and_adds_only_faithful_copies(data_dir):
    e2e = load_corpus(data_dir / "e2e" / "dev.jsonl")
    train = faithful_rows(select_split(e2e, "train", 0.1, 0, "entity"))
    grown = with_attribute_dropout(train)
    assert grown.outputs[: len(train)] == train.outputs and grown.inputs[: len(train)] == train.inputs  # type: ignore[index]
    added = list(zip(grown.inputs[len(train):], grown.outputs[len(train):], strict=True))  # type: ignore[index]
    assert len(added) > len(train) // 4 and f"+{len(added)} attribute-dropout copies" in grown.source
    for task_input, output in added:
        assert not any(check_faithfulness(output, parse_attributes(task_input) or []).values())
    # The pairing it is for: the training names' coffee shops all have a food; the copies show ones without.
    coffee = [dict(parse_attributes(i) or []) for i, _ in added]
    assert sum(a.get("eatType") == "coffee shop" and "food" not in a for a in coffee) > 500
    assert not any(a.get("eatType") == "coffee shop" and "food" not in a
                   for a in (dict(parse_attributes(i) or []) for i in train.inputs or []))


def test_a_corpus_without_attribute_inputs_is_refused():
    rows = Corpus(['{"intent": "x"}'], ["play music"], "snips-like", compute_stats(['{"intent": "x"}'], ["play music"]))
    with pytest.raises(CorpusError, match="attribute-list inputs"):
        with_attribute_dropout(rows)


def test_new_names_rename_input_and_reference_together_from_the_corpus_words(data_dir):
    from tasc.ft.augment import with_new_names

    train = faithful_rows(select_split(load_corpus(data_dir / "e2e" / "dev.jsonl"), "train", 0.1, 0, "entity"))
    renamed = with_new_names(train, share=0.5, seed=0)
    assert len(renamed) == len(train)
    known = {dict(parse_attributes(i) or [])["name"] for i in train.inputs or []}
    words = {w for name in known for w in name.split()} | {
        w for i in train.inputs or [] for w in dict(parse_attributes(i) or []).get("near", "").split()}
    changed = 0
    for (old_in, old_out), (new_in, new_out) in zip(train.pairs(), renamed.pairs(), strict=True):
        old, new = dict(parse_attributes(old_in) or []), dict(parse_attributes(new_in) or [])
        assert {a: v for a, v in old.items() if a != "name"} == {a: v for a, v in new.items() if a != "name"}
        if old["name"] == new["name"]:
            assert new_out == old_out
            continue
        changed += 1
        assert new["name"] not in known and set(new["name"].split()) <= words  # new, made of the corpus's words
        assert new["name"] in new_out and new_out == old_out.replace(old["name"], new["name"])
        assert not any(check_faithfulness(new_out, list(new.items())).values())  # no name word reads as a fact
    assert 0.3 * len(train) < changed < 0.6 * len(train)
    assert f"{changed} rows renamed" in renamed.source
    assert with_new_names(train, share=0.0).pairs() == train.pairs()
    with pytest.raises(ValueError, match="share"):
        with_new_names(train, share=1.5)
