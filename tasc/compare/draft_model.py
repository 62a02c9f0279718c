"""Train a small task-specific draft model for a target: distil, pretrain, fine-tune (`tasc train-draft`).

The recipe, in the order `train_draft` runs it:

1. Distil: the target writes the pretraining text itself (no downloads). It answers task inputs
   greedily in its own prompt format (what the draft must predict at decode time) and continues the
   first tokens of corpus outputs by sampling (text in the target's style beyond the exact answers).
   Rows are appended to OUT/pretrain.jsonl as token ids, so an interrupted run keeps them.
2. Build: a Llama-style model (e.g. 2 layers, hidden 256) with the target's tokenizer and its full
   vocabulary, enriched tokens included, so its token ids are the target's. Its tied embeddings
   start as the PCA projection of the target's embeddings (see `pca_embeddings`).
3. Pretrain on the distilled text (loss on the target's answers and continuations, not on the
   prompts it was given), then fine-tune on the task corpus in the target's prompt format (loss on
   the answer tokens only, as `tasc.ft.finetune` does). The draft only ever predicts what the target
   writes, and with a 49k vocabulary the LM head on the labelled positions is most of the cost.

Both phases run `tasc.core.train_loop` (progress events, cancel, safetensors checkpoints, exact resume).
The result is a plain model directory; `tasc.json` says {"role": "draft", "target": ...}.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence, Unpack, cast

from tasc.core.corpus import Corpus
from tasc.core.errors import CorpusError, ModelError
from tasc.core.models import LoadedModel, read_meta, save_model_dir
from tasc.core.progress import Progress, ProgressFn, check_cancel
from tasc.core.prompts import answer_ids
from tasc.core.run_dir import RunDir, TrainOptions, TrainRun
from tasc.core.train_loop import LoopConfig, batch_indices, pad_batch, train_loop

PRETRAIN_FILE = "pretrain.jsonl"  # the distilled pretraining rows (token ids)
IGNORE = -100


@dataclass
class DraftConfig:
    """Shape of the draft model and how much to train it (defaults: a few minutes on 2 CPU cores)."""

    layers: int = 2  # transformer blocks
    hidden: int = 256  # hidden size (the embeddings take vocab x hidden parameters: 12.6 M for SmolLM2)
    heads: int = 4  # attention heads (head size hidden / heads)
    intermediate: int | None = None  # MLP width; None: 3 x hidden
    pretrain_texts: int = 128  # target generations to distil (answers + continuations); ~1 s each on 2 CPU cores
    answer_fraction: float = 0.75  # share of them that are the target's answers to corpus inputs
    pretrain_new_tokens: int = 64  # tokens the target writes per distilled row (SNIPS/E2E answers are ~30)
    continuation_seed_tokens: int = 4  # first tokens of a corpus output that a continuation starts from
    distil_batch_size: int = 16  # prompts per batched target generate call
    pretrain_steps: int = 100  # optimiser steps on the distilled text
    steps: int = 300  # optimiser steps on the task corpus
    batch_size: int = 16  # sequences per step (both phases)
    pretrain_lr: float = 2e-3  # peak learning rate of the pretraining phase (random init)
    learning_rate: float = 1e-3  # peak learning rate of the task fine-tune
    max_length: int = 256  # tokens per training sequence; longer ones are cut at the end
    save_every: int = 50  # checkpoint interval in steps
    seed: int = 0  # data order, sampling and initialisation
    keep_checkpoints: bool = False  # keep OUT/checkpoints after a successful run

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("layers", "hidden", "heads", "distil_batch_size", "batch_size", "save_every", "pretrain_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("pretrain_texts", "pretrain_steps", "steps", "continuation_seed_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if not 0.0 <= self.answer_fraction <= 1.0:
            raise ValueError(f"answer_fraction must be in [0, 1], got {self.answer_fraction}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        if self.pretrain_steps and not self.pretrain_texts:
            raise ValueError("pretrain_steps > 0 needs pretrain_texts > 0")


# ---------------------------------------------------------------------------------------------
# Building the model


def pca_embeddings(target_embeddings: Any, hidden: int) -> tuple[Any, Any, Any]:
    """Project the target's token embeddings on their `hidden` principal directions.

    Why PCA: it keeps the directions in which the target's token embeddings differ most, so tokens
    the target treats alike start alike in the draft (a learned map would need training, a slice of
    dimensions keeps arbitrary ones); it costs one eigendecomposition of an (H, H) matrix.

    Args:
        target_embeddings: (V, H) embedding matrix of the target.
        hidden: the draft's hidden size; beyond H the extra columns are zero.
    Returns:
        (V, hidden) embeddings, the (H,) mean and the (H, hidden) basis, so that
        embeddings = (target_embeddings - mean) @ basis.
    """
    import torch

    emb = target_embeddings.detach().float()  # (V, H)
    mean = emb.mean(0)  # (H,)
    centred = emb - mean
    cov = centred.T @ centred / emb.shape[0]  # (H, H)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    k = min(hidden, emb.shape[1])
    basis = torch.zeros(emb.shape[1], hidden)
    basis[:, :k] = vectors[:, -k:].flip(-1)  # (H, hidden): largest variance first
    return centred @ basis, mean, basis


def build_draft_model(target: Any, config: DraftConfig) -> Any:
    """A fresh LlamaForCausalLM with the target's vocabulary, special ids and RoPE, PCA-initialised embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    tcfg = target.config
    target_emb = target.get_input_embeddings().weight  # (V, H) enriched rows included
    rope = getattr(tcfg, "rope_parameters", None) or {"rope_type": "default", "rope_theta": getattr(tcfg, "rope_theta", 10000.0)}
    draft_cfg = LlamaConfig(
        vocab_size=target_emb.shape[0],
        hidden_size=config.hidden,
        intermediate_size=config.intermediate or 3 * config.hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=getattr(tcfg, "max_position_embeddings", 2048),
        rope_parameters=dict(rope),
        rms_norm_eps=getattr(tcfg, "rms_norm_eps", 1e-5),
        tie_word_embeddings=True,  # one vocab x hidden matrix, not two: it is most of the parameters
        bos_token_id=tcfg.bos_token_id,
        eos_token_id=tcfg.eos_token_id,
        pad_token_id=tcfg.pad_token_id,
    )
    draft = LlamaForCausalLM(draft_cfg)
    with torch.no_grad():
        emb, _, _ = pca_embeddings(target_emb, config.hidden)
        cast(torch.nn.Embedding, draft.get_input_embeddings()).weight.copy_(emb)  # stubs: an nn.Module
    return draft


