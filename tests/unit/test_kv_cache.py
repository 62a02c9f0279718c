"""The slab KV cache gives the logits a dynamic cache gives, through writes, rollbacks, tree gathers and prefix forks."""

import random

import pytest
import torch
from transformers import DynamicCache

from tasc.spec.decode import DecodeConfig, _start_cache, keep_cache_positions
from tasc.spec.kv_cache import SlabCache, SlabLayer, slab_cache, slab_supported
from tests.tiny import make_tiny_model

VOCAB = 97


@pytest.fixture(scope="module")
def model():
    return make_tiny_model(VOCAB, seed=3, layers=2)


def _pass(model, cache, ids):
    with torch.inference_mode():
        return model(torch.tensor([ids]), past_key_values=cache, use_cache=True).logits[0]


@pytest.mark.parametrize("seed", range(6))
def test_same_logits_as_dynamic_cache_through_random_writes_and_rollbacks(model, seed):
    rng = random.Random(seed)
    dynamic, slab = DynamicCache(config=model.config), slab_cache(model, capacity=8)  # too small: it must grow
    assert isinstance(slab, SlabCache)
    prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(2, 9))]
    torch.testing.assert_close(_pass(model, slab, prompt), _pass(model, dynamic, prompt))
    for _ in range(12):
        chunk = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 6))]
        torch.testing.assert_close(_pass(model, slab, chunk), _pass(model, dynamic, chunk))
        drop = rng.randint(0, len(chunk) - 1)
        dynamic.crop(-drop)
        slab.crop(-drop)
        assert slab.get_seq_length() == dynamic.get_seq_length()


def test_tree_gather_matches_the_dynamic_cache(model):
    dynamic, slab = DynamicCache(config=model.config), slab_cache(model, capacity=64)
    ids = list(range(3, 15))
    _pass(model, dynamic, ids)
    _pass(model, slab, ids)
    with torch.inference_mode():  # as inside the verify loop
        keep_cache_positions(dynamic, 5, [6, 8, 11])
        slab.keep_positions(5, [6, 8, 11])
    assert slab.get_seq_length() == dynamic.get_seq_length() == 8
    for a, b in zip(slab.layers, dynamic.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys)
        torch.testing.assert_close(a.values, b.values)
    torch.testing.assert_close(_pass(model, slab, [20, 21]), _pass(model, dynamic, [20, 21]))


def test_prefix_fork_is_a_copy(model):
    prefix = DynamicCache(config=model.config)
    _pass(model, prefix, [5, 6, 7, 8])
    before = [layer.keys.clone() for layer in prefix.layers]
    fork = slab_cache(model, capacity=32, prefix=prefix)
    assert fork.get_seq_length() == 4
    _pass(model, fork, [9, 10, 11])
    fork.crop(-5)  # more than it wrote: into the copied prefix
    _pass(model, fork, [1, 2])
    for layer, old in zip(prefix.layers, before, strict=True):
        assert layer.keys.shape[-2] == 4 and torch.equal(layer.keys, old)  # the shared prefix is untouched


def test_positive_crop_is_refused():
    layer = SlabLayer(4)
    with pytest.raises(ValueError, match="negative"):
        layer.crop(2)


def test_sliding_window_models_keep_the_dynamic_cache(model):
    assert slab_supported(model)
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    model.config.sliding_window = 4
    try:
        assert not slab_supported(model)
        with pytest.raises(ValueError, match="full-attention"):
            slab_cache(model, 16)
        cache, _ = _start_cache(model, [1, 2, 3], None, DecodeConfig())  # the verify loop keeps a DynamicCache
        assert isinstance(cache, DynamicCache)
    finally:
        model.config.layer_types = ["full_attention"] * model.config.num_hidden_layers
        model.config.sliding_window = None
