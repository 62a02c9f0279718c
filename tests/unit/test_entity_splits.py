"""Splits that share no entity with training: whole E2E names, JSON rows with unseen slot values; the CLI flag."""

from __future__ import annotations

import argparse
import json

import pytest

from tasc.cli import build_parser
from tasc.commands.options import split_settings
from tasc.core.corpus import (
    Corpus,
    entity_rule,
    load_corpus,
    parse_attributes,
    parse_corpus_bytes,
    select_split,
    slot_values,
    split_by_entity,
)
from tasc.core.errors import CorpusError

NAMES = ["Alimentum", "Aromi", "Blue Spice", "Clowns", "Cotto", "Fitzbillies", "Loch Fyne", "The Eagle",
         "The Mill", "Zizzi"]


def jsonl(*rows: dict) -> bytes:
    """JSON Lines bytes of these rows."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def e2e_like() -> Corpus:
    """10 names x 4 inputs x 2 references; each name's outputs mention only that name."""
    rows = []
    for k, name in enumerate(NAMES):
        for area in ("riverside", "city centre"):
            for food in ("English", "Chinese"):
                inp = f"name[{name}], eatType[pub], food[{food}], area[{area}]"
                if k % 3 == 0:  # a near[...] naming another restaurant ties the two names together
                    inp += f", near[{NAMES[(k + 1) % len(NAMES)]}]"
                rows += [{"input": inp, "output": f"{name} is a {food} pub in the {area} ({r})."} for r in range(2)]
    return parse_corpus_bytes(jsonl(*rows), "e2e_like.jsonl")


def names_of(corpus: Corpus) -> set[str]:
    """The name[...] and near[...] values of a corpus's inputs."""
    return {v for i in corpus.inputs or [] for a, v in parse_attributes(i) or [] if a in ("name", "near")}


def held_names(held: Corpus) -> set[str]:
    """The name[...] values of held-out inputs."""
    return {v for i in held.inputs or [] for a, v in parse_attributes(i) or [] if a == "name"}


def test_parse_attributes():
    assert parse_attributes("name[Blue Spice], eatType[coffee shop], customer rating[5 out of 5]") == [
        ("name", "Blue Spice"), ("eatType", "coffee shop"), ("customer rating", "5 out of 5")]
    assert parse_attributes("play jazz on spotify") is None
    assert parse_attributes("name[Blue Spice] and more") is None
    assert parse_attributes("") is None


def test_slot_values_split_repeated_slots():
    out = json.dumps({"intent": "X", "slots": {"artist": "Miles  Davis | Coltrane", "year": "1959"}})
    assert slot_values(out) == ["miles davis", "coltrane", "1959"]
    assert slot_values('{"intent": "X"}') is None and slot_values("not json") is None


def test_e2e_entity_split_on_synthetic_corpus():
    c = e2e_like()
    assert entity_rule(c) == "name"
    train, held = split_by_entity(c, 0.2, seed=0)
    assert len(train) + len(held) == len(c) and len(held) > 0
    assert sorted(train.pairs() + held.pairs()) == sorted(c.pairs())
    assert not held_names(held) & names_of(train)  # neither as name[...] nor as near[...]
    for name in held_names(held):  # every row of a held-out name is held out
        assert not any(name in i for i in train.inputs or [])
        assert not any(name in o for o in train.outputs)  # here no train output mentions a held-out name


def test_near_ties_names_together():
    c = e2e_like()
    for seed in range(5):
        held = held_names(split_by_entity(c, 0.2, seed)[1])
        # Alimentum's rows say near[Aromi]: holding out either one holds out both.
        assert ("Alimentum" in held) == ("Aromi" in held), seed


def test_entity_split_is_deterministic():
    c = e2e_like()
    a, b = split_by_entity(c, 0.3, seed=7), split_by_entity(c, 0.3, seed=7)
    assert a[0].pairs() == b[0].pairs() and a[1].pairs() == b[1].pairs()
    assert any(split_by_entity(c, 0.3, seed=s)[1].pairs() != a[1].pairs() for s in range(8))


def test_e2e_dev_entity_split(data_dir):
    """E2E dev (20 names, 547 inputs) at 0.1: whole names held out, no held-out name in any train row.

    At seed 0 this holds out 3 names (The Cambridge Blue, The Punter, Travellers Rest Beefeater): 765 rows,
    73 of 547 inputs (13.3%); no train output mentions them either (checked with and without "The").
    """
    c = load_corpus(data_dir / "e2e" / "dev.jsonl")
    assert entity_rule(c) == "name"
    train, held = split_by_entity(c, 0.1, seed=0)
    names = held_names(held)
    assert names and not names & names_of(train)
    assert len(train) + len(held) == len(c)
    share = len(set(held.inputs or [])) / len(set(c.inputs or []))
    assert 0.05 <= share <= 0.2, share  # whole names are indivisible: near the fraction, not at it
    stems = [n.removeprefix("The ").casefold() for n in names]
    assert sum(any(s in o.casefold() for s in stems) for o in train.outputs) == 0


