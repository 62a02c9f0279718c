"""Faithfulness of data-to-text answers: every input attribute stated, none invented (hand-written cases)."""

from __future__ import annotations

import pytest

from tasc.bench.evaluate import score_answers
from tasc.bench.report import quality_text, split_text
from tasc.core.corpus import load_corpus, parse_attributes
from tasc.core.errors import CorpusError
from tasc.core.faithfulness import check_faithfulness, faithful_rows, is_attribute_task, score_faithfulness

BLUE_SPICE = "name[Blue Spice], eatType[coffee shop], area[city centre]"


def verdict(answer: str, task_input: str) -> dict[str, list[str]]:
    """Missing and invented attributes of `answer` for an attribute-list input."""
    attributes = parse_attributes(task_input)
    assert attributes is not None
    return check_faithfulness(answer, attributes)


def test_issue_example_invents_food():
    answer = ("Blue Spice is a coffee shop in the city centre that serves English food. "
              "It is located near the city centre.")
    assert verdict(answer, BLUE_SPICE) == {"missing": [], "invented": ["food"]}  # "near the city centre" is area
    assert verdict("Blue Spice is a coffee shop in the city centre.", BLUE_SPICE) == {"missing": [], "invented": []}


@pytest.mark.parametrize(("answer", "missing"), [
    ("Blue Spice is a coffee shop.", ["area"]),
    ("There is a coffee shop in the centre of town.", ["name"]),
    ("Blue Spice is in the city centre.", ["eatType"]),
])
def test_missing_attributes(answer, missing):
    assert verdict(answer, BLUE_SPICE)["missing"] == missing


@pytest.mark.parametrize(("task_input", "answer"), [
    ("name[The Eagle], priceRange[less than £20]", "The Eagle is cheap."),
    ("name[The Eagle], priceRange[cheap]", "The Eagle has prices under £20."),
    ("name[The Eagle], priceRange[£20-25]", "The Eagle is moderately priced."),
    ("name[The Eagle], priceRange[moderate]", "The Eagle has an average price range."),
    ("name[The Eagle], priceRange[high]", "The Eagle is expensive."),
    ("name[The Eagle], customer rating[5 out of 5]", "The Eagle is rated five out of five."),
    ("name[The Eagle], customer rating[low]", "The Eagle has a low customer rating."),
    ("name[The Eagle], customer rating[average]", "Customers rate The Eagle as average."),
    ("name[The Eagle], familyFriendly[yes]", "The Eagle is kid friendly."),
    ("name[The Eagle], familyFriendly[yes]", "Children are welcome at The Eagle."),
    ("name[The Eagle], familyFriendly[no]", "The Eagle is not family-friendly."),
    ("name[The Eagle], familyFriendly[no]", "The Eagle does not allow children."),
    ("name[The Eagle], area[riverside]", "The Eagle is by the river."),
    ("name[The Eagle], eatType[pub], food[Fast food]", "The Eagle is a fast food pub."),
    ("name[The Eagle], near[Burger King]", "The Eagle is near Burger King."),
])
def test_lexicalisations_count_as_stated(task_input, answer):
    assert verdict(answer, task_input) == {"missing": [], "invented": []}


@pytest.mark.parametrize(("task_input", "answer", "missing"), [
    ("name[The Eagle], priceRange[high]", "The Eagle is cheap.", ["priceRange"]),  # a different price class
    ("name[The Eagle], familyFriendly[yes]", "The Eagle is not family-friendly.", ["familyFriendly"]),
    ("name[The Eagle], familyFriendly[no]", "The Eagle is family-friendly.", ["familyFriendly"]),
    ("name[The Eagle], customer rating[high]", "The Eagle has a low customer rating.", ["customer rating"]),
    ("name[The Eagle], near[Burger King]", "The Eagle is near a burger bar.", ["near"]),
])
def test_wrong_values_are_missing(task_input, answer, missing):
    assert verdict(answer, task_input)["missing"] == missing


@pytest.mark.parametrize(("answer", "invented"), [
    ("The Eagle is a cheap pub.", ["eatType", "priceRange"]),
    ("The Eagle is rated 3 out of 5.", ["customer rating"]),
    ("The Eagle, near Café Rouge, is family friendly.", ["familyFriendly", "near"]),
    ("The Eagle is a restaurant near the riverside.", ["area"]),  # generic "restaurant" is no eatType
])
def test_invented_attributes(answer, invented):
    assert verdict(answer, "name[The Eagle]")["invented"] == invented


