"""`python -m tasc train-draft`: distil, pretrain and fine-tune a small draft model for a target."""

from __future__ import annotations

import argparse
from typing import Any

from tasc.commands.options import (
    add_common,
    add_model_options,
    add_split_options,
    add_training_options,
    load_corpus_split,
    progress_bar,
)


def register(subparsers: Any) -> None:
    """Add the `train-draft` parser."""
    p = subparsers.add_parser("train-draft", help="train a small draft model for a target on its own text and the task corpus, resumable")
    add_model_options(p, flag="--target")
    add_common(p)
    add_split_options(p)
    p.add_argument("--corpus", required=True, help="task corpus (jsonl/csv/tsv/txt; inputs are used when present)")
    p.add_argument("--out", required=True, help="output model directory (checkpoints go to OUT/checkpoints)")
    p.add_argument("--layers", type=int, default=2, help="transformer blocks (default 2)")
    p.add_argument("--hidden", type=int, default=256, help="hidden size (default 256)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--pretrain-texts", type=int, default=128, help="rows the target writes for pretraining (default 128)")
    p.add_argument("--pretrain-steps", type=int, default=100, help="optimiser steps on the target's text (default 100; 0 skips)")
    add_training_options(p, steps=300, steps_help="optimiser steps on the task corpus (default 300)", batch_size=16,
                         lr=1e-3, lr_help="peak learning rate of the task fine-tune (default 1e-3)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train the draft model and print where it went."""
    from tasc.compare.draft_model import DraftConfig, train_draft

    config = DraftConfig(
        layers=args.layers, hidden=args.hidden, heads=args.heads, pretrain_texts=args.pretrain_texts,
        pretrain_steps=args.pretrain_steps, steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        save_every=args.save_every, seed=args.seed,
    )
    config.check()
    corpus = load_corpus_split(args.corpus, args)
    on_progress, close = progress_bar("train-draft")
    try:
        result = train_draft(args.target, corpus, args.out, config, device=args.device, resume=args.resume,
                             trust_remote_code=args.trust_remote_code, on_progress=on_progress)
    finally:
        close()
    print(f"saved {result['out_dir']}: {result['parameters'] / 1e6:.1f} M parameters, {result['distil']['rows']} distilled rows, "
          f"{result['pretrain']['steps']} + {result['finetune']['steps']} steps in {result['wall_s']:.0f} s, "
          f"final loss {result['finetune']['final_loss']}")
    return result
