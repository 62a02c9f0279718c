"""--draft-answers: the model's own answers to corpus inputs, drafted from besides the corpus."""

import argparse
import json

import pytest

from tasc.commands.options import with_draft_answers
from tasc.core.corpus import Corpus, compute_stats, load_corpus


def corpus(outputs, inputs, source="c"):
    return Corpus(outputs, inputs, source, compute_stats(outputs, inputs))


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_plus_keeps_rows_in_order_and_inputs_only_when_both_have_them():
    both = corpus(["a", "b"], ["x", "y"]).plus(corpus(["c"], ["z"], "d"))
    assert both.outputs == ["a", "b", "c"] and both.inputs == ["x", "y", "z"] and both.source == "c + d"
    assert both.stats.rows == 3
    assert corpus(["a"], None).plus(corpus(["c"], ["z"])).inputs is None


def test_answers_join_the_draft_corpus_and_may_not_answer_a_prompt(tmp_path):
    base = corpus(["The Eagle is a pub."], ["name[The Eagle]"])
    path = write(tmp_path / "answers.jsonl", [{"input": "name[Blue Spice]", "output": "Blue Spice is a pub."}])
    assert with_draft_answers(base, argparse.Namespace(draft_answers=None), ["name[Blue Spice]"]) is base
    args = argparse.Namespace(draft_answers=path)
    joined = with_draft_answers(base, args, ["name[Zizzi]"])
    assert joined.outputs == ["The Eagle is a pub.", "Blue Spice is a pub."] and joined.inputs[-1] == "name[Blue Spice]"
    with pytest.raises(ValueError, match="answers to 1 of the prompts"):
        with_draft_answers(base, args, ["name[Zizzi]", "name[Blue Spice]"])
    bare = tmp_path / "bare.txt"
    bare.write_text("Blue Spice is a pub.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs {input, output} rows"):
        with_draft_answers(base, argparse.Namespace(draft_answers=str(bare)), [])


def test_bench_drafts_from_the_answers_and_says_so(tiny_model_dir, tmp_path):
    from tasc.cli import build_parser

    rows = [{"input": f"play song {i}", "output": f'{{"intent": "PlayMusic", "slots": {{"song": "song {i}"}}}}'} for i in range(6)]
    train = write(tmp_path / "train.jsonl", rows[:4])
    prompts = write(tmp_path / "valid.jsonl", rows[4:])
    answers = write(tmp_path / "answers.jsonl", [{"input": "play song 1", "output": "PlayMusic song 1"}])
    args = build_parser().parse_args(["bench", "--model", str(tiny_model_dir), "--corpus", train, "--prompts", prompts,
                                      "--n", "2", "--methods", "greedy-loop,tasc-spec", "--max-new-tokens", "8",
                                      "--draft-answers", answers])
    report = args.run(args)
    assert report["draft_answers"] == answers and report["corpus"].endswith("+ answers.jsonl")
    assert report["methods"]["tasc-spec"]["identical_to_greedy_loop"] == 1.0
    assert load_corpus(answers).inputs == ["play song 1"]


def test_distill_answers_only_the_split_it_is_given(tiny_model_dir, tmp_path):
    """`tasc distill --split train` answers the training part only, so its answers may draft for the held-out part."""
    from tasc.cli import build_parser
    from tasc.core.corpus import select_split

    rows = [{"input": f"name[Place {i}], food[Thai]", "output": f"Place {i} serves Thai food."} for i in range(20)]
    data = write(tmp_path / "dev.jsonl", rows)
    out = tmp_path / "answers.jsonl"
    args = build_parser().parse_args(["distill", "--model", str(tiny_model_dir), "--inputs", data, "--split", "train",
                                      "--max-new-tokens", "4", "--out", str(out)])
    args.run(args)
    train = select_split(load_corpus(data), "train", 0.1, 0, "input")
    answered = [json.loads(line)["input"] for line in out.read_text(encoding="utf-8").splitlines()]  # a random model's answers may be empty
    assert sorted(answered) == sorted(set(train.inputs)) and len(answered) < len(rows)
    held = set(select_split(load_corpus(data), "heldout", 0.1, 0, "input").inputs)
    assert held and not held & set(answered)
