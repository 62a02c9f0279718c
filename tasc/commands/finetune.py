"""`python -m tasc finetune`: fine-tune a model on a task corpus (TASC-ft's training step)."""

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

# The data-to-text recipe's switches (name[X], area[Y] inputs; `tasc.ft.augment`), each a FinetuneConfig field.
DATA_TO_TEXT_FLAGS = {
    "--faithful-only": "data-to-text: train only on references that state every input attribute and invent none "
                       "(a third of E2E's leave one out, and models learn to)",
    "--attribute-dropout": "data-to-text: also train on copies of faithful rows with one attribute cut from input and "
                           "reference, so the model stops stating attributes it is not given (e.g. food for a coffee shop)",
    "--new-names": "data-to-text: rename half the rows (input and reference) with new names made of the corpus's name "
                   "words, so the model copies a name it never saw instead of writing one it knows",
}


def register(subparsers: Any) -> None:
    """Add the `finetune` parser."""
    from tasc.ft.finetune import PRECISIONS

    p = subparsers.add_parser("finetune", help="fine-tune a model on a task corpus (full or LoRA), resumable")
    add_model_options(p)
    add_common(p)
    add_split_options(p)
    p.add_argument("--corpus", required=True, help="training rows with input and output (jsonl/csv/tsv)")
    p.add_argument("--out", required=True, help="output model directory (checkpoints go to OUT/checkpoints)")
    p.add_argument("--enriched", metavar="DIR", help="an enriched model directory from `tasc enrich` (replaces --model)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the saved model)")
    p.add_argument("--lora-rank", type=int, default=16)
    for flag, help_text in DATA_TO_TEXT_FLAGS.items():
        p.add_argument(flag, action="store_true", help=help_text)
    p.add_argument("--teacher", metavar="MODEL",
                   help="a fine-tuned model whose greedy answers to the corpus's inputs are added to the training rows "
                        "(distillation; e.g. the base fine-tune when training TASC-ft's enriched model)")
    p.add_argument("--max-length", type=int, default=256, help="prompt + answer tokens per example")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): matmuls in bf16 autocast, fp32 master weights, where the device computes bf16 "
                        "natively (GPUs; CPUs with AVX512-BF16 or AMX: half the step time); fp32: never")
    add_training_options(p, steps=200, steps_help="optimiser steps (default 200)", batch_size=8,
                         lr=None, lr_help="learning rate (default 2e-4 full, 1e-3 LoRA)",
                         resume_help="continue from the last checkpoint in --out", save_every=None)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the corpus, train with a tqdm bar on stderr, print the result's figures."""
    from tasc.ft.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, lora=args.lora, lora_rank=args.lora_rank,
        save_every=args.save_every, save_every_s=args.save_every_s, max_length=args.max_length, seed=args.seed,
        faithful_only=args.faithful_only, attribute_dropout=args.attribute_dropout,
        new_names=args.new_names, teacher=args.teacher,
        precision=args.precision,
    )
    config.check()
    corpus = load_corpus_split(args.corpus, args)
    on_progress, close = progress_bar("finetune")
    try:
        result = finetune(
            args.enriched or args.model, corpus, args.out, config, device=args.device, resume=args.resume,
            trust_remote_code=args.trust_remote_code, on_progress=on_progress,
        )
    finally:
        close()
    print(f"saved {result['out_dir']}: {result['steps']} steps in {result['wall_s']:.0f} s, final loss {result['final_loss']}")
    return result
