"""`python -m tasc enrich`: add the corpus's mined strings to a model's vocabulary and save the model."""

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
    """Add the `enrich` parser."""
    p = subparsers.add_parser("enrich", help="add mined strings to the tokenizer and initialise their embeddings")
    add_common(p)
    add_mining_options(p)
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m (offline default), a model directory or a hub id")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run (off by default)")
    p.add_argument("--out", required=True, help="directory to write the enriched model to")
    p.add_argument("--top", type=int, default=20, help="rows of the table of added strings (default 20)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Mine, enrich, save; print the added strings and the compression per round."""
    from tqdm import tqdm

    from tasc.core.progress import Progress
    from tasc.ft.vocab import enrich

    config, texts, heldout = mining_setup(args)
    bar = tqdm(total=config.rounds, desc="enrich", unit="round", file=sys.stderr)

    def on_progress(p: Progress) -> None:
        bar.n = p.done
        if "compression" in p.metrics:
            bar.set_postfix(tokens=int(p.metrics["added"]), compression=f"{p.metrics['compression']:.2f}x")
        else:
            bar.set_description(p.message or "enrich")
        bar.refresh()

    result = enrich(args.model, texts, args.out, config, heldout=heldout,
                    trust_remote_code=args.trust_remote_code, on_progress=on_progress)
    bar.close()
    print(format_table(result["tokens"], args.top))
    print(format_rounds(result["rounds"]))
    print(f"wrote {result['out_dir']} ({result['added']} new tokens, base vocabulary {result['base_vocab_size']}) "
          f"in {result['wall_s']:.1f} s")
    return result
