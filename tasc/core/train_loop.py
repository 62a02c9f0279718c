"""A small resumable training loop (nanoGPT style) shared by the draft-model and hybrid jobs.

The loop knows nothing about models or data: it gets a module whose trainable parameters it
optimises and a function `loss_fn(step) -> loss`. Batches are a pure function of the step number,
so a resumed run sees exactly the batches the interrupted run would have seen, and with AdamW's
moments restored it continues bit for bit.

Checkpoints are safetensors only (weights and AdamW moments) plus a JSON of counters: loading one
never unpickles anything. Only the latest checkpoint is kept, replaced atomically.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tasc.core.errors import Cancelled
from tasc.core.progress import Progress, ProgressFn

LATEST, PREVIOUS = "latest", "previous"


@dataclass
class LoopConfig:
    """Optimiser and checkpoint settings of one training phase."""

    steps: int = 300  # optimiser steps in this phase
    learning_rate: float = 1e-3  # peak learning rate (small models from scratch take a high one)
    warmup_ratio: float = 0.05  # share of steps with a linear warm-up
    min_lr_ratio: float = 0.1  # cosine decay ends at this share of the peak
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    save_every: int = 50  # checkpoint every N steps; also at the end and on cancel


def lr_at(step: int, config: LoopConfig) -> float:
    """Learning rate at a 0-based step: linear warm-up, then cosine decay to min_lr_ratio."""
    warmup = max(1, round(config.warmup_ratio * config.steps))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    floor = config.min_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def batch_indices(n_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The example indices of one step's batch: a pure function of (seed, step), for exact resume."""
    rng = random.Random(seed * 1_000_003 + step)
    if n_examples >= batch_size:
        return rng.sample(range(n_examples), batch_size)
    return [rng.randrange(n_examples) for _ in range(batch_size)]


def _trainable(module: Any) -> dict[str, Any]:
    """Trainable parameters by name (tied weights appear once)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def save_checkpoint(ckpt_dir: Path, module: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Write weights, AdamW moments and counters; the previous checkpoint is replaced atomically."""
    from safetensors.torch import save_file

    params = _trainable(module)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f".tmp-{state['step']}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({n: p.detach().contiguous().cpu() for n, p in params.items()}, str(tmp / "weights.safetensors"))
    moments = {}
    for name, p in params.items():
        for key, value in optimizer.state.get(p, {}).items():
            moments[f"{name}::{key}"] = value.detach().contiguous().cpu()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    latest, previous = ckpt_dir / LATEST, ckpt_dir / PREVIOUS
    shutil.rmtree(previous, ignore_errors=True)
    if latest.exists():
        latest.rename(previous)  # a crash between the renames leaves `previous`, which load accepts
    tmp.rename(latest)
    shutil.rmtree(previous, ignore_errors=True)


def load_checkpoint(ckpt_dir: Path, module: Any, optimizer: Any | None = None) -> dict[str, Any] | None:
    """Restore the latest checkpoint into `module` (and `optimizer`); its counters, or None when absent."""
    import torch
    from safetensors.torch import load_file

    for name in (LATEST, PREVIOUS):
        path = ckpt_dir / name
        if (path / "state.json").is_file():
            break
    else:
        return None
    params = _trainable(module)
    weights = load_file(str(path / "weights.safetensors"))
    missing = sorted(set(params) - set(weights))
    if missing:
        raise ValueError(f"checkpoint {path} does not match the model: missing {missing[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device, p.dtype))
    if optimizer is not None:
        moments = load_file(str(path / "optimizer.safetensors"))
        for name, p in params.items():
            state = {key.split("::", 1)[1]: v.to(p.device) for key, v in moments.items() if key.split("::", 1)[0] == name}
            if state:
                optimizer.state[p] = state
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


def _optimizer(module: Any, config: LoopConfig) -> tuple[list[Any], Any]:
    """The module's trainable parameters and an AdamW over them."""
    import torch

    if config.steps < 0:
        raise ValueError(f"steps must be >= 0, got {config.steps}")
    params = list(_trainable(module).values())
    if not params:
        raise ValueError("the module has no trainable parameters")
    return params, torch.optim.AdamW(params, lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay)


def _restore(ckpt_dir: Path, module: Any, optimizer: Any, config: LoopConfig, resume: bool) -> tuple[int, list, float]:
    """(first step, losses so far, seconds spent so far): from the checkpoint when resuming; a fresh run clears old ones."""
    if resume:
        state = load_checkpoint(ckpt_dir, module, optimizer)
        if state is not None:
            if state.get("total_steps") != config.steps:
                raise ValueError(
                    f"checkpoint in {ckpt_dir} is of a {state.get('total_steps')}-step run, not {config.steps}: "
                    "resume with the same step count"
                )
            return state["step"], state["losses"], state["elapsed_s"]
    elif ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)  # a fresh run: old checkpoints of this phase would be misleading
    return 0, [], 0.0


