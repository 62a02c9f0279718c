"""oneDNN packed linears: same outputs, training untouched, weights kept in step, nothing saved."""

from __future__ import annotations

import copy

import pytest
import torch

from tasc.core.cpu_kernels import _PACKED, ENV_SWITCH, linear_kernels, onednn_available, pack_linears, packed_dtypes
from tests.tiny import make_tiny_model

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN")


def _pair(seed: int = 0):
    """Two copies of one tiny model: the second with packed linears."""
    plain = make_tiny_model(vocab_size=120, seed=seed).eval()
    packed = copy.deepcopy(plain)
    assert pack_linears(packed) == 2 * 7 + 1  # 2 blocks of 7 linears, and the LM head
    assert (linear_kernels(plain), linear_kernels(packed)) == ("default", "onednn-packed")
    return plain, packed


def test_packed_logits_match_plain_ones_for_every_pass_width():
    plain, packed = _pair()
    ids = torch.randint(0, 120, (2, 9))
    with torch.inference_mode():
        for width in (1, 2, 3, 5, 9):
            want = plain(ids[:, :width]).logits
            got = packed(ids[:, :width]).logits
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert len([m for m in packed.modules() if m in _PACKED]) == 15  # the packed path really ran


def test_training_passes_keep_autograd_and_a_changed_weight_is_repacked():
    _, packed = _pair()
    ids = torch.randint(0, 120, (1, 6))
    with torch.inference_mode():
        before = packed(ids).logits.clone()
    optimizer = torch.optim.SGD(packed.parameters(), lr=0.5)
    loss = packed(ids, labels=ids).loss  # grad enabled: the plain path, so gradients flow
    loss.backward()
    assert packed.lm_head.weight.grad is not None and packed.lm_head.weight.grad.abs().sum() > 0
    optimizer.step()
    with torch.inference_mode():
        after = packed(ids).logits
        unpacked = torch.nn.functional.linear(
            packed.model(ids).last_hidden_state, packed.lm_head.weight
        )
    assert not torch.allclose(after, before)  # the stale packed weights were not reused
    torch.testing.assert_close(after, unpacked, rtol=1e-4, atol=1e-4)


def test_state_dict_and_deep_copies_carry_no_packed_tensors(tmp_path):
    plain, packed = _pair()
    with torch.inference_mode():
        packed(torch.randint(0, 120, (1, 4)))
    assert packed.state_dict().keys() == plain.state_dict().keys()
    clone = copy.deepcopy(packed)
    assert not any(m in _PACKED for m in clone.modules())
    packed.save_pretrained(tmp_path / "m")  # safetensors save works with rebound forwards
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert pack_linears(make_tiny_model(vocab_size=120)) == 0


def test_models_too_large_to_double_are_left_alone(monkeypatch):
    import tasc.core.cpu_kernels as kernels

    monkeypatch.setattr(kernels, "MAX_PACKED_BYTES", 1000)
    model = make_tiny_model(vocab_size=120)
    assert pack_linears(model) == 0
    assert linear_kernels(model) == "default"  # what a benchmark of this model reports


def test_other_dtypes_are_left_alone():
    model = make_tiny_model(vocab_size=120).to(torch.float16)
    assert pack_linears(model) == 0


def test_bf16_is_packed_only_where_the_cpu_runs_it_natively(monkeypatch):
    model = make_tiny_model(vocab_size=120).to(torch.bfloat16)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert packed_dtypes() == (torch.float32,)
    assert pack_linears(model) == 0  # emulated bf16 would be slower than the default path


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no native bf16 on this CPU")
def test_bf16_packed_logits_match_plain_bf16_ones():
    plain = make_tiny_model(vocab_size=120, seed=1).to(torch.bfloat16).eval()
    packed = copy.deepcopy(plain)
    assert pack_linears(packed) == 2 * 7 + 1
    ids = torch.randint(0, 120, (1, 9))
    with torch.inference_mode():
        for width in (1, 4, 9):
            got, want = packed(ids[:, :width]).logits, plain(ids[:, :width]).logits
            assert got.dtype == torch.bfloat16
            torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.05)  # bf16: the same up to rounding
    assert len([m for m in packed.modules() if m in _PACKED]) == 15
