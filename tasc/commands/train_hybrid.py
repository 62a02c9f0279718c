"""`python -m tasc train-hybrid`: train a projector + small decoder on a frozen target's prompt states."""

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
    """Add the `train-hybrid` parser."""
    p = subparsers.add_parser("train-hybrid", help="train the hybrid: the frozen target encodes the prompt, a small decoder answers")
    add_model_options(p, flag="--target")
    add_common(p)
    add_split_options(p)
    p.add_argument("--corpus", required=True, help="training rows with input and output (jsonl/csv/tsv)")
    p.add_argument("--out", required=True, help="output directory (checkpoints go to OUT/checkpoints)")
    p.add_argument("--decoder-init", metavar="DIR", help="start the decoder from a draft model (tasc train-draft) of this target")
    p.add_argument("--target-blocks", type=int, default=0, metavar="N",
                   help="cut the decoder from the target: N of its blocks, spread evenly, with its embeddings (frozen)")
    p.add_argument("--continue-from", metavar="DIR",
                   help="train a saved hybrid further (its decoder, projector and copy head; its shape settings apply)")
    p.add_argument("--layers", type=int, default=2, help="decoder blocks, when not --decoder-init (default 2)")
    p.add_argument("--hidden", type=int, default=256, help="decoder hidden size, when not --decoder-init (default 256)")
    p.add_argument("--heads", type=int, default=4, help="decoder attention heads (default 4)")
    p.add_argument("--projector", choices=("mlp", "linear"), default="mlp")
    p.add_argument("--encoder-layer", type=int, default=None, metavar="N",
                   help="use the target's states after N blocks (mid layers describe the prompt's words; default: the last)")
    p.add_argument("--no-copy", dest="copy", action="store_false",
                   help="no pointer-generator copy head: the decoder writes every token from its vocabulary")
    p.add_argument("--max-inputs", type=int, default=1000, help="distinct training inputs the target encodes (default 1000)")
    add_training_options(p, steps=300, steps_help="optimiser steps (default 300)", batch_size=16,
                         lr=1e-3, lr_help="peak learning rate (default 1e-3)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train the hybrid and print where it went."""
    from tasc.compare.hybrid import HybridConfig, train_hybrid

    config = HybridConfig(
        layers=args.layers, hidden=args.hidden, heads=args.heads, projector=args.projector, copy=args.copy, encoder_layer=args.encoder_layer, decoder_init=args.decoder_init,
        target_blocks=args.target_blocks, continue_from=args.continue_from,
        max_inputs=args.max_inputs, steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        save_every=args.save_every, seed=args.seed,
    )
    config.check()
    corpus = load_corpus_split(args.corpus, args)
    on_progress, close = progress_bar("train-hybrid")
    try:
        result = train_hybrid(args.target, corpus, args.out, config, device=args.device, resume=args.resume,
                              trust_remote_code=args.trust_remote_code, on_progress=on_progress)
    finally:
        close()
    print(f"saved {result['out_dir']}: {result['parameters'] / 1e6:.1f} M trained parameters, {result['inputs']} inputs encoded in "
          f"{result['encode_wall_s']:.0f} s, {result['steps']} steps in {result['train_wall_s']:.0f} s, final loss {result['final_loss']}")
    return result