def test_snips_entity_split(data_dir):
    """SNIPS train at 0.1: held-out rows have no slot value that any train output has (about 10% reachable:
    the values of 11,664 of 13,084 rows link into one group, which always stays in train)."""
    c = load_corpus(data_dir / "snips" / "train.jsonl")
    assert entity_rule(c) == "slots"
    train, held = split_by_entity(c, 0.1, seed=0)
    train_values = {v for o in train.outputs for v in slot_values(o) or []}
    held_values = {v for o in held.outputs for v in slot_values(o) or []}
    assert held_values and not held_values & train_values
    assert not set(held.inputs or []) & set(train.inputs or [])
    assert 0.08 <= len(held) / len(c) <= 0.12, len(held)


def test_select_split_labels_name_the_split():
    c = e2e_like()
    held = select_split(c, "heldout", 0.2, 0, by="entity")
    train = select_split(c, "train", 0.2, 0, by="entity")
    assert held.source.startswith("e2e_like.jsonl (held-out by entity: ") and "names held out" in held.source
    assert train.source.startswith("e2e_like.jsonl (train by entity: ") and "seed 0" in train.source
    assert not held_names(held) & names_of(train)
    assert select_split(c, "heldout", 0.2, 0).source == "e2e_like.jsonl (held-out by input: 20% of inputs, seed 0)"
    assert select_split(c, "all", by="entity") is c
    with pytest.raises(ValueError, match="unknown split rule"):
        select_split(c, "train", by="name")


def test_unsupported_corpus_gets_a_clear_error():
    plain = parse_corpus_bytes(jsonl(*({"input": f"q{i}", "output": f"answer {i}"} for i in range(10))), "qa.jsonl")
    with pytest.raises(CorpusError, match=r"qa.jsonl cannot be split by entity: .*attribute lists.*\"slots\""):
        split_by_entity(plain)
    with pytest.raises(CorpusError, match="cannot be split by entity"):
        select_split(plain, "heldout", by="entity")
    one_name = parse_corpus_bytes(jsonl({"input": "name[A], area[riverside]", "output": "A."},
                                        {"input": "name[A], area[city centre]", "output": "A!"}), "one.jsonl")
    with pytest.raises(CorpusError, match="fewer than 2 separable names"):
        split_by_entity(one_name)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every `python -m tasc` subcommand's parser by name."""
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_with_a_split_has_split_by():
    with_split = {name: p for name, p in subcommands().items()
                  if any(o.endswith("-split") or o == "--split" for a in p._actions for o in a.option_strings)}
    assert {"evaluate", "bench", "finetune"} <= set(with_split)
    for name, p in with_split.items():
        (split_by,) = [a for a in p._actions if "--split-by" in a.option_strings]
        assert split_by.choices == ("input", "entity") and split_by.default == "input", name


@pytest.mark.parametrize(("command", "extra"), [
    ("evaluate", ["--corpus", "c.jsonl"]),
    ("finetune", ["--corpus", "c.jsonl", "--out", "o"]),
    ("bench", ["--corpus", "c.jsonl", "--prompts", "p.jsonl", "--prompts-split", "heldout"]),
])
def test_cli_parses_split_by(command, extra):
    parser = build_parser()
    args = parser.parse_args([command, *extra, "--split-by", "entity", "--heldout-fraction", "0.2"])
    assert args.split_by == "entity" and args.heldout_fraction == 0.2
    assert parser.parse_args([command, *extra]).split_by == "input"
    with pytest.raises(SystemExit):
        parser.parse_args([command, *extra, "--split-by", "name"])


def test_split_settings_for_the_run_json():
    args = build_parser().parse_args(["bench", "--corpus", "c", "--prompts", "p", "--corpus-split", "train",
                                      "--prompts-split", "heldout", "--split-by", "entity"])
    assert split_settings(args) == {"corpus_split": "train", "prompts_split": "heldout", "by": "entity",
                                    "heldout_fraction": 0.1, "seed": 0}


def test_unseen_rows_keep_only_entities_the_training_file_lacks(data_dir):
    from tasc.core.corpus import unseen_rows

    train = load_corpus(data_dir / "snips" / "train.jsonl")
    valid = load_corpus(data_dir / "snips" / "valid.jsonl")
    unseen = unseen_rows(valid, train)
    seen = {v for o in train.outputs for v in slot_values(o) or []}
    assert 20 <= len(unseen) < len(valid) // 4, len(unseen)
    assert all(slot_values(o) and not set(slot_values(o) or []) & seen for o in unseen.outputs)
    assert f"{len(unseen)} of {len(valid)} rows" in unseen.source
    e2e = load_corpus(data_dir / "e2e" / "dev.jsonl")
    e2e_train, e2e_held = split_by_entity(e2e, 0.1, seed=0)
    assert len(unseen_rows(e2e_held, e2e_train)) == len(e2e_held)  # the entity split already shares no name
    with pytest.raises(CorpusError, match="every row"):
        unseen_rows(e2e_train, e2e_train)
    with pytest.raises(CorpusError, match="same kind"):
        unseen_rows(valid, e2e)
