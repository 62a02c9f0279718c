"""A preallocated KV cache for the verify loop: a write is a copy into a slab, a rollback moves a length.

transformers' `DynamicCache` grows each layer with `torch.cat` on every pass (a copy of the whole
cache per layer, per pass) and crops by slicing; on 2 CPU cores that was about a fifth of a
one-token pass of SmolLM2-135M. `SlabCache` allocates every layer's keys and values once, for the
longest answer a request may write, and hands attention a view of the live part, so:
    update   copy the new positions into the slab (no reallocation), view [:length]
    crop     length -= rejected draft tokens (nothing is copied or freed)
    keep     a tree's accepted side branch gathered in place
The attention still sees exactly the live positions (not a padded maximum), so its cost and its
output are those of a dynamic cache.

Models with sliding-window or other non-standard layers keep transformers' `DynamicCache`
(`tasc.spec.decode` checks `slab_supported`), since their layers drop positions on their own.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer


class SlabLayer(DynamicLayer):
    """One layer's keys and values in preallocated slabs of shape (B, H, capacity, D)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = max(int(capacity), 1)
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Allocate the slabs on the first write, with the dtype, device and head shape of the states."""
        self.dtype, self.device = key_states.dtype, key_states.device
        b, h, _, dk = key_states.shape
        self.key_slab = torch.empty((b, h, self.capacity, dk), dtype=self.dtype, device=self.device)
        self.value_slab = torch.empty((b, h, self.capacity, value_states.shape[-1]), dtype=self.dtype, device=self.device)
        self._view()
        self.is_initialized = True

    def _view(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Point `keys`/`values` (what attention and transformers read) at the live part of the slabs."""
        keys, values = self.key_slab[:, :, : self.length], self.value_slab[:, :, : self.length]
        self.keys, self.values = keys, values
        return keys, values

    def _grow(self, needed: int) -> None:
        """Reallocate to at least `needed` positions (only when a caller under-sized the cache)."""
        capacity = max(needed, 2 * self.capacity)
        for name in ("key_slab", "value_slab"):
            old = getattr(self, name)
            new = old.new_empty((*old.shape[:2], capacity, old.shape[-1]))
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)
        self.capacity = capacity

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the live ones; return the live keys and values (views)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            self._grow(end)
        self.key_slab[:, :, self.length : end] = key_states
        self.value_slab[:, :, self.length : end] = value_states
        self.length = end
        return self._view()

    def get_seq_length(self) -> int:
        """Live positions."""
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last `-tokens_to_remove` positions (transformers 5 passes a negative count): move the length."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of positions to remove, got {tokens_to_remove}")
        if self.is_initialized and tokens_to_remove:
            self.length = max(self.length + tokens_to_remove, 0)
            self._view()

    def keep(self, start: int, positions: torch.Tensor) -> None:
        """Keep the first `start` positions, then only `positions` (ascending, all >= start), moved down in place."""
        n = positions.numel()
        self.key_slab[:, :, start : start + n] = self.key_slab.index_select(2, positions)
        self.value_slab[:, :, start : start + n] = self.value_slab.index_select(2, positions)
        self.length = start + n
        self._view()

    def load(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Start from a copy of cached states (a prompt prefix): copied into the slabs, not shared."""
        self.lazy_initialization(keys, values)
        if keys.shape[-2] > self.capacity:
            self._grow(keys.shape[-2])
        self.key_slab[:, :, : keys.shape[-2]] = keys
        self.value_slab[:, :, : values.shape[-2]] = values
        self.length = keys.shape[-2]
        self._view()


class SlabCache(Cache):
    """A KV cache of `SlabLayer`s, one per model layer, each holding up to `capacity` positions."""

    def __init__(self, num_layers: int, capacity: int) -> None:
        self.slabs = [SlabLayer(capacity) for _ in range(num_layers)]  # the same objects as `layers`, typed
        super().__init__(layers=list(self.slabs))

    def keep_positions(self, start: int, keep: Sequence[int]) -> None:
        """Keep the first `start` positions and then only the positions `keep` (ascending)."""
        index = None
        for layer in self.slabs:
            if not layer.is_initialized:
                continue
            if index is None:
                index = torch.tensor(list(keep), dtype=torch.long, device=layer.device)
            layer.keep(start, index)


def _text_config(model: Any) -> Any:
    """The decoder's config (a multimodal model's text part)."""
    return model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config


def slab_supported(model: Any) -> bool:
    """Whether every attention layer of the model is plain full attention (what `SlabLayer` stands in for)."""
    config = _text_config(model)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and any(t != "full_attention" for t in layer_types):
        return False
    return getattr(config, "sliding_window", None) in (None, 0) or not getattr(config, "use_sliding_window", True)


def slab_cache(model: Any, capacity: int, prefix: Any = None) -> Any:
    """A cache for one answer of at most `capacity` positions (prompt included), starting from `prefix`'s states.

    `prefix` is a filled cache of the prompt's first positions (a `PrefixCache`'s); it is copied, not shared.
    Only for models `slab_supported` accepts (the verify loop keeps a `DynamicCache` for the others).
    """
    if not slab_supported(model):
        raise ValueError("a slab cache stands in for full-attention layers only; this model has others")
    cache = SlabCache(_text_config(model).num_hidden_layers, capacity)
    if prefix is not None:
        for layer, cached in zip(cache.slabs, prefix.layers, strict=True):
            if cached.is_initialized and cached.keys is not None and cached.keys.numel():
                layer.load(cached.keys, cached.values)
    return cache
