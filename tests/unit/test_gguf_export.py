"""GGUF export (`tasc export --gguf`): the file's metadata, tensors and errors; no llama.cpp needed here."""

import json

import pytest
import torch

from tasc.core.errors import ModelError
from tasc.core.gguf_export import bpe_merges, export_gguf, gguf_for_model, permute_rotary, pre_tokenizer_name

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install -r requirements.txt)")


@pytest.mark.parametrize("kind, weight_type", [("f32", "F32"), ("bf16", "BF16"), ("q8_0", "Q8_0")])
def test_export_writes_llama_metadata_and_typed_tensors(tiny_model_dir, tmp_path, kind, weight_type):
    out = export_gguf(tiny_model_dir, tmp_path / f"tiny-{kind}.gguf", kind)
    reader = gguf.GGUFReader(out)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.t")}
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == config["num_hidden_layers"]
    assert fields["llama.attention.head_count_kv"] == config["num_key_value_heads"]
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.eos_token_id"] == 0
    assert fields["tokenizer.ggml.add_bos_token"] is False
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == weight_type
    assert types["blk.0.attn_norm.weight"] == "F32"  # norms stay exact
    assert "output.weight" not in types  # tied: llama.cpp reuses token_embd
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == config["vocab_size"]


def test_q_and_k_are_permuted_to_the_interleaved_rotary_layout():
    rows = torch.arange(8.0).reshape(8, 1)  # one head of dim 8: halves [0..3] [4..7] -> pairs (0,4) (1,5) ...
    assert permute_rotary(rows, 1).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_other_architectures_get_a_clear_error(tiny_model_dir, tmp_path):
    other = tmp_path / "gpt2"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ModelError, match="Llama-architecture"):
        export_gguf(other, tmp_path / "x.gguf")
    with pytest.raises(ModelError, match="one of"):
        export_gguf(tiny_model_dir, tmp_path / "x.gguf", "q4_k")
    assert not (tmp_path / "x.gguf").exists()


def test_pre_tokenizer_names_and_merges():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}, ["a", "Ġb", "7"]) == "smollm"  # no digit merges: same split
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}, ["a", "Ġ4"]) == "gpt-2"
    digits = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_name({"pre_tokenizer": digits}, ["12"]) == "smollm"
    with pytest.raises(ModelError, match="byte-level"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}}, [])
    assert bpe_merges({"model": {"type": "BPE", "merges": [["a", "b"], ["a b", "c"]]}}) == ["a b", "a\u0120b c"]


def test_exports_are_cached_per_directory_content(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TASC_HOME", str(tmp_path))
    first = gguf_for_model(str(tiny_model_dir), None, "q8_0")
    assert first.parent == tmp_path / "gguf" and first.is_file()
    mtime = first.stat().st_mtime_ns
    assert gguf_for_model(str(tiny_model_dir), None, "q8_0") == first and first.stat().st_mtime_ns == mtime
    with pytest.raises(ModelError, match="ships no GGUF"):
        gguf_for_model(str(tiny_model_dir), "shipped")
