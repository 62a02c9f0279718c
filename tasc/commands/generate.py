"""`python -m tasc generate`: answer one input with plain decoding or TASC-spec, streaming the text."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tasc.cli import add_common, add_model_options

METHODS = ("greedy", "tasc-spec", "tasc-context")


def register(subparsers: Any) -> None:
    """Add the `generate` parser."""
    p = subparsers.add_parser("generate", help="answer one input (plain greedy, TASC-spec or prompt lookup)")
    add_model_options(p)
    add_common(p)
    p.add_argument("input", help="the task input text")
    p.add_argument("--method", choices=METHODS, default="greedy",
                   help="greedy (default); tasc-spec drafts from --corpus and the context; tasc-context from the context only")
    p.add_argument("--corpus", help="task output corpus for tasc-spec drafts")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy (speculative sampling keeps the model's distribution)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Stream the answer to stdout; speed figures go to stderr."""
    from tasc.corpus import load_corpus
    from tasc.decode import DecodeConfig, speculative_steps
    from tasc.drafts import build_corpus_index, make_drafter
    from tasc.models import load_model

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.method == "tasc-spec" and not args.corpus:
        raise ValueError("--method tasc-spec needs --corpus (the task output corpus)")
    if args.sample and not (args.temperature > 0 and 0 < args.top_p <= 1):
        raise ValueError("--temperature must be > 0 and --top-p in (0, 1]")
    lm = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    corpus = load_corpus(args.corpus) if args.method == "tasc-spec" else None
    index = build_corpus_index(lm.tokenizer, corpus.outputs, corpus.inputs, lm.prompt_format) if corpus is not None else None
    drafter = make_drafter(args.method, lm.tokenizer, index)
    config = DecodeConfig(args.max_new_tokens, args.sample, args.temperature, args.top_p, args.seed)
    ids = lm.prompt_format.prompt_ids(lm.tokenizer, args.input)
    tokens: list[int] = []
    printed = ""
    steps = accepted = 0
    elapsed = 0.0
    for step in speculative_steps(lm.model, ids, drafter, config, lm.eos_token_id):
        tokens += step.tokens
        steps, accepted, elapsed = steps + 1, accepted + step.n_accepted, step.elapsed_s
        text = lm.tokenizer.decode(tokens, skip_special_tokens=True)
        sys.stdout.write(text[len(printed):])  # decode the whole answer: a token may complete a character
        sys.stdout.flush()
        printed = text
    sys.stdout.write("\n")
    stats = {"method": args.method, "new_tokens": len(tokens), "forward_passes": steps, "accepted_draft_tokens": accepted,
             "wall_s": round(elapsed, 3), "tokens_per_s": round(len(tokens) / elapsed, 2) if elapsed else 0.0}
    print(" ".join(f"{k}={v}" for k, v in stats.items()), file=sys.stderr)
    return {"input": args.input, "output": printed.strip(), **stats}
