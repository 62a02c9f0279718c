"""The benchmark's trained comparison modes on a tiny target: draft-model methods lossless, hybrid measured with quality."""

import json

import pytest
import torch

import tasc.bench.runs as runs_module
from tasc.bench.bench import BenchConfig, format_table, run_bench
from tasc.bench.evaluate import score_answers as answer_quality
from tasc.compare.draft_model import DraftConfig, train_draft
from tasc.compare.hybrid import HybridConfig, HybridModel, train_hybrid
from tasc.compare.model_drafts import DRAFT_MODEL, AssistConfig, DraftModelDrafter
from tasc.core.corpus import load_corpus
from tasc.spec.decode import DecodeConfig
from tasc.spec.drafts import CONTEXT, CORPUS, MODEL

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


def _strip_eos(tokens, eos):
    return tokens[:-1] if tokens and tokens[-1] == eos else tokens


def test_bench_runs_the_trained_modes(tiny_lm, trained, monkeypatch):
    loop_runs = []  # (drafter, GenerationResult) of every run of our verify loop, warm-up included
    real_generate = runs_module.generate

    def recording_generate(model, prompt_ids, drafter, *args, **kwargs):
        result = real_generate(model, prompt_ids, drafter, *args, **kwargs)
        loop_runs.append((drafter, result))
        return result

    monkeypatch.setattr(runs_module, "generate", recording_generate)
    prompts = [r["input"] for r in ROWS[:4]]
    refs = [[r["output"]] for r in ROWS[:4]]
    config = BenchConfig(methods=("greedy", "draft-model", "draft-model-hf", "draft-model+tasc", "hybrid"), decode=DecodeConfig(16), warmup=1,
                         draft_model=str(trained / "draft"), hybrid_model=str(trained / "hybrid"),
                         assist=AssistConfig(min_confidence=0.0))
    report = run_bench(tiny_lm, prompts, [r["output"] for r in ROWS], config, references=refs)
    figures = report["methods"]
    for name in ("draft-model", "draft-model-hf", "draft-model+tasc"):
        assert figures[name]["identical_to_greedy"] == 1.0, name  # lossless
        assert figures[name]["quality"] == figures["greedy"]["quality"], name

    # The draft-model method's accepted tokens, counted from the sources of the tokens its timed
    # runs emitted (the first run of its drafter is the warm-up, which the figures leave out).
    draft_runs = [result for drafter, result in loop_runs if type(drafter) is DraftModelDrafter]
    assert len(draft_runs) == config.warmup + len(prompts)
    timed = draft_runs[config.warmup:]
    drafted = sum(src == DRAFT_MODEL for r in timed for s in r.steps for src in s.sources)
    by_model = sum(src == MODEL for r in timed for s in r.steps for src in s.sources)
    assert drafted + by_model == figures["draft-model"]["new_tokens"]  # every emitted token has one source
    assert drafted > 0, "the trained draft model never got a token accepted"
    assert figures["draft-model"]["accepted_by_source"] == {CORPUS: 0, CONTEXT: 0, DRAFT_MODEL: drafted}

    # The hybrid, rerun alone: its figures must be those of its own answers against greedy's.
    eos, max_new = tiny_lm.eos_token_id, config.decode.max_new_tokens
    hybrid_model = HybridModel.load(trained / "hybrid", tiny_lm)
    identical, hybrid_texts = 0, []
    for prompt in prompts:
        ids = tiny_lm.prompt_format.prompt_ids(tiny_lm.tokenizer, prompt)
        with torch.inference_mode():
            greedy = tiny_lm.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                            max_new_tokens=max_new, do_sample=False, eos_token_id=eos,
                                            pad_token_id=tiny_lm.tokenizer.pad_token_id or eos)[0, len(ids):].tolist()
        answer = hybrid_model.generate(tiny_lm.model, ids, max_new, eos).tokens
        identical += _strip_eos(answer, eos) == _strip_eos(greedy, eos)
        hybrid_texts.append(tiny_lm.tokenizer.decode(answer, skip_special_tokens=True).strip())
    hybrid = figures["hybrid"]
    assert hybrid["forward_passes"] == len(prompts)  # one target pass per prompt
    assert report["answers"]["hybrid"] == hybrid_texts
    assert hybrid["identical_to_greedy"] == identical / len(prompts)
    assert hybrid["quality"] == answer_quality(hybrid_texts, refs) and hybrid["quality"]["task"] == "json"
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