def spread_layers(total: int, keep: int) -> list[int]:
    """`keep` block indices spread evenly over `total`, the first and the last included."""
    if not 1 <= keep <= total:
        raise ValueError(f"keep must be between 1 and {total} blocks, got {keep}")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def slice_target(target: Any, keep: int) -> Any:
    """A copy of the target with only `keep` of its blocks (spread evenly, first and last kept).

    A decoder cut from the target starts with its embeddings, its final norm and blocks that already
    read and write this vocabulary, where a fresh small decoder must learn language from the corpus
    alone. Works for models whose blocks are `model.model.layers` (Llama, Qwen, Mistral, SmolLM...).
    """
    import copy

    from torch import nn

    blocks = getattr(getattr(target, "model", None), "layers", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ModelError(f"cannot cut blocks from a {type(target).__name__}: it has no model.layers list")
    chosen = spread_layers(len(blocks), keep)
    sliced = copy.deepcopy(target)
    sliced.model.layers = nn.ModuleList(sliced.model.layers[i] for i in chosen)
    for new_index, block in enumerate(sliced.model.layers):
        attention = getattr(block, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = new_index  # the KV cache is indexed by position in the stack
    sliced.config.num_hidden_layers = len(chosen)
    if getattr(sliced.config, "layer_types", None):
        sliced.config.layer_types = [sliced.config.layer_types[i] for i in chosen]
    return sliced


def lm_loss(model: Any, input_ids: Any, attention_mask: Any, labels: Any, inputs_embeds: Any = None) -> Any:
    """Next-token cross-entropy, with the LM head applied only where a label exists.

    Computing (B, T, V) logits for prompt positions that carry no loss is most of the cost with a
    49k vocabulary and a small model, so the head runs on the labelled positions only.

    Args:
        model: a *ForCausalLM with `.model` (the decoder stack) and `.lm_head`.
        input_ids: (B, T) ids, or None when `inputs_embeds` is given.
        attention_mask: (B, T) 1 for real positions.
        labels: (B, T) target ids at each position (-100: no loss); position t predicts labels[t + 1].
        inputs_embeds: (B, T, H) input vectors instead of ids.
    """
    import torch.nn.functional as F

    hidden = model.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    targets = labels[:, 1:]  # (B, T-1)
    keep = targets != IGNORE
    logits = model.lm_head(hidden[:, :-1][keep])  # (N, V)
    return F.cross_entropy(logits.float(), targets[keep])


# ---------------------------------------------------------------------------------------------
# Distillation: the target writes the pretraining text


def distil_jobs(lm: LoadedModel, corpus: Corpus, config: DraftConfig) -> list[tuple[str, list[int]]]:
    """The (kind, prompt ids) of every distillation row, in a fixed order for a seed.

    "answer" rows: the target's prompt for a distinct corpus input (answered greedily).
    "continuation" rows: the first tokens of a corpus output (continued by sampling).
    """
    rng = random.Random(config.seed)
    n_answers = round(config.pretrain_texts * config.answer_fraction) if corpus.inputs is not None else 0
    inputs = list(dict.fromkeys(corpus.inputs or []))
    rng.shuffle(inputs)
    jobs = [("answer", lm.prompt_format.prompt_ids(lm.tokenizer, text)) for text in inputs[:n_answers]]
    outputs = list(dict.fromkeys(corpus.outputs))
    rng.shuffle(outputs)
    n_cont = config.pretrain_texts - len(jobs)
    for text in (outputs * (n_cont // max(len(outputs), 1) + 1))[:n_cont]:
        seed_ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][: config.continuation_seed_tokens]
        if seed_ids:
            jobs.append(("continuation", seed_ids))
    return jobs


def _pad_id(lm: LoadedModel) -> int:
    """The tokenizer's pad id, else its EOS id; a ModelError when it has neither."""
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.eos_token_id
    if pad is None:
        raise ModelError(f"{lm.name}: the tokenizer has neither a pad nor an EOS token to pad batches with")
    return pad


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Complete rows of a distillation file (a torn last line is dropped)."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def generate_pretrain_data(
    lm: LoadedModel,
    corpus: Corpus,
    config: DraftConfig,
    path: Path,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> list[dict[str, Any]]:
    """Have the target write the pretraining rows {"kind", "ids", "n_prompt"}, appending to `path`.

    Batched transformers `generate` with left padding: batches of 16 make the target ~5x faster per
    row than one prompt at a time on a CPU. Rows already in `path` are kept (resume).
    """
    import torch

    jobs = distil_jobs(lm, corpus, config)
    rows = _read_rows(path)[: len(jobs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # drop a torn line
    pad = _pad_id(lm)
    t0 = time.perf_counter()
    with path.open("a", encoding="utf-8") as f:
        for start in range(len(rows), len(jobs), config.distil_batch_size):
            check_cancel(cancel)
            batch = jobs[start : start + config.distil_batch_size]
            # One generate call per kind: answers are greedy, continuations sampled.
            for kind in ("answer", "continuation"):
                prompts = [ids for k, ids in batch if k == kind]
                if not prompts:
                    continue
                width = max(len(p) for p in prompts)
                ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # (B, T) left-padded
                mask = torch.zeros_like(ids)
                for i, p in enumerate(prompts):
                    ids[i, width - len(p) :] = torch.tensor(p)
                    mask[i, width - len(p) :] = 1
                torch.manual_seed(config.seed * 7919 + start)  # sampling reproducible per batch
                sample = {"do_sample": True, "temperature": 1.0, "top_p": 0.95} if kind == "continuation" else {"do_sample": False}
                with torch.inference_mode():
                    out = lm.model.generate(
                        ids.to(lm.device), attention_mask=mask.to(lm.device), max_new_tokens=config.pretrain_new_tokens,
                        eos_token_id=lm.eos_token_id, pad_token_id=pad, **sample,
                    )
                for p, seq in zip(prompts, out[:, width:].tolist(), strict=True):
                    if lm.eos_token_id in seq:
                        seq = seq[: seq.index(lm.eos_token_id) + 1]
                    row = {"kind": kind, "ids": p + seq, "n_prompt": len(p)}
                    rows.append(row)
                    f.write(json.dumps(row) + "\n")
            f.flush()
            if on_progress:
                on_progress(Progress("draft: distil", len(rows), len(jobs), time.perf_counter() - t0, message=f"{len(rows)} rows"))
    return rows


# ---------------------------------------------------------------------------------------------
# Training


def _task_examples(lm: LoadedModel, corpus: Corpus, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of the task corpus: prompt + answer with loss on the answer; outputs alone when there are no inputs."""
    from tasc.ft.finetune import build_examples

    if corpus.inputs is not None:
        examples, _ = build_examples(lm.tokenizer, lm.prompt_format, corpus.pairs(), max_length)
        return [(e.input_ids, e.labels) for e in examples]
    seqs = [answer_ids(lm.tokenizer, out)[:max_length] for out in corpus.outputs]
    return [(s, list(s)) for s in seqs if len(s) > 1]


def _loss_fn(model: Any, examples: Sequence[tuple[list[int], list[int]]], batch_size: int, seed: int, pad_id: int, device: str) -> Any:
    """`loss_fn(step)` for `train_loop`: the LM loss of that step's deterministic batch."""

    def loss_fn(step: int) -> Any:
        batch = [examples[i] for i in batch_indices(len(examples), batch_size, seed, step)]
        ids, mask, labels = pad_batch([e[0] for e in batch], [e[1] for e in batch], pad_id)
        return lm_loss(model, ids.to(device), mask.to(device), labels.to(device))

    return loss_fn


def _pretrain_examples(rows: Sequence[dict[str, Any]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of the distilled rows: loss on every token the target wrote, none on its prompt."""
    return [(r["ids"][:max_length], ([IGNORE] * r["n_prompt"] + r["ids"][r["n_prompt"] :])[:max_length])
            for r in rows if max_length > r["n_prompt"] < len(r["ids"])]  # at least one generated token kept


def _distil(lm: LoadedModel, corpus: Corpus, config: DraftConfig, run: RunDir, on_progress: ProgressFn | None,
            cancel: threading.Event | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The distilled pretraining rows (none without pretraining steps) and their figures."""
    t0 = time.perf_counter()
    rows = generate_pretrain_data(lm, corpus, config, run.checkpoints / PRETRAIN_FILE, on_progress, cancel) if config.pretrain_steps else []
    return rows, {"rows": len(rows), "answers": sum(r["kind"] == "answer" for r in rows), "wall_s": round(time.perf_counter() - t0, 1)}


def _train_phases(draft: Any, lm: LoadedModel, rows: Sequence[dict[str, Any]], corpus: Corpus, config: DraftConfig, run: RunDir,
                  resume: bool, on_progress: ProgressFn | None, cancel: threading.Event | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pretrain on the distilled rows, then fine-tune on the task's answer tokens; the `train_loop` result of each."""
    pad = _pad_id(lm)
    pre_examples = _pretrain_examples(rows, config.max_length)
    task_examples = _task_examples(lm, corpus, config.max_length)
    if not task_examples:
        raise CorpusError(f"{corpus.source}: no example fits in max_length={config.max_length} tokens")
    loop = {"save_every": config.save_every}
    pretrain = train_loop(
        draft, _loss_fn(draft, pre_examples, config.batch_size, config.seed, pad, lm.device),
        LoopConfig(steps=config.pretrain_steps if pre_examples else 0, learning_rate=config.pretrain_lr, **loop),
        run.phase("pretrain"), task="draft: pretrain", resume=resume, on_progress=on_progress, cancel=cancel,
    )
    finetune = train_loop(
        draft, _loss_fn(draft, task_examples, config.batch_size, config.seed + 1, pad, lm.device),
        LoopConfig(steps=config.steps, learning_rate=config.learning_rate, **loop),
        run.phase("finetune"), task="draft: finetune", resume=resume, on_progress=on_progress, cancel=cancel,
    )
    return pretrain, finetune


def _save_draft(draft: Any, lm: LoadedModel, target: str, training: dict[str, Any], out_dir: Path) -> None:
    """Save a plain model directory whose tasc.json names its target (and the target's enriched vocabulary)."""
    meta = {"role": "draft", "target": target, "target_vocab_size": draft.config.vocab_size,
            "prompt_format": lm.prompt_format.to_dict(), "init": "PCA of the target's token embeddings", "training": training}
    if lm.meta.get("enriched"):
        meta["enriched"] = lm.meta["enriched"]
    save_model_dir(draft, lm.tokenizer, out_dir, meta)


def train_draft(target: str, corpus: Corpus, out_dir: str | Path, config: DraftConfig | None = None,
                **options: Unpack[TrainOptions]) -> dict[str, Any]:
    """Distil, pretrain and fine-tune a draft model for `target`; save it to `out_dir`.

    Args:
        target: the target model (alias, directory, hub id); its prompt format and vocabulary are used.
        corpus: the task corpus (inputs are used when present).
        out_dir: model directory to write; checkpoints go to OUT/checkpoints.
        config: model shape and training amounts.
        options: `tasc.core.run_dir.TrainOptions`: device, resume, trust_remote_code, on_progress, cancel.
    Returns:
        Figures: wall time and steps per phase, final losses, loss curves, paths.
    Raises:
        Cancelled: `cancel` was set; what was done is kept for --resume.
    """

    config = config or DraftConfig()
    config.check()
    if not corpus.outputs:
        raise CorpusError(f"{corpus.source} has no rows")
    run = TrainRun(out_dir, options)
    config = run.start(config, run.resume)
    t0 = time.perf_counter()
    lm = run.load(target)
    run.write_settings(asdict(config))

    # 1. Distil: the target writes the pretraining text.
    rows, distil = _distil(lm, corpus, config, run, run.on_progress, run.cancel)
    # 2. Build the draft with the target's vocabulary and PCA-initialised embeddings.
    draft = build_draft_model(lm.model, config).to(lm.device)
    # 3. Pretrain on the distilled rows (every token), 4. fine-tune on the task (answer tokens).
    pretrain, finetune = _train_phases(draft, lm, rows, corpus, config, run, run.resume, run.on_progress, run.cancel)

    # 5. Save a plain model directory that names its target.
    training = {
        "distil": distil,
        "pretrain": {k: pretrain[k] for k in ("steps", "wall_s", "final_loss")},
        "finetune": {k: finetune[k] for k in ("steps", "wall_s", "final_loss")},
        "wall_s": round(time.perf_counter() - t0, 1),
        "device": lm.device,
        "parameters": sum(p.numel() for p in draft.parameters()),
        "config": asdict(config),
        "corpus": corpus.source,
    }
    _save_draft(draft, lm, target, training, run.out)
    run.clean_up(config.keep_checkpoints)
    return {"out_dir": str(run.out), **training, "losses": {"pretrain": pretrain["losses"], "finetune": finetune["losses"]}}


def load_draft_model(path: str | Path, target: LoadedModel | None = None, device: str | None = None) -> Any:
    """Load a draft model directory; with `target`, check that their vocabularies match.

    Raises:
        ModelError: the directory is not a model, or its vocabulary differs from the target's.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from tasc.core.cpu_kernels import pack_linears

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"draft model directory {str(path)!r} has no config.json")
    meta = read_meta(path)
    if meta.get("role") not in (None, "draft"):
        raise ModelError(f"{path} is a {meta['role']!r} model directory, not a draft model")
    device = device or (target.device if target is not None else "cpu")
    # transformers wraps `to` in functools.wraps, whose typeshed stub does not bind `self`
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()  # type: ignore[arg-type]
    pack_linears(model)  # the draft's passes get the same CPU kernels as the target's
    if target is not None:
        want = target.model.get_input_embeddings().weight.shape[0]
        if model.config.vocab_size != want:
            raise ModelError(
                f"draft model {path} has a vocabulary of {model.config.vocab_size} tokens but the target "
                f"{target.name!r} has {want}: train the draft for this target (tasc train-draft --target ...)"
            )
    return model
