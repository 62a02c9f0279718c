"""`python -m tasc mine`: the corpus's frequent multi-token strings, as an enriched tokenizer would add them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tasc.cli import add_common


def register(subparsers: Any) -> None:
    """Add the `mine` parser."""
    p = subparsers.add_parser("mine", help="mine the corpus's frequent multi-token strings")
    add_common(p)
    add_mining_options(p)
    p.add_argument("--model", default="smollm2-135m", help="tokenizer source: smollm2-135m (default), a model directory or a hub id")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub tokenizer's own code to run (off by default)")
    p.add_argument("--top", type=int, default=50, help="rows of the table (default 50)")
    p.set_defaults(run=run)


def add_mining_options(p: argparse.ArgumentParser) -> None:
    """Corpus, held-out and budget options shared by `mine` and `enrich`."""
    p.add_argument("corpus", help="task output corpus (jsonl/csv/tsv/txt)")
    p.add_argument("--budget", type=int, default=300, help="new tokens in all (default 300)")
    p.add_argument("--rounds", type=int, default=10, help="mining rounds (default 10)")
    p.add_argument("--heldout", type=float, default=0.1,
                   help="share of the corpus's inputs kept out of mining to measure compression on (default 0.1; 0: none)")
    p.add_argument("--valid", help="a separate held-out corpus file to measure on (then all of CORPUS is mined)")


def split_texts(args: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    """(texts to mine, held-out texts or None) from the corpus options."""
    from tasc.corpus import load_corpus, split_by_input

    if not 0.0 <= args.heldout < 1.0:
        raise ValueError(f"--heldout must be in [0, 1), got {args.heldout}")
    corpus = load_corpus(args.corpus)
    if args.valid:
        return corpus.outputs, load_corpus(args.valid).outputs
    if args.heldout == 0:
        return corpus.outputs, None
    train, heldout = split_by_input(corpus, args.heldout, seed=0)
    return train.outputs, heldout.outputs


def mining_config(args: argparse.Namespace) -> Any:
    """The MiningConfig of the CLI options."""
    from tasc.ngrams import MiningConfig

    config = MiningConfig(budget=args.budget, rounds=args.rounds)
    config.check()
    return config


def format_rounds(rounds: list[dict]) -> str:
    """One line per mining round: tokens added and the share of output tokens saved."""
    lines = []
    for r in rounds:
        line = (f"round {r['round']:>2}: {r['added']:>4} tokens added, corpus {r['tokens_per_output']:6.2f} tokens/output "
                f"({r['reduction']:6.1%} fewer, {r['compression']:.2f}x)")
        if "heldout_reduction" in r:
            line += (f", held-out {r['heldout_tokens_per_output']:6.2f} "
                     f"({r['heldout_reduction']:6.1%} fewer, {r['heldout_compression']:.2f}x)")
        lines.append(line)
    return "\n".join(lines)


def format_table(tokens: list[dict], top: int) -> str:
    """The mined strings with the most tokens saved, as a text table."""
    rows = sorted(tokens, key=lambda t: -t["saved"])[:top]
    head = f"{'#':>4} {'saved':>7} {'count':>6} {'uses':>6} {'base':>4} {'kind':>5} {'round':>5}  text"
    lines = [head]
    for i, t in enumerate(rows, 1):
        lines.append(f"{i:>4} {t['saved']:>7} {t['count']:>6} {t['uses']:>6} {t['base_tokens']:>4} {t['kind']:>5} "
                     f"{t['round']:>5}  {json.dumps(t['text'], ensure_ascii=False)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Mine the corpus with the model's tokenizer; print the table and the compression per round."""
    from tqdm import tqdm

    from tasc.progress import Progress
    from tasc.vocab import mine_vocabulary

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    config = mining_config(args)
    texts, heldout = split_texts(args)
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
