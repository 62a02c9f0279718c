"""Scoring with known answers (sacreBLEU, chrF, JSON slot F1), task detection, and the evaluate/generate CLIs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasc.bench.evaluate import detect_task, evaluate, score_json, score_text
from tasc.core.corpus import parse_corpus_bytes
from tasc.methods import BASE, LLAMACPP, METHODS

ROOT = Path(__file__).resolve().parents[2]
GOLD = '{"intent": "PlayMusic", "slots": {"artist": "miles davis", "genre": "jazz"}}'


def test_detect_task():
    assert detect_task([GOLD, '{"a": 1}']) == "json"
    assert detect_task(["The Eagle is a pub.", GOLD]) == "text"
    assert detect_task(["[1, 2]"]) == "text"  # a JSON list is not an answer object


def test_text_scores_perfect_and_multi_reference():
    refs = [["The Eagle is a pub near the river."], ["Blue Spice serves cheap Italian food in the centre."]]
    perfect = score_text([r[0] for r in refs], refs)
    assert perfect["bleu"] == 100.0 and perfect["chrf"] == 100.0
    # A hypothesis equal to its *second* reference is perfect too when both references are given.
    multi = score_text(["Blue Spice is cheap."], [["Blue Spice serves cheap Italian food.", "Blue Spice is cheap."]])
    single = score_text(["Blue Spice is cheap."], [["Blue Spice serves cheap Italian food."]])
    assert multi["bleu"] == 100.0 and single["bleu"] < 50


def test_text_scores_pad_short_reference_lists_without_effect():
    hyps = ["a cheap pub in the centre", "an expensive cafe"]
    uneven = score_text(hyps, [["a cheap pub in the centre of town", "a pub"], ["an expensive coffee shop"]])
    padded = score_text(hyps, [["a cheap pub in the centre of town", "a pub"], ["an expensive coffee shop", "an expensive coffee shop"]])
    assert uneven["bleu"] == padded["bleu"] and uneven["chrf"] == padded["chrf"]
    with pytest.raises(ValueError):
        score_text(["x"], [[]])


def test_json_scores_known_values():
    hyps = [
        GOLD,  # exact
        '{"slots": {"genre": "jazz", "artist": "miles davis"}, "intent": "PlayMusic"}',  # same, other key order
        '{"intent": "PlayMusic", "slots": {"artist": "miles", "genre": "jazz"}}',  # one slot wrong
        '{"intent": "GetWeather", "slots": {}}',  # wrong intent, no slots
        'not json {',  # unparseable
    ]
    s = score_json(hyps, [GOLD] * 5)
    assert s["parse_rate"] == 0.8 and s["exact_match"] == 0.4 and s["intent_accuracy"] == 0.6
    # gold: 10 slots; predicted 6, of which 5 right
    assert s["slot_precision"] == round(5 / 6, 4) and s["slot_recall"] == 0.5
    assert s["slot_f1"] == round(2 * (5 / 6) * 0.5 / (5 / 6 + 0.5), 4)


def test_json_scores_without_slots_use_all_fields():
    gold = '{"intent": "refund", "priority": "high", "order_id": "A1"}'
    s = score_json(['{"intent": "refund", "priority": "low", "order_id": "A1"}'], [gold])
    assert s["slot_f1"] == 0.5 and s["intent_accuracy"] == 1.0 and s["exact_match"] == 0.0


def test_evaluate_groups_references_by_input(tiny_lm):
    rows = [{"input": "a", "output": "x y"}, {"input": "a", "output": "x z"}, {"input": "b", "output": "w"}]
    heldout = parse_corpus_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(), "h.jsonl")
    result = evaluate(tiny_lm, heldout, max_new_tokens=4)
    assert result["task"] == "text" and result["n"] == 2
    assert result["answers"][0]["references"] == ["x y", "x z"]
    assert 0 <= result["bleu"] <= 100 and result["answer_tokens"] <= 8


def test_evaluate_draft_corpus_changes_no_answer(tiny_lm):
    rows = [{"input": f"play song {i} by the band", "output": f"song {i}"} for i in range(4)]
    heldout = parse_corpus_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(), "h.jsonl")
    plain = evaluate(tiny_lm, heldout, max_new_tokens=12)
    drafts = parse_corpus_bytes(b"play the band\nsong by the band\nsong 1\n", "train.txt")
    drafted = evaluate(tiny_lm, heldout, max_new_tokens=12, draft_corpus=drafts)
    assert [a["output"] for a in drafted["answers"]] == [a["output"] for a in plain["answers"]]
    assert drafted["bleu"] == plain["bleu"] and drafted["answer_tokens"] == plain["answer_tokens"]
    assert 0 < drafted["forward_passes"] <= drafted["answer_tokens"]


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tasc", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_generate_cli_methods_agree(tiny_model_dir, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("play some jazz by miles davis\nwhat is the weather in paris tomorrow\n")
    outs = {}
    has_llamacpp = importlib.util.find_spec("llama_cpp") is not None  # optional: its methods run where it is installed
    lossless_base = [m.name for m in METHODS.values() if m.lossless and m.model == BASE and m.needs is None
                     and (m.engine != LLAMACPP or has_llamacpp)]
    assert {"greedy", "greedy-loop", "pld", "tasc-spec", "tasc-corpus", "tasc-context"} <= set(lossless_base)
    for method in lossless_base:
        extra = ["--corpus", str(corpus)] if METHODS[method].needs_corpus else []
        proc = _run("generate", "--model", str(tiny_model_dir), "play jazz", "--method", method, "--max-new-tokens", "12",
                    "--json", str(tmp_path / f"{method}.json"), *extra)
        assert proc.returncode == 0, proc.stderr
        outs[method] = json.loads((tmp_path / f"{method}.json").read_text())
    assert {o["output"] for o in outs.values()} == {outs["greedy"]["output"]}  # every lossless method: greedy's answer
    assert outs["greedy-loop"]["forward_passes"] == outs["greedy-loop"]["new_tokens"]


def test_generate_offers_every_method_of_the_registry():
    from tasc.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    method = next(a for a in sub.choices["generate"]._actions if a.dest == "method")
    assert list(method.choices) == list(METHODS)


def test_generate_and_evaluate_cli_errors(tiny_model_dir, tmp_path):
    proc = _run("generate", "--model", str(tiny_model_dir), "x", "--method", "tasc-spec")
    assert proc.returncode == 2 and "needs --corpus" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "o.txt").write_text("outputs only\n")
    proc = _run("evaluate", "--model", str(tiny_model_dir), "--corpus", str(tmp_path / "o.txt"))
    assert proc.returncode == 2 and "outputs only" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("evaluate", "--model", str(tmp_path / "missing" / "dir"), "--corpus", str(tmp_path / "o.txt"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
