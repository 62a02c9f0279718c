"""The comparison models a session can train in the Fine-tune tab: their presets and when a run resumes.

A *draft model* (`tasc.compare.draft_model`) or a *hybrid* (`tasc.compare.hybrid`) for the app's
model, trained on the session's corpus. The presets are the app's (short runs that fit a demo);
the CLI's `tasc train-draft` / `tasc train-hybrid` take every setting. No gradio here: the Fine-tune
tab turns a `ValueError` into the message the user sees.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from studio.jobs import CANCELLED, Job
from studio.sessions import CompareRequest

TRAIN_DRAFT = "Draft model"
TRAIN_HYBRID = "Hybrid"
TRAIN_HYBRID_BLOCKS = "Hybrid, decoder cut from the model"
KINDS = (TRAIN_DRAFT, TRAIN_HYBRID, TRAIN_HYBRID_BLOCKS)
HYBRID_BLOCKS = 6  # the app model's blocks the cut decoder keeps
MAX_STEPS = 2000  # longest run the app starts


@dataclass(frozen=True)
class CompareRun:
    """One training run to start: which trainer, with what settings, into which folder.

    Attributes:
        kind: one of KINDS.
        hybrid: True for both hybrid kinds.
        train: `train_draft` or `train_hybrid`, called as `train(model, corpus, out_dir, config, resume=...)`.
        config: its `DraftConfig` / `HybridConfig`.
        out_dir: the run folder (a stopped run's own when it resumes).
        resume: continue a stopped run from its checkpoint.
    """

    kind: str
    hybrid: bool
    train: Callable[..., Any]
    config: Any
    out_dir: Path
    resume: bool

    @property
    def what(self) -> str:
        """How the UI names the model it makes."""
        return "hybrid" if self.hybrid else "draft model"

    @property
    def model_kind(self) -> str:
        """Its `SessionModel.kind`."""
        return "hybrid" if self.hybrid else "draft"


def check_request(kind: str, steps: int, has_inputs: bool) -> None:
    """ValueError for a kind, step count or corpus the app does not train."""
    if kind not in KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; choose {TRAIN_DRAFT!r}, {TRAIN_HYBRID!r} or {TRAIN_HYBRID_BLOCKS!r}.")
    if kind != TRAIN_DRAFT and not has_inputs:
        raise ValueError("A hybrid learns input → output: this corpus has outputs only.")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")


def resumes(last_job: Job | None, last: CompareRequest | None, kind: str, steps: int) -> bool:
    """Whether Train continues the last run: it was stopped, and the same kind and steps are asked for."""
    return (last_job is not None and last_job.status == CANCELLED and last is not None
            and last.kind == kind and last.steps == steps)


def _config(kind: str, steps: int, target_layers: int, draft_dir: str | None) -> Any:
    """The app's preset for a kind: a draft model pretrained briefly, or a hybrid (its decoder fresh, from the
    session's draft model, or cut from the target's blocks)."""
    from tasc.compare.draft_model import DraftConfig
    from tasc.compare.hybrid import HybridConfig

    save_every = max(1, min(50, steps // 4 or 1))
    if kind == TRAIN_DRAFT:
        return DraftConfig(steps=steps, pretrain_texts=32, pretrain_steps=min(60, steps), save_every=save_every)
    cut = kind == TRAIN_HYBRID_BLOCKS
    return HybridConfig(steps=steps, max_inputs=300, save_every=save_every,
                        target_blocks=min(HYBRID_BLOCKS, target_layers) if cut else 0,
                        learning_rate=5e-4 if cut else 1e-3,  # pretrained blocks take a gentler step
                        decoder_init=draft_dir if not cut else None)


def plan(session, kind: str, steps: int, target_layers: int) -> CompareRun:
    """The run Train starts for this session, recorded in `session.compare_request` (what a rerun continues);
    ValueError for a bad request or while the session's last one still runs.

    Args:
        session: the `studio.sessions.Session` (its corpus loaded).
        kind: one of KINDS.
        steps: task steps.
        target_layers: the app model's transformer blocks (a cut decoder keeps at most HYBRID_BLOCKS of them).
    """
    from tasc.compare.draft_model import train_draft
    from tasc.compare.hybrid import train_hybrid

    check_request(kind, steps, session.train.inputs is not None)
    running = session.jobs.get("compare")
    if running is not None and not running.finished:
        raise ValueError("A draft/hybrid training of this session is already running; stop it first.")
    hybrid = kind != TRAIN_DRAFT
    last = session.compare_request
    resume = resumes(running, last, kind, steps)
    out_dir = last.out_dir if resume else (
        session.workdir / "models" / f"{'hybrid' if hybrid else 'draft'}-{secrets.token_hex(4)}")
    session.compare_request = CompareRequest(kind, steps, out_dir)
    drafts = session.models_of("draft")  # a trained draft model is a better start for a fresh decoder
    config = _config(kind, steps, target_layers, str(drafts[-1].path) if drafts else None)
    return CompareRun(kind, hybrid, train_hybrid if hybrid else train_draft, config, out_dir, resume)
