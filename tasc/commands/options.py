"""Options and helpers the CLI commands share; every command imports them from here, never from a sibling.

Light at import time (argparse, json): `python -m tasc --help` builds every parser, so anything heavy
(torch, transformers, tqdm, the corpus loader) is imported inside the function that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

SPLIT_HELP = "use the whole corpus (default) or its train / held-out part (split as --split-by says)"


# ---------------------------------------------------------------------------------------------
# Options


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON to PATH")


def add_model_options(parser: argparse.ArgumentParser, flag: str = "--model") -> None:
    """Options that choose and load a model."""
    parser.add_argument(flag, default="smollm2-135m", help="smollm2-135m (offline default), a hub id or a model directory")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run (off by default)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                        help="auto: bfloat16 on a GPU (fast; a wide verify pass may round unlike a one-token one), "
                             "float32 on a CPU (exact); bfloat16 on a CPU with native bf16 is ~1.4x faster "
                             "and, like a GPU's, not always identical to greedy")


def load_from_args(args: argparse.Namespace, spec: str | None = None) -> Any:
    """Load `spec` (default: --model) with the --device, --dtype and --trust-remote-code options."""
    import torch

    from tasc.core.models import load_model

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return load_model(spec or args.model, device=args.device, dtype=dtype, trust_remote_code=args.trust_remote_code)


def add_split_options(parser: argparse.ArgumentParser, splits: Sequence[tuple[str, str]] = (("--split", SPLIT_HELP),)) -> None:
    """Options that pick the train or held-out part of a corpus, split by input or by entity.

    Args:
        splits: (flag, help) of each corpus whose part is chosen; all share one rule, fraction and seed,
            so a train part and a held-out part of one command never overlap.
    """
    from tasc.core.corpus import SPLIT_BY, SPLITS

    for flag, help_text in splits:
        parser.add_argument(flag, choices=SPLITS, default="all", help=help_text)
    parser.add_argument("--split-by", choices=SPLIT_BY, default="input",
                        help="input (default): no distinct input in both parts; entity: no entity in both "
                             "(E2E-style attribute inputs: whole name[...] values held out; JSON outputs: rows "
                             "whose slot values no train output has)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="share of distinct inputs held out (default 0.1; by entity, as near as whole entities allow)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the split (default 0)")


def add_training_options(parser: argparse.ArgumentParser, *, steps: int, steps_help: str, batch_size: int,
                         lr: float | None, lr_help: str, resume_help: str = "continue from the checkpoints in --out",
                         save_every: int | None = 50) -> None:
    """Options every training command takes: steps, batch size, learning rate, checkpoint interval, seed, resume.

    `save_every=None`: the command checkpoints by time (`--save-every-s`), and --save-every adds a step interval.
    """
    parser.add_argument("--steps", type=int, default=steps, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr, help=lr_help)
    if save_every is None:
        parser.add_argument("--save-every", type=int, default=None, help="also checkpoint every N steps (default: by time only)")
        parser.add_argument("--save-every-s", type=float, default=60.0,
                            help="checkpoint when this many seconds passed since the last one, and on stop (default 60)")
    else:
        parser.add_argument("--save-every", type=int, default=save_every, help="checkpoint interval in steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help=resume_help)


def add_mining_options(p: argparse.ArgumentParser) -> None:
    """Corpus, held-out and budget options shared by `mine` and `enrich`."""
    p.add_argument("corpus", help="task output corpus (jsonl/csv/tsv/txt)")
    p.add_argument("--budget", type=int, default=300, help="new tokens in all (default 300)")
    p.add_argument("--rounds", type=int, default=10, help="mining rounds (default 10)")
    p.add_argument("--heldout", type=float, default=0.1,
                   help="share of the corpus's inputs kept out of mining to measure compression on (default 0.1; 0: none)")
    p.add_argument("--valid", help="a separate held-out corpus file to measure on (then all of CORPUS is mined)")


# ---------------------------------------------------------------------------------------------
# What the options select


def load_corpus_split(path: str, args: argparse.Namespace) -> Any:
    """Load a corpus and apply the --split options."""
    from tasc.core.corpus import load_corpus, select_split

    return select_split(load_corpus(path), args.split, args.heldout_fraction, args.split_seed, args.split_by)


def add_draft_answers_option(parser: argparse.ArgumentParser) -> None:
    """--draft-answers: the model's own answers to corpus inputs, drafted from besides the corpus."""
    parser.add_argument("--draft-answers", metavar="JSONL",
                        help="{input, output} rows of this model's own answers to corpus inputs (`tasc distill`), "
                             "drafted from besides the corpus: a first request drafts like a warm session")


