"""Hybrid: the frozen target encodes the prompt once, a small trained decoder writes the answer alone.

    prompt ids ──► target (frozen, one pass) ──► last hidden states (T, H_t)
                                                  │ projector (trained): LayerNorm, Linear-GELU-Linear
                                                  ▼
    soft prefix (T, H_d) [+ the decoder's own embeddings of the prompt tokens]
                                                  ▼
    small decoder (trained) ──► answer tokens, greedy, with its own KV cache
                                [+ a copy head: write from the vocabulary, or point at a prompt token]

Only the projector and the decoder train, on the corpus's input -> output pairs (loss on the answer
tokens); the target's parameters have requires_grad False and never change. This mode is lossy: its
answers are the decoder's, not the target's, so the benchmark reports its quality beside its speed.

Two choices, and why:
- The projector's last layer starts at zero, so before training the prefix is exactly the decoder's
  embeddings of the prompt tokens: a decoder initialised from a trained draft model (`--decoder-init`)
  starts as that draft model, and training only adds what the target's states bring.
- The prompt tokens' own embeddings are added to the projected states (`add_token_embeddings`):
  answers copy slot values and names verbatim from the input, and a token's identity is cheap to
  give directly, leaving the projected states to carry what the target understood.
- A pointer-generator copy head (`copy`, `tasc.compare.copy_head`): token embeddings alone did not teach a
  2-layer decoder to copy. After 1,000 SNIPS steps it still wrote values it had seen in training
  ("pop punk" for "classical relaxations", slot F1 0.36). It never copies special tokens: copying the
  template's `<|im_end|>` (= EOS) after an input's last word ended answers inside a JSON string.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence, Unpack

from tasc.compare.draft_model import DraftConfig, build_draft_model, lm_loss, load_draft_model, slice_target
from tasc.core.corpus import Corpus
from tasc.core.errors import CorpusError, ModelError
from tasc.core.models import LoadedModel, publish_dir, read_meta, write_meta
from tasc.core.progress import Progress, ProgressFn, check_cancel
from tasc.core.prompts import answer_ids
from tasc.core.run_dir import RunDir, TrainOptions, TrainRun
from tasc.core.train_loop import LoopConfig, batch_indices, train_loop

DECODER_DIR = "decoder"
PROJECTOR_FILE = "projector.safetensors"
COPY_HEAD_FILE = "copy_head.safetensors"
IGNORE = -100


@dataclass
class HybridConfig:
    """Shape of the decoder and projector, and how much to train them."""

    layers: int = 2  # decoder blocks
    hidden: int = 256  # decoder hidden size
    heads: int = 4  # decoder attention heads
    intermediate: int | None = None  # decoder MLP width; None: 3 x hidden
    projector: str = "mlp"  # "mlp" (LayerNorm, Linear, GELU, Linear) or "linear" (LayerNorm, Linear)
    add_token_embeddings: bool = True  # add the decoder's embeddings of the prompt tokens to the prefix
    copy: bool = True  # a pointer-generator copy head over the prompt tokens (hybrids saved before it: False)
    block_special_copies: bool = True  # the copy head never copies special tokens (hybrids saved before it: False)
    encoder_layer: int | None = None  # target states after this many blocks; None: the last (after the final norm)
    decoder_init: str | None = None  # a draft model directory to start the decoder from (None: fresh, PCA embeddings)
    target_blocks: int = 0  # > 0: the decoder is this many of the target's own blocks (spread evenly), embeddings frozen
    continue_from: str | None = None  # a saved hybrid directory to train further (its shape settings replace these)
    max_inputs: int = 1000  # distinct training inputs the target encodes (once, kept in memory: ~0.1 s each on CPU)
    steps: int = 300  # optimiser steps (~1-2 s each on 2 CPU cores)
    batch_size: int = 16  # examples per step
    learning_rate: float = 1e-3  # peak learning rate
    max_length: int = 256  # prompt + answer positions per example; longer ones are cut at the end
    encode_batch_size: int = 16  # prompts per target pass when encoding
    save_every: int = 50  # checkpoint interval in steps
    seed: int = 0  # input selection, data order, initialisation
    keep_checkpoints: bool = False  # keep OUT/checkpoints after a successful run

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("layers", "hidden", "heads", "max_inputs", "batch_size", "encode_batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.projector not in ("mlp", "linear"):
            raise ValueError(f"projector must be 'mlp' or 'linear', got {self.projector!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        if self.target_blocks < 0:
            raise ValueError(f"target_blocks must be >= 0, got {self.target_blocks}")
        if self.target_blocks and self.decoder_init:
            raise ValueError("choose one decoder start: target_blocks (cut from the target) or decoder_init (a draft model)")
        if self.continue_from and self.decoder_init:
            raise ValueError("choose one start: continue_from (a saved hybrid) or decoder_init (a draft model)")
        if self.encoder_layer is not None and self.encoder_layer < 1:
            raise ValueError(f"encoder_layer must be at least 1 (blocks of the target), got {self.encoder_layer}")


def make_projector(kind: str, in_dim: int, out_dim: int) -> Any:
    """The projector from target states (in_dim) to decoder inputs (out_dim); its last layer starts at zero."""
    from torch import nn

    layers: list[nn.Module]
    if kind == "linear":
        layers = [nn.LayerNorm(in_dim)]
        last = nn.Linear(in_dim, out_dim)
    elif kind == "mlp":
        layers = [nn.LayerNorm(in_dim), nn.Linear(in_dim, 2 * out_dim), nn.GELU()]
        last = nn.Linear(2 * out_dim, out_dim)
    else:
        raise ValueError(f"unknown projector {kind!r}; use 'mlp' or 'linear'")
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def encode(target: Any, prompts: Sequence[Sequence[int]], batch_size: int = 16, cancel: threading.Event | None = None,
           layer: int | None = None) -> list[Any]:
    """The target's hidden states of each prompt, one (T_i, H_t) tensor per prompt (no gradients).

    Args:
        layer: the states after this many decoder blocks; None: the last hidden states (after the final norm).

    Prompts are right-padded in batches: with causal attention, padding after a prompt does not
    change its states.
    """
    import torch

    base = target.base_model  # the decoder stack without the LM head: no (T, V) logits computed
    pad = target.config.pad_token_id or 0
    states: list[Any] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            check_cancel(cancel)
            batch = prompts[start : start + batch_size]
            width = max(len(p) for p in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, T)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(batch):
                ids[i, : len(p)] = torch.tensor(list(p))
                mask[i, : len(p)] = 1
            out = base(input_ids=ids.to(target.device), attention_mask=mask.to(target.device), output_hidden_states=layer is not None)
            hidden = out.last_hidden_state if layer is None else out.hidden_states[layer]  # (B, T, H_t)
            states.extend(hidden[i, : len(p)].float().cpu() for i, p in enumerate(batch))
    return states


@dataclass
class HybridResult:
    """One hybrid answer: tokens and where the time went."""

    tokens: list[int]
    encode_s: float  # the target's single pass over the prompt
    decode_s: float  # the decoder's prefill and token-by-token generation
    wall_s: float
    decoder_passes: int = 0


class HybridModel:
    """Projector + decoder; the target is passed in where it is needed, never stored or saved.

    Args:
        decoder: a small causal LM with the target's vocabulary.
        projector: maps (…, H_t) target states to (…, H_d) decoder inputs.
        config: the settings it was built with.
        meta: what the saved `tasc.json` says (target, prompt format, training figures).
    """

    def __init__(self, decoder: Any, projector: Any, config: HybridConfig, meta: dict[str, Any] | None = None,
                 copy_head: Any = None) -> None:
        from torch import nn

        if config.copy and copy_head is None:
            raise ValueError("config.copy is set but no copy head was given")
        self.decoder = decoder
        self.projector = projector
        self.copy_head = copy_head if config.copy else None
        self.config = config
        self.meta = meta or {}
        parts = {"decoder": decoder, "projector": projector, **({"copy_head": copy_head} if self.copy_head is not None else {})}
        self.module = nn.ModuleDict(parts)  # what trains and is saved

    def prefix(self, states: Any, prompt_ids: Any) -> Any:
        """Decoder input vectors for the prompt positions.

        Args:
            states: (B, T, H_t) target states.
            prompt_ids: (B, T) prompt token ids.
        Returns:
            (B, T, H_d).
        """
        x = self.projector(states.to(self.decoder.device))
        if self.config.add_token_embeddings:
            x = x + self.decoder.get_input_embeddings()(prompt_ids.to(self.decoder.device))
        return x

    def loss(self, batch: Sequence[tuple[Any, list[int], list[int]]]) -> Any:
        """Answer-token cross-entropy of a batch of (states (T, H_t), prompt ids, answer ids).

        Built as one padded (B, W) batch with one embedding lookup: per-example lookups would each
        back-propagate a dense vocab x hidden gradient, which doubled the step time.
        """
        import torch

        device = self.decoder.device
        width = max(len(p) + len(a) for _, p, a in batch)
        pad = self.decoder.config.pad_token_id or 0
        ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, W) prompt + answer, right-padded
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)  # (B, W)
        mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, W)
        states = torch.zeros((len(batch), width, batch[0][0].shape[-1]))  # (B, W, H_t), zero past the prompt
        in_prompt = torch.zeros((len(batch), width, 1))  # (B, W, 1)
        for row, (s, prompt, answer) in enumerate(batch):
            n, t = len(prompt) + len(answer), len(prompt)
            ids[row, :n] = torch.tensor(prompt + answer)
            labels[row, t:n] = torch.tensor(answer)
            mask[row, :n] = 1
            states[row, :t] = s
            in_prompt[row, :t] = 1.0
        ids, labels, mask, in_prompt = ids.to(device), labels.to(device), mask.to(device), in_prompt.to(device)
        tokens = self.decoder.get_input_embeddings()(ids)  # (B, W, H_d)
        if not self.config.add_token_embeddings:
            tokens = tokens * (1.0 - in_prompt)  # prompt positions get the projected states only
        inputs = tokens + self.projector(states.to(device)) * in_prompt  # (B, W, H_d), as `prefix` builds it
        if self.copy_head is None:
            return lm_loss(self.decoder, None, mask, labels, inputs_embeds=inputs)
        hidden = self.decoder.model(inputs_embeds=inputs, attention_mask=mask).last_hidden_state  # (B, W, H_d)
        targets = labels[:, 1:]  # (B, W-1): position t predicts labels[t + 1]
        keep = targets != IGNORE
        rows = torch.arange(len(batch), device=device)[:, None].expand_as(targets)[keep]  # (N,) batch row of each target
        h = hidden[:, :-1][keep]  # (N, H_d)
        prompt = self.copy_head.prompt(hidden, ids).rows(rows)  # every position; the mask keeps the prompt's
        log_p = self.copy_head.log_prob(h, self.decoder.lm_head(h), targets[keep], prompt, in_prompt[rows, :, 0] > 0, ids[:, :-1][keep])
        return -log_p.mean()

    def generate(self, target: Any, prompt_ids: Sequence[int], max_new_tokens: int = 128, eos_token_id: int | Sequence[int] | None = None) -> HybridResult:
        """Answer one prompt: one target pass, then the decoder alone, greedy."""
        import torch
        from transformers import DynamicCache

        eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
        t0 = time.perf_counter()
        states = encode(target, [prompt_ids], layer=self.config.encoder_layer)[0]  # (T, H_t)
        t1 = time.perf_counter()
        tokens: list[int] = []
        passes = 0
        with torch.inference_mode():
            ids = torch.tensor([list(prompt_ids)], device=self.decoder.device)
            x = self.prefix(states[None], ids)  # (1, T, H_d)
            cache = DynamicCache(config=self.decoder.config)
            hidden = self.decoder.model(inputs_embeds=x, past_key_values=cache, use_cache=True).last_hidden_state[0]  # (T, H_d)
            prompt = self.copy_head.prompt(hidden, ids[0]) if self.copy_head is not None else None
            passes += 1
            while len(tokens) < max_new_tokens:
                h = hidden[-1]
                logits = self.decoder.lm_head(h)  # (V,)
                last = tokens[-1] if tokens else int(prompt_ids[-1])
                scores = logits if prompt is None or self.copy_head is None else self.copy_head.probs(h, logits, prompt, last)
                token = int(scores.argmax())
                tokens.append(token)
                if token in eos or len(tokens) >= max_new_tokens:
                    break
                hidden = self.decoder.model(torch.tensor([[token]], device=self.decoder.device), past_key_values=cache, use_cache=True).last_hidden_state[0]
                passes += 1
        t2 = time.perf_counter()
        return HybridResult(tokens, t1 - t0, t2 - t1, t2 - t0, passes)

    def save(self, out_dir: str | Path, tokenizer: Any = None) -> None:
        """Write decoder/ (safetensors), projector.safetensors, tasc.json (config, target, training) and the tokenizer."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / ".hybrid-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.decoder.save_pretrained(tmp / DECODER_DIR)
        for part, name in ((self.projector, PROJECTOR_FILE), (self.copy_head, COPY_HEAD_FILE)):
            if part is not None:
                save_file({k: v.detach().contiguous().cpu() for k, v in part.state_dict().items()}, str(tmp / name))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_meta(tmp, {**self.meta, "role": "hybrid", "hybrid": asdict(self.config)})
        publish_dir(tmp, out_dir)

    @classmethod
    def load(cls, path: str | Path, target: LoadedModel | None = None, device: str | None = None) -> "HybridModel":
        """Load a saved hybrid; with `target`, check it is the kind of model the hybrid was trained on.

        Raises:
            ModelError: not a hybrid directory, or the target's hidden size or vocabulary differ.
        """
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        from tasc.core.cpu_kernels import pack_linears

        path = Path(path)
        meta = read_meta(path)
        if meta.get("role") != "hybrid" or not (path / PROJECTOR_FILE).is_file():
            raise ModelError(f"{str(path)!r} is not a hybrid model directory (tasc train-hybrid writes one)")
        # Saved before the copy head existed: none; before special tokens were blocked: they stay copyable.
        config = HybridConfig(**{"copy": False, "block_special_copies": False, **meta["hybrid"]})
        device = device or (target.device if target is not None else "cpu")
        if target is not None:
            hidden = target.model.config.hidden_size
            vocab = target.model.get_input_embeddings().weight.shape[0]
            if (hidden, vocab) != (meta.get("target_hidden_size"), meta.get("target_vocab_size")):
                raise ModelError(
                    f"hybrid {path} was trained on a target with hidden size {meta.get('target_hidden_size')} and "
                    f"{meta.get('target_vocab_size')} tokens; {target.name!r} has {hidden} and {vocab}"
                )
        # transformers wraps `to` in functools.wraps, whose typeshed stub does not bind `self`
        decoder = AutoModelForCausalLM.from_pretrained(path / DECODER_DIR, dtype=torch.float32).to(device).eval()  # type: ignore[arg-type]
        pack_linears(decoder)  # the decoder's passes get the same CPU kernels as the target's
        projector = make_projector(config.projector, meta["target_hidden_size"], decoder.config.hidden_size)
        projector.load_state_dict(load_file(str(path / PROJECTOR_FILE)))
        copy_head = None
        if config.copy:
            from tasc.compare.copy_head import NO_TOKEN, CopyHead

            weights = load_file(str(path / COPY_HEAD_FILE))
            copy_head = CopyHead(decoder.config.hidden_size, [NO_TOKEN] * weights["bare_ids"].numel(), weights["query.weight"].shape[0])
            copy_head.load_state_dict(weights)
            copy_head = copy_head.to(device).eval().block(_uncopyable_ids(config, path, target))
        return cls(decoder, projector.to(device).eval(), config, meta, copy_head)


