"""`python -m tasc evaluate`: score a model's greedy answers on held-out rows."""

from __future__ import annotations

import argparse
from typing import Any

from tasc.commands.engine import add_engine_options, llamacpp_engine
from tasc.commands.options import (
    add_common,
    add_model_options,
    add_split_options,
    add_unseen_option,
    apply_unseen,
    load_corpus_split,
    load_from_args,
    progress_bar,
    split_settings,
)


def register(subparsers: Any) -> None:
    """Add the `evaluate` parser."""
    p = subparsers.add_parser("evaluate", help="score a model's answers on held-out rows (BLEU/chrF or JSON slot F1)")
    add_model_options(p)
    add_common(p)
    add_split_options(p)
    add_engine_options(p)
    p.add_argument("--corpus", required=True, help="held-out rows with input and reference output")
    p.add_argument("--n", type=int, default=None, help="score at most N distinct inputs (default: all)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--draft-corpus", metavar="CORPUS", help="outputs to draft from (e.g. the training corpus): faster, same answers")
    add_unseen_option(p, "held-out rows")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Answer the held-out inputs and print the scores."""
    from tasc.bench.evaluate import evaluate
    from tasc.bench.report import split_text
    from tasc.core.corpus import load_corpus
    from tasc.methods import get

    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    heldout = apply_unseen(load_corpus_split(args.corpus, args), args)
    draft_corpus = load_corpus(args.draft_corpus) if args.draft_corpus else None
    lm = load_from_args(args)
    engine = llamacpp_engine(args, lm.name, [get("tasc-spec")])  # the answers' engine; drafts only speed it up
    on_progress, close = progress_bar("evaluate")
    try:
        result = evaluate(lm, heldout, n=args.n, max_new_tokens=args.max_new_tokens, on_progress=on_progress,
                          draft_corpus=draft_corpus, llamacpp=engine)
    finally:
        close()
    result["split"] = split_settings(args)
    metrics = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    # The corpus label names the split, e.g. "dev.jsonl (held-out by entity: 13.3% of inputs, ...)".
    print(f"{result['model']} on {split_text(result)} ({result['task']}): " + ", ".join(f"{k}={v}" for k, v in metrics.items()))
    return result
