"""`python -m tasc export --gguf OUT`: a model directory as a GGUF file that llama.cpp loads."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tasc.commands.options import add_common
from tasc.core.gguf_export import GGUF_TYPES


def register(subparsers: Any) -> None:
    """Add the `export` parser."""
    p = subparsers.add_parser("export", help="write a model (base, fine-tuned, enriched) as a GGUF for llama.cpp")
    add_common(p)
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m (offline default) or a model directory (Llama architecture)")
    p.add_argument("--gguf", required=True, metavar="OUT", help="the GGUF file to write")
    p.add_argument("--type", dest="gguf_type", choices=GGUF_TYPES, default="f32",
                   help="weights: f32 (default, the model exactly), bf16 (half the size), q8_0 (a quarter; quantised)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Export the model and report the file."""
    from tasc.core.gguf_export import export_gguf
    from tasc.core.models import resolve_model_path

    model_dir = Path(resolve_model_path(args.model))
    if not model_dir.is_dir():
        raise ValueError(f"--model must be an alias or a local model directory, not the hub id {args.model!r}")
    t0 = time.perf_counter()
    out = export_gguf(model_dir, args.gguf, args.gguf_type, name=Path(args.model).name)
    result = {"model": args.model, "gguf": str(out), "type": args.gguf_type, "bytes": out.stat().st_size,
              "seconds": round(time.perf_counter() - t0, 2)}
    print(f"wrote {out} ({result['bytes'] / 1e6:.1f} MB, {args.gguf_type}) in {result['seconds']} s", file=sys.stderr)
    return result