def _continued_config(config: HybridConfig, saved: HybridConfig) -> HybridConfig:
    """This run's amounts (steps, inputs, rate, seed) with the saved hybrid's shape; a conflicting shape is an error."""
    from dataclasses import replace

    if config.target_blocks and config.target_blocks != saved.target_blocks:
        raise ValueError(f"target_blocks {config.target_blocks} differs from the hybrid to continue ({saved.target_blocks})")
    shape = ("layers", "hidden", "heads", "intermediate", "projector", "add_token_embeddings", "copy", "encoder_layer",
             "decoder_init", "target_blocks")
    return replace(config, **{name: getattr(saved, name) for name in shape})


def _uncopyable_ids(config: HybridConfig, path: Path, target: LoadedModel | None) -> list[int]:
    """The ids the copy head must not copy: none unless `block_special_copies`; else the special ids of the
    target's tokenizer, or of the tokenizer saved beside the hybrid at `path` when no target is given."""
    if not config.block_special_copies:
        return []
    if target is not None:
        return list(target.tokenizer.all_special_ids)
    if not (path / "tokenizer_config.json").is_file():
        return []
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(path).all_special_ids)


def _examples(lm: LoadedModel, corpus: Corpus, config: HybridConfig) -> tuple[list[list[int]], list[tuple[int, list[int]]]]:
    """Prompts of up to `max_inputs` distinct inputs, and (prompt index, answer ids) examples of all their rows.

    Raises:
        CorpusError: no example fits in `max_length`.
    """
    inputs = list(dict.fromkeys(corpus.inputs or []))
    random.Random(config.seed).shuffle(inputs)
    index = {text: i for i, text in enumerate(inputs[: config.max_inputs])}
    prompts = [lm.prompt_format.prompt_ids(lm.tokenizer, text) for text in index]
    examples = []
    for text, output in corpus.pairs():
        if text in index:
            room = config.max_length - len(prompts[index[text]])
            answer = answer_ids(lm.tokenizer, output)[: max(room, 0)]
            if answer:
                examples.append((index[text], answer))
    if not examples:
        raise CorpusError(f"{corpus.source}: no example fits in max_length={config.max_length} tokens")
    return prompts, examples


