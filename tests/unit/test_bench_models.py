"""The benchmark's trained comparison modes on a tiny target: draft-model methods lossless, hybrid measured with quality."""

import json

import pytest

from tasc.bench import BenchConfig, format_table, run_bench
from tasc.evaluate import score_answers as answer_quality
from tasc.corpus import load_corpus
from tasc.draft_model import DraftConfig, train_draft
from tasc.hybrid import HybridConfig, train_hybrid
from tasc.model_drafts import AssistConfig

ROWS = [{"input": f"play {a} by {b}", "output": json.dumps({"intent": "PlayMusic", "slots": {"artist": b, "track": a}})}
        for a in ("jazz", "blues", "rock", "pop") for b in ("miles", "nina", "bob")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("trained")
    (root / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    corpus = load_corpus(root / "c.jsonl")
    train_draft(str(tiny_model_dir), corpus, root / "draft",
                DraftConfig(layers=1, hidden=32, heads=2, pretrain_texts=4, pretrain_new_tokens=8, pretrain_steps=4, steps=8, batch_size=4),
                device="cpu")
    train_hybrid(str(tiny_model_dir), corpus, root / "hybrid", HybridConfig(layers=1, hidden=32, heads=2, steps=4, batch_size=4), device="cpu")
    return root


def test_bench_runs_the_trained_modes(tiny_lm, trained):
    prompts = [r["input"] for r in ROWS[:4]]
    refs = [[r["output"]] for r in ROWS[:4]]
    config = BenchConfig(methods=("greedy", "draft-model", "draft-model-hf", "draft-model+tasc", "hybrid"), max_new_tokens=16, warmup=1,
                         draft_model=str(trained / "draft"), hybrid_model=str(trained / "hybrid"),
                         assist=AssistConfig(min_confidence=0.0))
    report = run_bench(tiny_lm, prompts, [r["output"] for r in ROWS], config, references=refs)
    figures = report["methods"]
    for name in ("draft-model", "draft-model-hf", "draft-model+tasc"):
        assert figures[name]["identical_to_greedy"] == 1.0, name  # lossless
        assert figures[name]["quality"] == figures["greedy"]["quality"], name
    assert figures["draft-model"]["accepted_by_source"].get("draft-model", 0) >= 0
    hybrid = figures["hybrid"]
    assert hybrid["forward_passes"] == len(prompts)  # one target pass per prompt
    assert 0.0 <= hybrid["identical_to_greedy"] <= 1.0 and hybrid["quality"]["task"] == "json"
    assert set(hybrid["quality"]) >= {"parse_rate", "exact_match", "slot_f1"}
    table = format_table(report)
    assert "draft-model+tasc" in table and "exact_match=" in table


def test_bench_names_the_missing_trained_directory(tiny_lm):
    with pytest.raises(ValueError, match="--draft-model DIR"):
        run_bench(tiny_lm, ["x"], ["y"], BenchConfig(methods=("draft-model",)))
    with pytest.raises(ValueError, match="--hybrid-model DIR"):
        run_bench(tiny_lm, ["x"], ["y"], BenchConfig(methods=("hybrid",)))
    with pytest.raises(ValueError, match="1 reference lists for 2 prompts"):
        run_bench(tiny_lm, ["x", "z"], ["y"], BenchConfig(methods=("greedy",)), references=[["y"]])


def test_answer_quality_picks_the_task():
    assert answer_quality(['{"intent": "A"}'], [['{"intent": "A"}']])["exact_match"] == 1.0
    text = answer_quality(["the cat sat on the mat today"], [["the cat sat on the mat today", "a cat sat"]])
    assert text["task"] == "text" and text["bleu"] == 100.0
    with pytest.raises(ValueError, match="one reference list per answer"):
        answer_quality(["a", "b"], [["a"]])
