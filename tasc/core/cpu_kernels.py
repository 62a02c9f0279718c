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


def packed_dtypes() -> tuple[torch.dtype, ...]:
    """Weight dtypes oneDNN packs here: fp32, and bf16 where the CPU has native bf16 (AVX512-BF16, AMX).

    Why bf16: a pass reads half the bytes and AVX512-BF16 doubles the multiply rate. On a 2-core
    EPYC (Zen 4) a SmolLM2-135M pass took 18.8 ms for one token and 24.8 ms for 16, against 25.0 and
    33.8 ms in fp32. Without native bf16 oneDNN emulates it, slower than fp32, so it is not packed.
    """
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return (torch.float32, torch.bfloat16) if native_bf16 else (torch.float32,)


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`nn.Linear.forward` through oneDNN's packed weight, outside autograd, on CPU inputs of the weight's dtype."""
    weight = self.weight
    if torch.is_grad_enabled() or x.dtype != weight.dtype or x.device.type != "cpu":
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
    """Route every `nn.Linear` of a CPU fp32 (or bf16, see `packed_dtypes`) model through oneDNN's packed linear.

    Returns how many linears were rerouted. Does nothing (returns 0) on other devices or dtypes, when
    the linears hold more than `MAX_PACKED_BYTES` (their packed copies would double that), or when
    oneDNN is unavailable or off.
    """
    if not onednn_available():
        return 0
    dtypes = packed_dtypes()
    linears = [m for m in model.modules()
               if type(m) is nn.Linear and m.weight.device.type == "cpu" and m.weight.dtype in dtypes]
    weights = {m.weight.data_ptr(): m.weight.numel() * m.weight.element_size() for m in linears}  # tied weights counted once
    if sum(weights.values()) > MAX_PACKED_BYTES:
        return 0
    for module in linears:
        module.forward = types.MethodType(_packed_forward, module)  # type: ignore[method-assign]  # per instance, on purpose
    return len(linears)
