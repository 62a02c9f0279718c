"""Server-side sessions of the app: one user's corpus, jobs and models, reachable only by its token.

The browser holds nothing but an unguessable token that the server generated (`secrets`); every
big object (corpus, indexes, jobs, model directories) stays here. Gradio's `session_hash` is chosen
by the client, so it is never enough on its own: a session also remembers the `session_hash` it was
created under and refuses a token presented under another one. The store is bounded: sessions
expire after `ttl_s` idle seconds, and beyond `max_sessions` the least recently used idle one goes.
Dropping a session cancels its jobs and deletes its work folder.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studio.jobs import Job
from tasc.core.errors import TascError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionConfig:
    """Bounds of the session store."""

    max_sessions: int = 64  # live sessions at once; the least recently used idle one is dropped beyond
    ttl_s: float = 4 * 3600.0  # a session idle this long is dropped (its jobs cancelled)
    close_wait_s: float = 600.0  # how long a dropped session's cancelled jobs may take to stop


@dataclass
class Session:
    """One user's server-side state.

    Attributes:
        token: the secret the browser holds (in `gr.State`).
        owner: Gradio `session_hash` the session was created under (None: created outside a request).
        workdir: this session's folder for exports and model directories.
        corpus, train, heldout: the loaded corpus and its split by input (`tasc.core.corpus.Corpus`).
        jobs: the latest job of each kind ("finetune", "enrich", "bench").
        models: fine-tuned / enriched model directories by label, oldest first.
        indexes: TASC-spec's index of the training outputs, per model name (its tokens); derived from the corpus.
        mining: the last mined strings and the segmenter that mined them; derived from the corpus.
        finetune_request: how the last fine-tune was started (what Resume continues).
        compare_request: how the last draft-model / hybrid training was started (what a rerun continues).
    """

    token: str
    owner: str | None
    workdir: Path
    created_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    corpus: Any = None
    train: Any = None
    heldout: Any = None
    jobs: dict[str, Job] = field(default_factory=dict)
    models: dict[str, "SessionModel"] = field(default_factory=dict)
    indexes: dict[str, Any] = field(default_factory=dict)
    mining: "MiningPreview | None" = None
    finetune_request: "FinetuneRequest | None" = None
    compare_request: "CompareRequest | None" = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    def busy(self) -> bool:
        """True while one of its jobs is queued or running."""
        return any(not job.finished for job in self.jobs.values())

    def models_of(self, kind: str) -> list["SessionModel"]:
        """This session's models of one kind, oldest first."""
        return [m for m in self.models.values() if m.kind == kind]

    def set_corpus(self, corpus: Any, train: Any, heldout: Any) -> None:
        """Replace the corpus and forget everything derived from the old one."""
        with self.lock:
            self.corpus, self.train, self.heldout = corpus, train, heldout
            self.indexes, self.mining = {}, None
            self.finetune_request = self.compare_request = None


@dataclass(frozen=True)
class MiningPreview:
    """Strings mined from the corpus (not yet added to a model) and the segmenter that mined them."""

    result: Any  # tasc.ft.ngrams.MiningResult
    segmenter: Any  # tasc.ft.vocab.TokenizerSegmenter


@dataclass(frozen=True)
class FinetuneRequest:
    """How a fine-tune was started: Resume continues it with the same arguments."""

    model: str  # base model spec or enriched model directory
    config: Any  # tasc.ft.finetune.FinetuneConfig
    out_dir: Path
    lora: bool


@dataclass(frozen=True)
class CompareRequest:
    """How a comparison model's training was started: the same kind and steps after a Stop continue it."""

    kind: str  # the UI's kind label (draft model, hybrid, hybrid cut from the model)
    steps: int
    out_dir: Path