def _resolved_config(config: HybridConfig, lm: LoadedModel) -> tuple[HybridConfig, HybridModel | None]:
    """The config with a continued hybrid's shape applied, checked against the target's blocks; and that hybrid, if any."""
    saved = None
    if config.continue_from:
        saved = HybridModel.load(config.continue_from, lm, device=lm.device)
        config = _continued_config(config, saved.config)
    blocks = lm.model.config.num_hidden_layers
    if config.encoder_layer is not None and config.encoder_layer > blocks:
        raise ValueError(f"encoder_layer {config.encoder_layer} is past the target's {blocks} blocks")
    if config.target_blocks > blocks:
        raise ValueError(f"target_blocks {config.target_blocks} is more than the target's {blocks} blocks")
    return config, saved


def _new_decoder(lm: LoadedModel, config: HybridConfig) -> Any:
    """A decoder cut from the target's blocks, loaded from a trained draft model, or fresh with PCA embeddings."""
    if config.target_blocks:
        return slice_target(lm.model, config.target_blocks)
    if config.decoder_init:
        return load_draft_model(config.decoder_init, lm)
    shape = DraftConfig(layers=config.layers, hidden=config.hidden, heads=config.heads, intermediate=config.intermediate, seed=config.seed)
    return build_draft_model(lm.model, shape).to(lm.device)


