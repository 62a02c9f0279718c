"""`python -m tasc`: one subcommand per module in `tasc.commands`.

Every command module has `register(subparsers)` that adds its parser and sets `run`, a function
`run(args) -> dict | None`. The result is printed and, with `--json PATH`, written as JSON. User
errors (`TascError`, bad files) end with a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from tasc.errors import Cancelled, TascError

COMMANDS = (
    "finetune",
    "evaluate",
    "generate",
    "distill",
    "bench",
    "mine",
    "enrich",
    "train_draft",
    "train_hybrid",
)


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON to PATH")


def add_model_options(parser: argparse.ArgumentParser, flag: str = "--model") -> None:
    """Options that choose and load a model."""
    parser.add_argument(flag, default="smollm2-135m", help="smollm2-135m (offline default), a hub id or a model directory")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run (off by default)")


SPLIT_HELP = "use the whole corpus (default) or its train / held-out part, split by input"


def add_split_options(parser: argparse.ArgumentParser, splits: Sequence[tuple[str, str]] = (("--split", SPLIT_HELP),)) -> None:
    """Options that pick the train or held-out part of a corpus split by input (no input in both).

    Args:
        splits: (flag, help) of each corpus whose part is chosen; all share one fraction and seed.
    """
    from tasc.corpus import SPLITS

    for flag, help_text in splits:
        parser.add_argument(flag, choices=SPLITS, default="all", help=help_text)
    parser.add_argument("--heldout-fraction", type=float, default=0.1, help="share of distinct inputs held out (default 0.1)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the split (default 0)")


def load_corpus_split(path: str, args: argparse.Namespace) -> Any:
    """Load a corpus and apply the --split options."""
    from tasc.corpus import load_corpus, select_split

    return select_split(load_corpus(path), args.split, args.heldout_fraction, args.split_seed)


def write_json(path: str | Path, data: Any) -> None:
    """Write a result as pretty JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def progress_bar(desc: str) -> Any:
    """A tqdm bar on stderr and the `on_progress` that moves it (one line per phase)."""
    from tqdm import tqdm

    from tasc.progress import Progress

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


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per available command."""
    parser = argparse.ArgumentParser(prog="python -m tasc", description="TASC Studio: faster task-specific decoding.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tasc.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tasc.commands.{name}":
                raise
            continue  # command not part of this build
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except Cancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (TascError, FileNotFoundError, IsADirectoryError, PermissionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result is not None and getattr(args, "json", None):
        write_json(args.json, result)
    return 0
