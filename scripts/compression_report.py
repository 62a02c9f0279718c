"""Measure TASC-ft vocabulary compression on SNIPS and E2E with the SmolLM2 tokenizer; print and write JSON.

    python scripts/compression_report.py [--budget 300] [--rounds 10] [--json runs/compression.json]

SNIPS: mined on snips/train.jsonl, measured on snips/valid.jsonl. E2E: e2e/dev.jsonl split by input
(`split_by_input(corpus, 0.1, seed=0)`), mined on the train part, measured on the held-out part.
Beside the miner's figures: the same miner restricted to whole words and punctuation runs, and a
reimplementation of the issue's naive floor (whole-word n-grams and punctuation runs ranked by
frequency × saved tokens, no overlap handling, 5 rounds of 60).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasc.bench.report import machine_info  # noqa: E402
from tasc.core.corpus import load_corpus, split_by_input  # noqa: E402
from tasc.ft.ngrams import MiningConfig, mine  # noqa: E402
from tasc.ft.vocab import TokenizerSegmenter, adoption, load_tokenizer, round_trip_failures  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TARGETS = {"snips": 0.58, "e2e": 0.38}
FLOOR = {"snips": 0.54, "e2e": 0.35}  # the naive miner


def tasks() -> dict[str, tuple[list[str], list[str], str]]:
    """task -> (texts to mine, held-out texts, description)."""
    snips_train = load_corpus(DATA / "snips" / "train.jsonl").outputs
    snips_valid = load_corpus(DATA / "snips" / "valid.jsonl").outputs
    train, heldout = split_by_input(load_corpus(DATA / "e2e" / "dev.jsonl"), 0.1, seed=0)
    return {
        "snips": (snips_train, snips_valid, "mined on snips/train.jsonl, measured on snips/valid.jsonl"),
        "e2e": (train.outputs, heldout.outputs, "e2e/dev.jsonl split by input (10% held out, seed 0)"),
    }


def naive_miner(texts: list[str], seg: TokenizerSegmenter, budget: int, rounds: int = 5, max_words: int = 4) -> list[str]:
    """The issue's floor: word n-grams and punctuation runs by frequency × saved tokens, no overlap handling."""
    counts: Counter[str] = Counter()
    for text in texts:
        words = re.findall(r"\s*\S+", text)  # whitespace-separated words, leading space kept
        for i in range(len(words)):
            for n in range(1, max_words + 1):
                if i + n <= len(words):
                    counts["".join(words[i:i + n])] += 1
        counts.update(re.findall(r"[^\w]{2,}", text))  # punctuation runs (spaces included)
    added: list[str] = []
    per_round = -(-budget // rounds)
    for _ in range(rounds):
        seg.set_added(added)
        scored = []
        for text, freq in counts.most_common(20000):
            if text in added or not seg.acceptable(text):
                continue
            length = len(seg.encode([text])[0])
            if length > 1:
                scored.append((freq * (length - 1), text))
        scored.sort(reverse=True)
        added += [t for _, t in scored[: min(per_round, budget - len(added))]]
        refused = seg.set_added(added)
        added = [t for t in added if t not in refused]
    return added


def measure_task(name: str, tokenizer, budget: int, rounds: int) -> dict:
    """Figures of one task: the miner, its words+punctuation variant and the naive floor."""
    texts, heldout, description = tasks()[name]
    base_size = len(tokenizer)
    row: dict = {"data": description, "mined_outputs": len(texts), "heldout_outputs": len(heldout),
                 "target_reduction": TARGETS[name], "naive_floor_reported": FLOOR[name]}

    seg = TokenizerSegmenter(tokenizer)
    t0 = time.perf_counter()
    result = mine(texts, seg, MiningConfig(budget=budget, rounds=rounds), heldout=heldout)
    row["mining_s"] = round(time.perf_counter() - t0, 2)
    last = result.rounds[-1]
    row.update({
        "added": len(result.tokens),
        "base_tokens_per_output": last["heldout_base_tokens_per_output"],
        "tokens_per_output": last["heldout_tokens_per_output"],
        "reduction": last["heldout_reduction"],
        "compression": last["heldout_compression"],
        "corpus_reduction": last["reduction"],
        "meets_target": last["heldout_reduction"] >= TARGETS[name],
        "round_trip_failures": len(round_trip_failures(seg.tokenizer, texts + heldout)),
        "base_round_trip_failures": len(round_trip_failures(seg.base, texts + heldout)),
        "heldout_answers_using_new_tokens": adoption(seg.tokenizer, base_size, heldout)["answers_using_new_tokens"],
        "rounds": [{k: r[k] for k in ("round", "added", "compression", "reduction", "tokens_per_output",
                                      "heldout_compression", "heldout_reduction", "heldout_tokens_per_output",
                                      "elapsed_s")} for r in result.rounds],
        "top_tokens": [c.text for c in sorted(result.tokens, key=lambda c: -c.saved)[:20]],
    })

    words = mine(texts, TokenizerSegmenter(tokenizer), MiningConfig(budget=budget, rounds=rounds,
                                                                    kinds=("word", "punct")), heldout=heldout)
    row["words_punct_only_reduction"] = words.rounds[-1]["heldout_reduction"]

    naive_seg = TokenizerSegmenter(tokenizer)
    naive = naive_miner(texts, naive_seg, budget)
    naive_seg.set_added(naive)
    row["naive_reimplemented_reduction"] = adoption(naive_seg.tokenizer, base_size, heldout)["reduction"]
    return row


def main() -> int:
    """Run both tasks, print a summary, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="tokenizer source (default smollm2-135m)")
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", default=str(ROOT / "runs" / "compression.json"), help="where to write the figures")
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.model)
    report = {"machine": machine_info(), "tokenizer": args.model, "budget": args.budget, "rounds": args.rounds,
              "tasks": {name: measure_task(name, tokenizer, args.budget, args.rounds) for name in TARGETS}}
    for name, r in report["tasks"].items():
        print(f"{name}: {r['base_tokens_per_output']:.2f} -> {r['tokens_per_output']:.2f} tokens per held-out output, "
              f"{r['reduction']:.1%} fewer ({r['compression']:.2f}x; target {r['target_reduction']:.0%}, "
              f"{'met' if r['meets_target'] else 'MISSED'}); words+punct only {r['words_punct_only_reduction']:.1%}; "
              f"naive floor {r['naive_reimplemented_reduction']:.1%} (issue: {r['naive_floor_reported']:.0%}); "
              f"round-trip failures {r['round_trip_failures']} (base {r['base_round_trip_failures']}); "
              f"mining {r['mining_s']} s")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
