"""Does `torch.compile` pay for a CPU verify pass? Time one pass per width, eager against compiled.

The issue asks for compiled passes on a CPU "where torch.compile pays". This times a pass of
`width` new tokens after a filled 120-token context over transformers' `StaticCache` (the shapes
stay fixed, as the bucketed loop keeps them), in three ways:
    eager      the model as `load_model` gives it (oneDNN-packed linears on a CPU, `cpu_kernels.py`)
    compile    `torch.compile` (inductor) with freezing, which prepacks weights itself
    cpp        the same with inductor's C++ wrapper (less Python per call)
    packed     inductor for everything but the linears, which stay oneDNN-packed (an opaque custom op)
and prints one JSON line per mode: median milliseconds per width and the first call's seconds (the compile).

    .venv/bin/python scripts/cpu_compile_check.py --model runs/snips-ft --modes eager,compile,cpp,packed

Time it alone: another torch process on the same cores makes every figure meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("eager", "compile", "cpp", "packed")
CONTEXT = 120


def time_passes(model: Any, forward: Any, widths: Sequence[int], repeats: int) -> dict[str, Any]:
    """Median ms of one pass per width, and the first (compiling) call's seconds per width."""
    import torch
    from transformers import StaticCache

    vocab = model.config.vocab_size
    medians, first = {}, {}
    with torch.inference_mode():
        for width in widths:
            cache = StaticCache(config=model.config, max_cache_len=CONTEXT + max(widths))
            context = torch.randint(0, vocab, (1, CONTEXT))
            model(input_ids=context, position_ids=torch.arange(CONTEXT)[None], past_key_values=cache, use_cache=True)
            times = []
            for _ in range(repeats + 1):
                for layer in cache.layers:  # every repeat writes the same slots: the context stays 120 long
                    layer.cumulative_length.fill_(CONTEXT)
                ids = torch.randint(0, vocab, (1, width))
                start = time.perf_counter()
                forward(input_ids=ids, position_ids=torch.arange(CONTEXT, CONTEXT + width)[None], past_key_values=cache,
                        use_cache=True)
                times.append(time.perf_counter() - start)
            first[width] = round(times[0], 2)
            rest = sorted(times[1:])
            medians[width] = round(rest[len(rest) // 2] * 1000, 2)
    return {"ms": medians, "first_call_s": first}


def route_linears_through_custom_op(model: Any) -> None:
    """Let inductor compile the model around oneDNN's packed linears, which it cannot lower itself.

    Each `nn.Linear` calls `tasc_check::packed_linear`, an op inductor treats as an opaque kernel; the op
    runs the same packed path as `tasc.core.cpu_kernels` (its packed copy made on first use).
    """
    import types

    import torch
    from torch import nn

    packed: dict[tuple[int, int], torch.Tensor] = {}

    @torch.library.custom_op("tasc_check::packed_linear", mutates_args=(),
                             schema="(Tensor x, Tensor weight, Tensor? bias) -> Tensor")  # annotations are strings here
    def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        key = (weight.data_ptr(), weight._version)
        if key not in packed:
            packed[key] = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
        return torch.ops.mkldnn._linear_pointwise(x, packed[key], bias, "none", [], "")

    @packed_linear.register_fake
    def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    def forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return packed_linear(x, self.weight, self.bias)

    for module in model.modules():
        if type(module) is nn.Linear:
            module.forward = types.MethodType(forward, module)


def main(argv: Sequence[str] | None = None) -> None:
    """Time each mode in turn and print one JSON line per mode."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--widths", default="1,4,16,32")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        raise SystemExit(f"unknown modes {sorted(unknown)}: choose from {', '.join(MODES)}")
    widths = [int(w) for w in args.widths.split(",")]

    import torch

    from tasc.core.cpu_kernels import ENV_SWITCH
    from tasc.core.models import load_model

    for mode in modes:
        if mode != "eager":  # inductor packs the weights itself and cannot lower our packed linears
            os.environ[ENV_SWITCH] = "0"
        model = load_model(args.model, device="cpu").model.eval()
        forward = model.forward
        if mode == "packed":
            route_linears_through_custom_op(model)
        if mode != "eager":
            import torch._inductor.config as inductor

            torch._dynamo.reset()
            inductor.freezing = mode != "packed"  # freezing packs the weights, which the custom op already did
            inductor.cpp_wrapper = mode == "cpp"
            forward = torch.compile(model.forward, dynamic=False)
        os.environ.pop(ENV_SWITCH, None)
        print(json.dumps({"mode": mode, "torch": torch.__version__, "threads": torch.get_num_threads(),
                          **time_passes(model, forward, widths, args.repeats)}), flush=True)


if __name__ == "__main__":
    main()