def _build_hybrid(lm: LoadedModel, target: str, config: HybridConfig, saved: HybridModel | None, out_dir: Path) -> HybridModel:
    """The hybrid to train: a saved hybrid's parts, or a new decoder, projector and copy head; trainable parts set."""
    import torch

    torch.manual_seed(config.seed)
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    if saved is not None:
        decoder, projector, copy_head = saved.decoder, saved.projector, saved.copy_head
    else:
        decoder = _new_decoder(lm, config)
        projector = make_projector(config.projector, lm.model.config.hidden_size, decoder.config.hidden_size).to(lm.device)
        copy_head = None
        if config.copy:
            from tasc.compare.copy_head import CopyHead, bare_token_ids

            copy_head = CopyHead(decoder.config.hidden_size, bare_token_ids(lm.tokenizer, min(vocab, len(lm.tokenizer)))).to(lm.device)
    for part in (decoder, projector, copy_head):
        if part is not None:
            part.requires_grad_(True)
    if config.target_blocks:
        # The target's embeddings (and tied LM head) already fit this vocabulary: frozen, they keep the
        # vocabulary logits on the scale the copy head mixes with, and skip a vocab x hidden gradient.
        decoder.get_input_embeddings().requires_grad_(False)
        decoder.get_output_embeddings().requires_grad_(False)
    if copy_head is not None:
        copy_head.block(_uncopyable_ids(config, out_dir, lm))
    meta = {"target": target, "target_hidden_size": lm.model.config.hidden_size,
            "target_vocab_size": vocab, "prompt_format": lm.prompt_format.to_dict()}
    return HybridModel(decoder, projector, config, meta, copy_head)


