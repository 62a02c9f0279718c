"""`python -m tasc distill`: write a model's own greedy answers as a task output corpus."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tasc.commands.options import add_common, add_model_options, add_split_options, load_corpus_split, load_from_args, progress_bar


def register(subparsers: Any) -> None:
    """Add the `distill` parser."""
    p = subparsers.add_parser("distill", help="answer task inputs with a model and save the answers as a corpus (resumable)")
    add_model_options(p)
    add_common(p)
    p.add_argument("--inputs", required=True, help="JSONL/CSV/TXT with task inputs (`input` column, or one per line)")
    p.add_argument("--out", required=True, help="output JSONL of {input, output}; re-running continues where it stopped")
    add_split_options(p)  # e.g. --split train: answers to the training part only, as drafts for the held-out part
    p.add_argument("--n", type=int, default=None, help="answer at most N distinct inputs")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--shots", type=int, default=0, help="few-shot examples taken from --inputs rows that have outputs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Answer each input not yet in --out and append it there."""
    from tasc.ft.distill import distill

    source = load_corpus_split(args.inputs, args)
    # A file of bare lines has outputs only: those lines are the inputs.
    inputs = source.inputs if source.inputs is not None else source.outputs
    inputs = list(dict.fromkeys(inputs))[: args.n]
    lm = load_from_args(args)
    if args.shots:
        if source.inputs is None:
            raise ValueError("--shots needs rows with both input and output")
        lm.prompt_format = lm.prompt_format.with_shots(source.pairs()[: args.shots])
    on_progress, close = progress_bar("distill")
    try:
        stats = distill(lm, inputs, Path(args.out), max_new_tokens=args.max_new_tokens, on_progress=on_progress)
    finally:
        close()
    print(json.dumps(stats))
    return stats
