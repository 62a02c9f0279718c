"""`python -m tasc mine`: the corpus's frequent multi-token strings, as an enriched tokenizer would add them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tasc.commands.options import (
    add_common,
    add_mining_options,
    format_rounds,
    format_table,
    mining_setup,
)


def register(subparsers: Any) -> None:
    """Add the `mine` parser."""
    p = subparsers.add_parser("mine", help="mine the corpus's frequent multi-token strings")
    add_common(p)
    add_mining_options(p)
    p.add_argument("--model", default="smollm2-135m", help="tokenizer source: smollm2-135m (default), a model directory or a hub id")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub tokenizer's own code to run (off by default)")
    p.add_argument("--top", type=int, default=50, help="rows of the table (default 50)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Mine the corpus with the model's tokenizer; print the table and the compression per round."""
    from tqdm import tqdm

    from tasc.core.progress import Progress
    from tasc.ft.vocab import mine_vocabulary

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    config, texts, heldout = mining_setup(args)
    bar = tqdm(total=config.rounds, desc="mine", unit="round", file=sys.stderr)

    def on_progress(p: Progress) -> None:
        bar.n = p.done
        bar.set_postfix(tokens=int(p.metrics["added"]), compression=f"{p.metrics['compression']:.2f}x")

    result = mine_vocabulary(args.model, texts, config, heldout=heldout, trust_remote_code=args.trust_remote_code,
                             on_progress=on_progress)
    bar.close()
    print(format_table(result["tokens"], args.top))
    print(format_rounds(result["rounds"]))
    return {"corpus": args.corpus, **result}