def with_draft_answers(corpus: Any, args: argparse.Namespace, prompt_inputs: Sequence[str] = ()) -> Any:
    """The draft corpus plus the --draft-answers rows; ValueError when those answer one of the prompts (a leak)."""
    from tasc.core.corpus import load_corpus

    path = getattr(args, "draft_answers", None)
    if not path:
        return corpus
    answers = load_corpus(path)
    if answers.inputs is None:
        raise ValueError(f"--draft-answers {path} needs {{input, output}} rows, as `tasc distill` writes")
    leaked = set(answers.inputs) & set(prompt_inputs)
    if leaked:
        raise ValueError(f"--draft-answers holds answers to {len(leaked)} of the prompts being answered: "
                         "draft from answers to other inputs (e.g. the training part) only")
    return corpus.plus(answers)


def add_unseen_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--unseen-in: keep only the rows of `what` that share no entity with a training file."""
    parser.add_argument("--unseen-in", metavar="CORPUS",
                        help=f"keep only the {what} none of whose entities (slot values; E2E names) occurs in CORPUS, "
                             "the training rows: inputs the model has never seen")


def apply_unseen(corpus: Any, args: argparse.Namespace) -> Any:
    """The rows of `corpus` that --unseen-in keeps (all without it)."""
    from tasc.core.corpus import load_corpus, unseen_rows

    return unseen_rows(corpus, load_corpus(args.unseen_in)) if args.unseen_in else corpus


def split_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The --split options of a run, for its JSON (each part's label is its corpus `source`)."""
    parts = {k: v for k, v in vars(args).items() if k == "split" or k.endswith("_split")}
    return {**parts, "by": args.split_by, "heldout_fraction": args.heldout_fraction, "seed": args.split_seed}


def mining_setup(args: argparse.Namespace) -> tuple[Any, list[str], list[str] | None]:
    """The MiningConfig of the mining options (its `entities` from the corpus's inputs), the texts to mine, and the
    held-out texts or None; the corpus is read once."""
    from tasc.core.corpus import load_corpus, split_by_input
    from tasc.ft.ngrams import MiningConfig
    from tasc.ft.vocab import mining_config_for

    config = MiningConfig(budget=args.budget, rounds=args.rounds)
    config.check()
    if not 0.0 <= args.heldout < 1.0:
        raise ValueError(f"--heldout must be in [0, 1), got {args.heldout}")
    corpus = load_corpus(args.corpus)
    config = mining_config_for(config, corpus)
    if args.valid:
        return config, corpus.outputs, load_corpus(args.valid).outputs
    if args.heldout == 0:
        return config, corpus.outputs, None
    train, heldout = split_by_input(corpus, args.heldout, seed=0)
    return config, train.outputs, heldout.outputs


# ---------------------------------------------------------------------------------------------
# Output


def write_json(path: str | Path, data: Any) -> None:
    """Write a result as pretty JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def progress_bar(desc: str) -> Any:
    """A tqdm bar on stderr and the `on_progress` that moves it (one line per phase)."""
    from tqdm import tqdm

    from tasc.core.progress import Progress

    bars: dict[str, Any] = {}

    def on_progress(p: Progress) -> None:
        bar = bars.get(p.task)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[p.task] = tqdm(total=p.total, desc=p.task, file=sys.stderr)
        bar.total, bar.n = p.total, p.done
        if "loss" in p.metrics:
            bar.set_postfix_str(f"loss={p.metrics['loss']:.3f}", refresh=False)
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return on_progress, close


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