def test_names_do_not_read_as_other_attributes():
    # "Raja Indian Cuisine" is no food and "Café Brazil" no coffee shop when they are the near[...] value.
    task_input = "name[Aromi], near[Raja Indian Cuisine], area[riverside]"
    assert verdict("Aromi is by the riverside near Raja Indian Cuisine.", task_input) == {"missing": [], "invented": []}
    assert verdict("Aromi is by the river near Café Brazil.", "name[Aromi], near[Café Brazil], area[riverside]")[
        "invented"] == []


def test_score_faithfulness_rates():
    inputs = [BLUE_SPICE] * 4
    answers = ["Blue Spice is a coffee shop in the city centre.",
               "Blue Spice is a coffee shop in the city centre that serves English food.",
               "Blue Spice is a coffee shop.",
               "Blue Spice is a cheap coffee shop."]
    assert score_faithfulness(answers, inputs) == {"faithful": 0.25, "missing": 0.5, "invented": 0.5}
    with pytest.raises(ValueError, match="not an attribute list"):
        score_faithfulness(["x"], ["play jazz"])
    with pytest.raises(ValueError, match="one input per answer"):
        score_faithfulness(["x", "y"], [BLUE_SPICE])


def test_score_answers_adds_faithfulness_for_attribute_inputs():
    refs = [["Blue Spice is a coffee shop in the city centre."]]
    answers = ["Blue Spice is a coffee shop in the city centre that serves English food."]
    scored = score_answers(answers, refs, [BLUE_SPICE])
    assert scored["task"] == "text" and {"bleu", "chrf"} <= set(scored)
    assert (scored["faithful"], scored["missing"], scored["invented"]) == (0.0, 0.0, 1.0)
    assert "faithful" not in score_answers(answers, refs)  # no inputs: nothing to check against
    assert "faithful" not in score_answers(answers, refs, ["tell me about Blue Spice"])
    assert not is_attribute_task(["tell me about Blue Spice"]) and is_attribute_task([BLUE_SPICE])
    assert "faithful 0" in quality_text(scored)


def test_split_text_names_the_parts():
    report = {"corpus": "dev.jsonl (train by entity: 86.7% of inputs, seed 0)",
              "prompts": "dev.jsonl (held-out by entity: 13.3% of inputs, seed 0)"}
    assert split_text(report) == ("corpus dev.jsonl (train by entity: 86.7% of inputs, seed 0); "
                                  "prompts dev.jsonl (held-out by entity: 13.3% of inputs, seed 0)")


def test_e2e_references_score_high(data_dir):
    """The 4,672 human references of E2E dev: 68% state every attribute and invent none (E2E references are known
    to leave attributes out, Dušek et al. 2019); under 2% invent one."""
    c = load_corpus(data_dir / "e2e" / "dev.jsonl")
    scores = score_faithfulness(c.outputs, c.inputs or [])
    assert scores["faithful"] >= 0.65 and scores["invented"] <= 0.02, scores
    shuffled = c.outputs[1:] + c.outputs[:1]  # answers paired with the wrong inputs nearly never fit
    assert score_faithfulness(shuffled[::50], (c.inputs or [])[::50])["faithful"] < scores["faithful"]


def test_faithful_rows_keeps_references_that_state_their_input(data_dir):
    c = load_corpus(data_dir / "e2e" / "dev.jsonl")
    kept = faithful_rows(c)
    assert 0.6 * len(c) <= len(kept) < 0.75 * len(c), len(kept)
    assert score_faithfulness(kept.outputs, kept.inputs or []) == {"faithful": 1.0, "missing": 0.0, "invented": 0.0}
    assert f"faithful rows: {len(kept)} of {len(c)}" in kept.source
    dropped = set(zip(c.inputs or [], c.outputs, strict=True)) - set(zip(kept.inputs or [], kept.outputs, strict=True))
    assert all(score_faithfulness([o], [i])["faithful"] == 0.0 for i, o in list(dropped)[:50])


def test_faithful_rows_refuses_what_it_cannot_check():
    from tasc.core.corpus import Corpus, compute_stats

    json_task = Corpus(['{"intent": "x"}'], ["play jazz"], "snips", compute_stats(['{"intent": "x"}'], ["play jazz"]))
    with pytest.raises(CorpusError, match="attribute-list inputs"):
        faithful_rows(json_task)
    unfaithful = Corpus(["A pub."], [BLUE_SPICE], "e2e", compute_stats(["A pub."], [BLUE_SPICE]))
    with pytest.raises(CorpusError, match="no output states"):
        faithful_rows(unfaithful)
