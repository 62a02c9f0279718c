"""Server-side sessions of the app: one user's corpus, jobs and models, reachable only by its token.

The browser holds nothing but an unguessable token that the server generated (`secrets`); every
big object (corpus, mined strings, jobs, model directories) stays here (corpus indexes are shared by content: studio/tab_arena.py). Gradio's `session_hash` is chosen
by the client, so it is never enough on its own: a session also remembers the `session_hash` it was
created under and refuses a token presented under another one. Dropping a session cancels its jobs
and deletes its work folder.

The store is bounded, and one client cannot empty it of other users' work:
- sessions expire after `ttl_s` idle seconds (never while one of their jobs is queued or running);
- creating sessions is rate-limited per client address (`new_per_minute`);
- beyond `max_sessions` the least recently used session that holds *no work* is dropped: work is a
  model the session made or a live job. When every session holds work, a new one is refused with a
  message rather than deleting someone's models. Live jobs are few (the app bounds them server-wide,
  below `max_sessions`, and a job stops when its client leaves), so jobs alone never fill the store.
- a token whose session expired or was dropped to make room is remembered (a bounded number of them),
  so its owner is told what happened instead of finding an empty session.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import shutil
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studio.jobs import Job
from tasc.core.errors import TascError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionConfig:
    """Bounds of the session store."""

    max_sessions: int = 64  # live sessions at once; beyond, the least recently used one without work is dropped
    ttl_s: float = 4 * 3600.0  # a session idle this long is dropped (unless one of its jobs is still live)
    close_wait_s: float = 600.0  # how long a dropped session's cancelled jobs may take to stop
    new_per_minute: int = 30  # new sessions one client address may create per minute (0: no limit)
    remember_gone: int = 4096  # tokens of expired / dropped sessions remembered, to tell their owners


class SessionRefused(TascError):
    """No session for this request: too many new ones from its address, or the store is full of work."""


class SessionGone(TascError):
    """The request's session expired or was dropped to make room; the message says which."""


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
        mining: the last mined strings and the segmenter that mined them; derived from the corpus.
        finetune_request: how the last fine-tune was started (what Resume continues).
        compare_request: how the last draft-model / hybrid training was started (what a rerun continues).
        task_model: folder of its corpus's task model (`studio.task_model`, shared by sessions with the same rows).
        task_model_shown: whether the page was told that the task model is ready (the Arena switched to it).
        cleanups: what to call when the session is dropped, by name (e.g. leave a shared task-model run).
        acceptance: the Arena drafters' acceptance statistics by (method, model), carried from race to race.
        answers: the Arena drafters' histories of finished answers (`tasc.spec.history`) by (method, model),
            carried the same way; per session, so no visitor's answers draft for another.
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
    mining: "MiningPreview | None" = None
    finetune_request: "FinetuneRequest | None" = None
    compare_request: "CompareRequest | None" = None
    task_model: Path | None = None
    task_model_shown: bool = False
    cleanups: dict[str, Callable[[], None]] = field(default_factory=dict)
    acceptance: dict[tuple[str, str], Any] = field(default_factory=dict)
    answers: dict[tuple[str, str], Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def busy(self) -> bool:
        """True while one of its jobs is queued or running."""
        return any(not job.finished for job in list(self.jobs.values()))

    def holds_work(self) -> bool:
        """True when dropping it would lose work: a model it made, or a live job."""
        return bool(self.models) or self.busy()

    def models_of(self, kind: str) -> list["SessionModel"]:
        """This session's models of one kind, oldest first."""
        return [m for m in self.models.values() if m.kind == kind]

    def set_corpus(self, corpus: Any, train: Any, heldout: Any) -> None:
        """Replace the corpus and forget everything derived from the old one."""
        with self.lock:
            self.corpus, self.train, self.heldout = corpus, train, heldout
            self.task_model_shown = False  # studio.task_model.ensure sets task_model
            self.acceptance, self.answers = {}, {}
            self.mining = None
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


def duration(seconds: float) -> str:
    """A span of time as people say it: "4 hours", "90 minutes", "30 seconds"."""
    for unit, size in (("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size:
            n = round(seconds / size, 1)
            text = f"{n:g}"
            return f"{text} {unit}{'' if text == '1' else 's'}"
    text = f"{round(seconds):d}"
    return f"{text} second{'' if text == '1' else 's'}"


EXPIRED, EVICTED = "expired", "evicted"  # why a session went, as remembered for its owner


@dataclass(frozen=True)
class _Gone:
    """What is remembered of a session that went: why, under which Gradio session, when."""

    reason: str
    owner: str | None
    at: float


class NewSessionLimit:
    """At most `per_window` new sessions per client address in any `window_s` seconds (sliding window).

    Args:
        per_window: sessions allowed per window (0 or less: no limit).
        window_s: the window's length.
        max_clients: addresses tracked at once; beyond, those whose window is over (then the oldest) go.
    """

    def __init__(self, per_window: int, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.per_window, self.window_s, self.max_clients = per_window, window_s, max_clients
        self._stamps: dict[str, deque[float]] = {}

    def wait_s(self, client: str | None, now: float) -> float:
        """Seconds until `client` may create another session (0: now). Not thread-safe: the store locks."""
        if client is None or self.per_window <= 0:
            return 0.0
        stamps = self._stamps.get(client)
        if stamps is None or len(stamps) < self.per_window:
            return 0.0
        return max(0.0, stamps[0] + self.window_s - now)

    def record(self, client: str | None, now: float) -> None:
        """`client` created a session at `now`."""
        if client is None or self.per_window <= 0:
            return
        stamps = self._stamps.pop(client, None) or deque(maxlen=self.per_window)
        stamps.append(now)
        self._stamps[client] = stamps  # re-inserted: the dict stays in order of last creation
        if len(self._stamps) > self.max_clients:
            for key in [k for k, v in self._stamps.items() if v[-1] + self.window_s <= now]:
                del self._stamps[key]
            while len(self._stamps) > self.max_clients:
                del self._stamps[next(iter(self._stamps))]


class SessionStore:
    """Bounded, expiring map from server-generated tokens to `Session`s.

    Args:
        root: folder under which each session gets its work folder (created lazily).
        config: size, expiry and rate bounds.
        clock: what every reading of a session's time calls (creation, last seen, expiry, the rate
            limit), in seconds; wall time by default, a fake clock that a test advances.
    """

    def __init__(self, root: str | Path, config: SessionConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.config = config or SessionConfig()
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._gone: OrderedDict[str, _Gone] = OrderedDict()  # by `_dir_name(token)`, oldest first
        self._limit = NewSessionLimit(self.config.new_per_minute)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def new(self, owner: str | None = None, client: str | None = None) -> Session:
        """Create a session with a fresh token for a client address (None: not rate-limited).

        Drops expired sessions, and when the store is full the least recently used one without work.

        Raises:
            SessionRefused: the address created too many sessions in the last minute, or every
                session holds work (models or a live job).
        """
        self.expire()
        with self._lock:
            now = self.clock()
            self._limit.per_window = self.config.new_per_minute
            wait = self._limit.wait_s(client, now)
            if wait > 0:
                raise SessionRefused(f"Too many new sessions from your address (at most {self.config.new_per_minute} "
                                     f"a minute); please wait {math.ceil(wait)} s and try again.")
            victim = None
            if len(self._sessions) >= self.config.max_sessions:
                free = [s for s in self._sessions.values() if not s.holds_work()]
                if not free:
                    raise SessionRefused(
                        f"The server is full: all {self.config.max_sessions} sessions hold other users' models or running "
                        f"jobs. Please try again later (idle sessions expire after {duration(self.config.ttl_s)}).")
                victim = min(free, key=lambda s: s.last_seen)
                self._sessions.pop(victim.token)
                self._remember(victim, EVICTED, now)
            token = secrets.token_urlsafe(32)
            session = Session(token, owner, self.root / _dir_name(token), created_at=now, last_seen=now)
            self._sessions[token] = session
            self._limit.record(client, now)
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
        if not _same_owner(session.owner, owner):
            log.warning("session token presented under another session_hash; refused")
            return None
        now = self.clock()
        if now - session.last_seen > self.config.ttl_s and not session.busy():
            with self._lock:
                dropped = self._sessions.pop(token, None)
                if dropped is not None:
                    self._remember(dropped, EXPIRED, now)
            if dropped is not None:
                self._close(dropped)
            return None
        session.last_seen = now
        return session

    def resolve(self, token: str | None, owner: str | None = None, client: str | None = None) -> Session:
        """The session for this token, or a new one when the token is missing, unknown or refused.

        Raises:
            SessionGone: the token's session expired or was dropped to make room (said once per token).
            SessionRefused: see `new`.
        """
        session = self.get(token, owner)
        if session is not None:
            return session
        message = self.gone_message(token, owner)
        if message is not None:
            raise SessionGone(message)
        return self.new(owner, client)

    def gone_message(self, token: str | None, owner: str | None = None) -> str | None:
        """What happened to this token's session if it expired or was dropped to make room (then forgotten), else None."""
        if not token or not isinstance(token, str):
            return None
        with self._lock:
            gone = self._gone.get(_dir_name(token))
            if gone is None or not _same_owner(gone.owner, owner):
                return None
            del self._gone[_dir_name(token)]
        restart = "Load a corpus in the Corpus tab (or reload the page) to start a new session."
        if gone.reason == EXPIRED:
            return (f"Your session expired after {duration(self.config.ttl_s)} idle: its corpus, jobs and models were "
                    f"deleted. {restart}")
        return (f"Your session was removed to make room for new visitors (the server keeps at most "
                f"{self.config.max_sessions} sessions and removes idle ones without models first): its corpus is gone. "
                f"{restart}")

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
                self._remember(s, EXPIRED, now)
        for s in old:
            self._close(s)
        return len(old)

    def _remember(self, session: Session, reason: str, now: float) -> None:
        """Keep why a session went, for its owner's next request (the oldest memories go first). Under the lock."""
        self._gone[_dir_name(session.token)] = _Gone(reason, session.owner, now)
        while len(self._gone) > max(0, self.config.remember_gone):
            self._gone.popitem(last=False)

    def _close(self, session: Session) -> None:
        """Cancel a dropped session's jobs, run its cleanups, and remove its folder once its jobs have stopped."""
        for name, cleanup in list(session.cleanups.items()):
            try:
                cleanup()
            except Exception:  # one failing cleanup must not keep the session's folder
                log.exception("cleanup %r of a dropped session failed", name)
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


def _same_owner(a: str | None, b: str | None) -> bool:
    """Whether two Gradio session hashes may be the same user's (None: unknown, outside a request)."""
    return a is None or b is None or secrets.compare_digest(a, b)