def _optimizer_step(optimizer: Any, params: list[Any], loss_fn: Callable[[int], Any], step: int, config: LoopConfig) -> tuple[float, float]:
    """One optimiser step at the scheduled learning rate, gradients clipped; (the loss, rounded, and the learning rate)."""
    import torch

    lr = lr_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = loss_fn(step)
    loss.backward()
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return round(float(loss.item()), 5), lr


def train_loop(
    module: Any,
    loss_fn: Callable[[int], Any],
    config: LoopConfig,
    ckpt_dir: Path,
    *,
    task: str,
    resume: bool = False,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Optimise `module`'s trainable parameters for `config.steps` steps of `loss_fn(step)`.

    Args:
        module: a torch module; only parameters with requires_grad train.
        loss_fn: the scalar loss of the batch of a 0-based step (pure in the step number).
        config: steps, schedule, checkpointing.
        ckpt_dir: this phase's checkpoint folder.
        task: the name progress events carry ("draft: pretrain", ...).
        resume: continue from the checkpoint in `ckpt_dir` (a finished phase returns at once).
    Returns:
        {"steps", "wall_s", "final_loss", "losses": [[step, loss], ...], "resumed_from"}.
    Raises:
        Cancelled: after saving a checkpoint, when `cancel` is set.
    """
    params, optimizer = _optimizer(module, config)
    start, losses, elapsed_before = _restore(ckpt_dir, module, optimizer, config, resume)
    t0 = time.perf_counter()

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_dir, module, optimizer, {
            "step": step, "total_steps": config.steps, "losses": losses,
            "elapsed_s": elapsed_before + time.perf_counter() - t0, "config": asdict(config),
        })

    module.train()
    try:
        for step in range(start, config.steps):
            if cancel is not None and cancel.is_set():
                checkpoint(step)
                raise Cancelled(f"{task} cancelled at step {step}/{config.steps}; --resume continues from there")
            loss, lr = _optimizer_step(optimizer, params, loss_fn, step, config)
            losses.append([step + 1, loss])
            if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
                checkpoint(step + 1)
            if on_progress:
                elapsed = elapsed_before + time.perf_counter() - t0
                on_progress(Progress(task, step + 1, config.steps, elapsed, {"loss": losses[-1][1], "lr": lr}))
    finally:
        module.eval()
    return {
        "steps": config.steps,
        "wall_s": round(elapsed_before + time.perf_counter() - t0, 2),
        "final_loss": losses[-1][1] if losses else None,
        "losses": losses,
        "resumed_from": start,
    }


def pad_batch(sequences: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-pad token and label lists into (input_ids, attention_mask, labels) tensors of shape (B, T)."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    lab = torch.full((len(sequences), width), -100, dtype=torch.long)
    for i, (s, lbl) in enumerate(zip(sequences, labels, strict=False)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        lab[i, : len(lbl)] = torch.tensor(lbl)
    return ids, mask, lab
