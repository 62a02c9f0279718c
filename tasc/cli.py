"""`python -m tasc`: one subcommand per module in `tasc.commands`.

Every command module has `register(subparsers)` that adds its parser and sets `run`, a function
`run(args) -> dict | None`. The result is printed and, with `--json PATH`, written as JSON. User
errors (`TascError`, bad files) end with a one-line message and exit code 2, never a traceback.
The options and helpers the commands share are in `tasc.commands.options`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from tasc.commands.options import write_json
from tasc.core.errors import Cancelled, TascError

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
    "export",
)


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
