"""Faster CPU inference: oneDNN's packed-weight linear in place of PyTorch's default MKL path.

Why: on a CPU, a decoder pass over a 135M model is bound by reading the weights. PyTorch's
`F.linear` calls MKL, which (measured on a 2-core AMD EPYC, fp32) reads the weights at about
15 GB/s for one token and runs 2- and 3-token products as repeated matrix-vector products, so
verifying a 3-token draft cost twice a 1-token pass. oneDNN with the weight reordered once into
its blocked layout reads the same weights about twice as fast and keeps a pass of 1 to 8 tokens
at nearly one price: that is what speculative decoding needs, and greedy decoding gains too.

The original `nn.Linear` stays as it is (same parameters, same state dict, safetensors saves are
unchanged); only its `forward` is rebound on this instance. The packed copy is made on the first
inference pass, rebuilt when the weight changes (its version counter moves: an optimizer step,
a LoRA merge, a state-dict load) and never used while autograd records, so training is untouched.
Set `TASC_ONEDNN=0` to switch it off.
"""

from __future__ import annotations

import os
import types
import weakref
from typing import Any

import torch
from torch import nn

ENV_SWITCH = "TASC_ONEDNN"
# The packed copies sit beside the fp32 weights (the originals stay for training and saving), so
# a model whose linears pass this size keeps the default path rather than doubling its memory.
MAX_PACKED_BYTES = 4 * 2**30
# module -> ((weight address, weight version), packed weight); kept outside the module so that
# deep copies (the hybrid cuts blocks from a target) and state dicts never carry oneDNN tensors
_PACKED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, int], torch.Tensor]] = weakref.WeakKeyDictionary()


def onednn_available() -> bool:
    """Whether this PyTorch build can run oneDNN's packed linear (and the user has not said no)."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`nn.Linear.forward` through oneDNN's packed weight, outside autograd on fp32 CPU tensors."""
    weight = self.weight
    if torch.is_grad_enabled() or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.device.type != "cpu":
        return nn.functional.linear(x, weight, self.bias)
    packed = _PACKED.get(self)
    version = (weight.data_ptr(), weight._version)
    if packed is None or packed[0] != version:  # first pass, or the weight was moved or changed in place
        packed = (version, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
        _PACKED[self] = packed
    return torch.ops.mkldnn._linear_pointwise(x, packed[1], self.bias, "none", [], "")


def linear_kernels(model: Any) -> str:
    """What the model's linears run on: "onednn-packed" when `pack_linears` rerouted them, else "default"."""
    packed = any(getattr(m.forward, "__func__", None) is _packed_forward for m in model.modules() if isinstance(m, nn.Linear))
    return "onednn-packed" if packed else "default"


def pack_linears(model: Any) -> int:
    """Route every `nn.Linear` of a CPU fp32 model through oneDNN's packed linear; return how many.

    Does nothing (returns 0) on other devices or dtypes, when the linears hold more than
    `MAX_PACKED_BYTES` (their packed copies would double that), or when oneDNN is unavailable or off.
    """
    if not onednn_available():
        return 0
    linears = [m for m in model.modules()
               if type(m) is nn.Linear and m.weight.device.type == "cpu" and m.weight.dtype == torch.float32]
    weights = {m.weight.data_ptr(): m.weight.numel() * 4 for m in linears}  # tied weights counted once
    if sum(weights.values()) > MAX_PACKED_BYTES:
        return 0
    for module in linears:
        module.forward = types.MethodType(_packed_forward, module)  # type: ignore[method-assign]  # per instance, on purpose
    return len(linears)
