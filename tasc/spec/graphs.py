"""Verify passes at a few fixed widths over transformers' StaticCache, compiled (CUDA graphs) on a GPU.

On a GPU a pass of SmolLM2-135M is launch- and host-bound: ~30 ms for 1 token and about the same for
32, while the math takes microseconds. Capturing the pass as a CUDA graph replays all its kernels in
one launch. A graph needs fixed shapes and fixed tensor addresses, so:
    width     a pass's tokens (head + draft) are padded to the next bucket of `BUCKETS`;
              the pads sit after every real token, so no real token attends to them
    cache     transformers' `StaticCache` (preallocated at its maximum length, fixed addresses)
    rollback  each layer's `cumulative_length` is set back to the accepted length: rejected draft
              tokens and pads stay in the slab, beyond the length, and are overwritten later
The forward is wrapped with `torch.compile(mode="reduce-overhead")`, which captures and replays one
CUDA graph per bucket (PyTorch's cudagraph trees), the route transformers itself takes for
`generate(cache_implementation="static")`. On a CPU the same padded, static path runs eagerly (the
tests check it is lossless there); `compile_forward` decides where compiling pays.

Example:
    >>> bucket_for(5), bucket_for(33), bucket_for(200)
    (8, 48, None)
    >>> padded([7, 8, 9], 4, pad_id=0)
    [7, 8, 9, 0]
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16, 32, 48)  # pass widths compiled; a wider pass (a long prompt's prefill) runs eagerly


def bucket_for(width: int, buckets: Sequence[int] = BUCKETS) -> int | None:
    """The smallest bucket that holds `width` tokens; None when none does (run that pass eagerly)."""
    return next((b for b in buckets if b >= width), None)


def padded(tokens: Sequence[int], bucket: int, pad_id: int) -> list[int]:
    """`tokens` followed by `pad_id` up to `bucket` tokens."""
    if len(tokens) > bucket:
        raise ValueError(f"{len(tokens)} tokens do not fit a bucket of {bucket}")
    return [*tokens, *[pad_id] * (bucket - len(tokens))]


def graphs_available(model: Any) -> bool:
    """Whether the compiled (CUDA-graph) path applies: a CUDA model whose layers are all full attention."""
    from tasc.spec.kv_cache import slab_supported

    return model.device.type == "cuda" and slab_supported(model)


def compile_forward(model: Any, enabled: bool) -> Callable[..., Any]:
    """The model's forward, compiled for replay as CUDA graphs when `enabled`, else the plain forward."""
    if not enabled:
        return model.forward
    return torch.compile(model.forward, mode="reduce-overhead", dynamic=False, fullgraph=False)


def _slabs(layer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """An initialised static layer's key and value slabs, (B, H, max_len, D) each."""
    assert layer.keys is not None and layer.values is not None, "an initialised layer holds its slabs"
    return layer.keys, layer.values


class StaticVerifier:
    """A verify loop's KV cache and forward at bucketed widths: the static path of `speculative_steps`.

    It stands where the loop's cache stands (`get_seq_length`, `crop`, `keep_positions`) and runs the
    pass itself (`forward`), so the loop's steps stay the same on every device.
    """

    def __init__(self, model: Any, max_len: int, pad_id: int, forward: Callable[..., Any] | None = None,
                 buckets: Sequence[int] = BUCKETS) -> None:
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer

        self.model, self.pad_id, self.buckets = model, pad_id, tuple(buckets)
        self.max_len = max_len + max(self.buckets)  # room for a last pass's pads
        self.cache = StaticCache(config=model.config, max_cache_len=self.max_len)
        self.layers = [layer for layer in self.cache.layers if isinstance(layer, StaticLayer)]  # the same, typed
        if len(self.layers) != len(self.cache.layers):
            raise ValueError("the bucketed static path needs full-attention layers only (graphs_available)")
        self.length = 0
        self._forward = forward or model.forward

    def get_seq_length(self) -> int:
        """Accepted positions in the cache."""
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last `-tokens_to_remove` positions (a negative count, as transformers 5's crop)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of positions to remove, got {tokens_to_remove}")
        self.length = max(self.length + tokens_to_remove, 0)

    def keep_positions(self, start: int, keep: Sequence[int]) -> None:
        """Keep the first `start` positions and then only the positions `keep` (ascending), moved down."""
        index = torch.tensor(list(keep), dtype=torch.long, device=self.model.device)
        for layer in self.layers:
            if layer.is_initialized:
                keys, values = _slabs(layer)
                keys[:, :, start : start + len(keep)] = keys.index_select(2, index)
                values[:, :, start : start + len(keep)] = values.index_select(2, index)
        self.length = start + len(keep)

    def load(self, prefix: Any) -> None:
        """Start from a filled dynamic cache (a shared prompt prefix): its states are copied into the slots."""
        n = prefix.get_seq_length()
        if n == 0:
            return
        for layer, cached in zip(self.layers, prefix.layers, strict=True):
            if not layer.is_initialized:
                layer.lazy_initialization(cached.keys, cached.values)
            keys, values = _slabs(layer)
            keys[:, :, :n] = cached.keys
            values[:, :, :n] = cached.values
        self.length = n

    def _set_length(self) -> None:
        """Point every layer's write position at the accepted length (the rollback of the static slots)."""
        for layer in self.layers:
            if layer.is_initialized:
                layer.cumulative_length.fill_(self.length)

    def forward(self, tokens: Sequence[int], logits_to_keep: int) -> torch.Tensor:
        """One pass over `tokens` after the accepted positions: the last `logits_to_keep` real positions' logits."""
        n = len(tokens)
        if self.length + n > self.max_len - max(self.buckets):
            raise ValueError(f"the static cache holds {self.max_len - max(self.buckets)} positions; this pass needs {self.length + n}")
        bucket = bucket_for(n, self.buckets)
        width = bucket or n  # past the largest bucket: the exact width, eagerly
        ids = torch.tensor([padded(tokens, width, self.pad_id)], device=self.model.device)  # (1, width)
        positions = torch.arange(self.length, self.length + width, device=self.model.device)[None]  # (1, width)
        self._set_length()
        run = self._forward if bucket is not None else self.model.forward
        try:
            out = run(input_ids=ids, position_ids=positions, past_key_values=self.cache, use_cache=True)
        except Exception as exc:  # a compile or capture failure of any kind: run eagerly from now on
            if run is self.model.forward:
                raise
            log.warning("compiled verify pass failed (%s: %s); running eagerly", type(exc).__name__, exc)
            self._forward = self.model.forward
            self._set_length()
            out = self.model.forward(input_ids=ids, position_ids=positions, past_key_values=self.cache, use_cache=True)
        logits = out.logits[0]  # (width, V)
        self.length += n  # the pads lie beyond: the next pass writes over them
        return logits[n - logits_to_keep : n]