def _encode_prompts(lm: LoadedModel, prompts: list[list[int]], config: HybridConfig, on_progress: ProgressFn | None,
                    cancel: threading.Event | None) -> tuple[list[Any], float]:
    """The target's states of every training prompt (encoded in chunks, with progress), and the seconds it took."""
    t0 = time.perf_counter()
    states: list[Any] = []
    for start in range(0, len(prompts), config.encode_batch_size * 4):
        states.extend(encode(lm.model, prompts[start : start + config.encode_batch_size * 4], config.encode_batch_size, cancel,
                             config.encoder_layer))
        if on_progress:
            on_progress(Progress("hybrid: encode", len(states), len(prompts), time.perf_counter() - t0))
    return states, time.perf_counter() - t0


def _train(hybrid: HybridModel, states: list[Any], prompts: list[list[int]], examples: list[tuple[int, list[int]]],
           config: HybridConfig, run: RunDir, resume: bool, on_progress: ProgressFn | None,
           cancel: threading.Event | None) -> dict[str, Any]:
    """Train the projector and decoder (and copy head) on the answer tokens; the `train_loop` result."""

    def loss_fn(step: int) -> Any:
        batch = [examples[i] for i in batch_indices(len(examples), config.batch_size, config.seed, step)]
        return hybrid.loss([(states[p], prompts[p], answer) for p, answer in batch])

    return train_loop(
        hybrid.module, loss_fn, LoopConfig(steps=config.steps, learning_rate=config.learning_rate, save_every=config.save_every),
        run.phase("train"), task="hybrid: train", resume=resume, on_progress=on_progress, cancel=cancel,
    )