@dataclass
class SessionModel:
    """A model directory a session made.

    Attributes:
        label: how the UI names it ("fine-tuned #1 (LoRA, 60 steps)").
        path: the model directory (safetensors, tokenizer, tasc.json).
        kind: "finetuned", "enriched" (a base model with an enriched vocabulary, not trained yet),
            "draft" (a trained draft model) or "hybrid" (a trained encoder → small-decoder hybrid).
        info: figures to show (steps, final loss, compression...).
    """

    label: str
    path: Path
    kind: str
    info: dict[str, Any] = field(default_factory=dict)


def _dir_name(token: str) -> str:
    """Folder name for a session: a hash, so the token itself never appears in a path or a log."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


class SessionStore:
    """Bounded, expiring map from server-generated tokens to `Session`s.

    Args:
        root: folder under which each session gets its work folder (created lazily).
        config: size and expiry bounds.
        clock: what every reading of a session's time calls (creation, last seen, expiry), in seconds;
            wall time by default, a fake clock that a test advances to expire sessions.
    """

    def __init__(self, root: str | Path, config: SessionConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.config = config or SessionConfig()
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def new(self, owner: str | None = None) -> Session:
        """Create a session with a fresh token (dropping expired ones, and the LRU idle one when full)."""
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.config.max_sessions:
                idle = [s for s in self._sessions.values() if not s.busy()]
                if not idle:
                    raise TascError("the server is busy with other users' jobs; please try again in a few minutes")
                victim = min(idle, key=lambda s: s.last_seen)
                self._sessions.pop(victim.token)
            else:
                victim = None
            token = secrets.token_urlsafe(32)
            now = self.clock()
            session = Session(token, owner, self.root / _dir_name(token), created_at=now, last_seen=now)
            self._sessions[token] = session
        if victim is not None:
            self._close(victim)
        return session

    def get(self, token: str | None, owner: str | None = None) -> Session | None:
        """The live session for this token, or None (unknown, expired, or held under another owner)."""
        if not token or not isinstance(token, str):
            return None
        with self._lock:
            session = self._sessions.get(token)
        if session is None:
            return None
        if session.owner is not None and owner is not None and not secrets.compare_digest(session.owner, owner):
            log.warning("session token presented under another session_hash; refused")
            return None
        now = self.clock()
        if now - session.last_seen > self.config.ttl_s and not session.busy():
            self.drop(token)
            return None
        session.last_seen = now
        return session

    def resolve(self, token: str | None, owner: str | None = None) -> Session:
        """The session for this token, or a new one when the token is missing, unknown or refused."""
        return self.get(token, owner) or self.new(owner)

    def drop(self, token: str | None) -> None:
        """Forget a session: cancel its jobs and delete its work folder."""
        if not token:
            return
        with self._lock:
            session = self._sessions.pop(token, None)
        if session is not None:
            self._close(session)

    def close(self, wait_s: float = 60.0) -> None:
        """Drop every session and wait up to `wait_s` for their jobs to stop (server shutdown)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        jobs = [job for s in sessions for job in s.jobs.values()]
        for s in sessions:
            self._close(s)
        deadline = time.monotonic() + wait_s  # real waiting on threads: real time, whatever the store's clock
        for job in jobs:
            job.wait(max(0.0, deadline - time.monotonic()))

    def expire(self) -> int:
        """Drop sessions idle longer than ttl_s (unless a job of theirs still runs); returns how many."""
        now = self.clock()
        with self._lock:
            old = [s for s in self._sessions.values() if now - s.last_seen > self.config.ttl_s and not s.busy()]
            for s in old:
                self._sessions.pop(s.token, None)
        for s in old:
            self._close(s)
        return len(old)

    def _close(self, session: Session) -> None:
        """Cancel a dropped session's jobs and remove its folder once they have stopped."""
        jobs = list(session.jobs.values())
        for job in jobs:
            job.cancel()

        def remove() -> None:
            for job in jobs:
                job.wait(self.config.close_wait_s)  # a cancelled fine-tune still writes its checkpoint
            shutil.rmtree(session.workdir, ignore_errors=True)

        if all(job.finished for job in jobs):
            remove()
        else:
            threading.Thread(target=remove, name="tasc-session-close", daemon=True).start()