def train_hybrid(target: str, corpus: Corpus, out_dir: str | Path, config: HybridConfig | None = None,
                 **options: Unpack[TrainOptions]) -> dict[str, Any]:
    """Train a projector and a small decoder on the frozen target's prompt states; save the hybrid.

    Args:
        target: the frozen encoder (alias, directory, hub id); its prompt format is used.
        corpus: input -> output rows.
        out_dir: where the hybrid (and its checkpoints, under OUT/checkpoints) go.
        config: shapes and training amounts.
        options: `tasc.core.run_dir.TrainOptions`: device, resume, trust_remote_code, on_progress, cancel.
    Returns:
        Figures: steps, wall times (encoding, training), final loss, loss curve, paths.
    Raises:
        Cancelled: `cancel` was set; the checkpoint is kept for --resume.
    """

    config = config or HybridConfig()
    config.check()
    if corpus.inputs is None:
        raise CorpusError(f"{corpus.source} has outputs only: the hybrid learns input -> output and needs inputs")
    run = TrainRun(out_dir, options)
    config = run.start(config, run.resume)
    t0 = time.perf_counter()
    lm = run.load(target)
    lm.model.requires_grad_(False)  # frozen: only the projector and the decoder train
    config, saved = _resolved_config(config, lm)
    run.write_settings(asdict(config))

    # 1. The decoder (fresh, a draft model's, cut from the target or a saved hybrid's), projector and copy head.
    hybrid = _build_hybrid(lm, target, config, saved, run.out)

    # 2. The target encodes each training prompt once.
    prompts, examples = _examples(lm, corpus, config)
    states, encode_s = _encode_prompts(lm, prompts, config, run.on_progress, run.cancel)

    # 3. Train projector + decoder on the answer tokens.
    result = _train(hybrid, states, prompts, examples, config, run, run.resume, run.on_progress, run.cancel)

    # 4. Save.
    training = {
        "steps": result["steps"], "train_wall_s": result["wall_s"], "encode_wall_s": round(encode_s, 1),
        "final_loss": result["final_loss"], "wall_s": round(time.perf_counter() - t0, 1),
        "inputs": len(prompts), "examples": len(examples), "device": lm.device, "corpus": corpus.source,
        "parameters": sum(p.numel() for p in hybrid.module.parameters() if p.requires_grad),
    }
    hybrid.meta["training"] = training
    hybrid.save(run.out, lm.tokenizer)
    run.clean_up(config.keep_checkpoints)
    return {"out_dir": str(run.out), **training, "losses": result["losses"]}
