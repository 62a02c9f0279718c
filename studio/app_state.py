"""What every tab of the app shares: settings from the environment, limits, the process-wide session
store and model pool, and the helpers every handler uses (`session_for`, `require_corpus`,
`user_errors`, the `gpu` decorator).

Nothing here loads a model or touches the disk at import time: `store()` and `pool()` are made on
first use. Environment: TASC_APP_MODEL (the base model, default smollm2-135m), TASC_APP_CACHE (work
folder, default $TASC_HOME/app), TASC_APP_GENERATION_LIMIT (Arena requests served at once, default 4);
the Arena tab reads TASC_APP_DRAFT_MODEL / TASC_APP_HYBRID_MODEL (`studio.tab_arena.trained_dirs`).
Limits against clients that hog the server (`session_config`, `job_limits`; read when `store()` is
made): TASC_APP_MAX_SESSIONS (64), TASC_APP_SESSION_TTL_HOURS (4), TASC_APP_NEW_SESSIONS_PER_MINUTE
(per client address, 30; 0: no limit), TASC_APP_MAX_JOBS (queued + running jobs of the whole server,
8) and TASC_APP_MAX_JOBS_PER_KIND (4).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402

from studio.model_thread import MODEL_THREAD  # noqa: E402  (light: no torch)
from tasc.core.errors import TascError  # noqa: E402  (light: no torch)

log = logging.getLogger("tasc.app")

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"  # the example corpora
DEFAULT_MODEL = "smollm2-135m"
MAX_FILE_SIZE = "20mb"  # largest corpus upload accepted (the server refuses bigger ones with HTTP 413)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the same limit, checked again on disk before a file is read
QUEUE_SIZE = 32  # requests waiting beyond this are turned away
DEFAULT_CONCURRENCY = 4  # light events (corpus loading, refreshes) served at once
MAX_PROMPT_CHARS = 4000  # longest Arena prompt (and longest text the Vocabulary tab tokenises)
STOP_WAIT_S = 120.0  # how long Stop waits for a training job to save its checkpoint before answering


# --------------------------------------------------------------------------------------------
# Settings and process-wide objects, created on first use (never at import time)
# --------------------------------------------------------------------------------------------
def app_model() -> str:
    """The base model: $TASC_APP_MODEL, else the offline default."""
    return os.environ.get("TASC_APP_MODEL") or DEFAULT_MODEL


def app_cache_dir() -> Path:
    """The app's work folder (sessions' exports and models): $TASC_APP_CACHE, else $TASC_HOME/app."""
    from tasc.core.models import tasc_home

    return Path(os.environ.get("TASC_APP_CACHE") or tasc_home() / "app")


def generation_limit() -> int:
    """Arena generations served at once: $TASC_APP_GENERATION_LIMIT, default 4."""
    return max(1, int(os.environ.get("TASC_APP_GENERATION_LIMIT") or 4))


def _env_number(name: str, default: float, minimum: float) -> float:
    """A number from the environment (`default` when unset); ValueError naming the variable when it is not one."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def session_config():
    """The session store's bounds: $TASC_APP_MAX_SESSIONS (default 64), $TASC_APP_SESSION_TTL_HOURS (idle hours
    before a session expires, default 4), $TASC_APP_NEW_SESSIONS_PER_MINUTE (per client address, default 30; 0: no limit)."""
    from studio.sessions import SessionConfig

    default = SessionConfig()
    return SessionConfig(max_sessions=int(_env_number("TASC_APP_MAX_SESSIONS", default.max_sessions, 2)),
                         ttl_s=_env_number("TASC_APP_SESSION_TTL_HOURS", default.ttl_s / 3600, 0.0) * 3600,
                         new_per_minute=int(_env_number("TASC_APP_NEW_SESSIONS_PER_MINUTE", default.new_per_minute, 0)))


def job_limits(max_sessions: int):
    """Queued + running jobs of the whole server: $TASC_APP_MAX_JOBS (default 8) and $TASC_APP_MAX_JOBS_PER_KIND
    (default 4). Kept below `max_sessions`, so that sessions protected by a live job never fill the store."""
    from studio.jobs import JobLimits

    default = JobLimits()
    total = int(_env_number("TASC_APP_MAX_JOBS", default.max_jobs, 1))
    if total >= max_sessions:
        log.warning("TASC_APP_MAX_JOBS=%d is not below the %d sessions; using %d", total, max_sessions, max_sessions - 1)
        total = max_sessions - 1
    return JobLimits(max_jobs=total, max_per_kind=int(_env_number("TASC_APP_MAX_JOBS_PER_KIND", default.max_per_kind, 1)))


@functools.cache
def store():
    """The server-side session store (one per process); making it also sets the server's job limits."""
    from studio.jobs import set_job_limits
    from studio.sessions import SessionStore

    config = session_config()
    set_job_limits(job_limits(config.max_sessions))
    return SessionStore(app_cache_dir() / "sessions", config)


@functools.cache
def pool() -> Any:
    """The shared, read-only models (one per process)."""
    from studio.model_pool import ModelPool

    return ModelPool(app_model(), call=MODEL_THREAD.call)  # loading a model runs torch ops


MAX_GGUF_FILES = 4  # exported GGUFs kept on disk for the Arena's llama.cpp engine (f32 SmolLM2: 540 MB each)


def llamacpp_available() -> bool:
    """Whether llama-cpp-python is installed (the Arena then offers the llama.cpp engine)."""
    return importlib.util.find_spec("llama_cpp") is not None


def _arena_engine(spec: str) -> Any:
    """A model's llama.cpp engine (its f32 GGUF exported once), keeping at most MAX_GGUF_FILES exports on disk."""
    from tasc.spec.llamacpp_own import engine_for

    engine = engine_for(spec)
    exported = sorted(engine.path.parent.glob("*.gguf"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in exported if p != engine.path][MAX_GGUF_FILES - 1:]:
        old.unlink(missing_ok=True)  # an engine still using it keeps its mapping
    engine.path.touch()  # the newest use first
    return engine


@functools.cache
def llamacpp_engines() -> Any:
    """The Arena's llama.cpp engines, one per model and shared (the base model's and at most two others)."""
    from studio.model_pool import ModelPool

    return ModelPool(app_model(), max_extra=2, loader=_arena_engine, call=MODEL_THREAD.call)


def model_label(spec: str) -> str:
    """A short name for a model spec (a directory's last part)."""
    return Path(spec).name if os.sep in spec else spec


# --------------------------------------------------------------------------------------------
# Handler helpers
# --------------------------------------------------------------------------------------------
def gpu(duration: int = 120) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`spaces.GPU` on Hugging Face ZeroGPU hardware (the package is there), a no-op elsewhere."""
    if importlib.util.find_spec("spaces") is None:
        return lambda fn: fn
    import spaces

    return spaces.GPU(duration=duration)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show a `TascError`/`ValueError` as a gr.Error with its message; log anything else, show no traceback."""

    def convert(exc: Exception) -> gr.Error:
        if isinstance(exc, gr.Error):
            return exc
        if isinstance(exc, (TascError, ValueError)):
            return gr.Error(str(exc))
        log.exception("handler %s failed", fn.__name__)
        return gr.Error(f"Something went wrong on the server ({type(exc).__name__}); the details are in its log.")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise convert(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise convert(exc) from None
    return wrapper


def _owner(request: gr.Request | None) -> str | None:
    """The Gradio session hash a request came under (None outside a request)."""
    return getattr(request, "session_hash", None) if request is not None else None


def client_address(request: gr.Request | None) -> str | None:
    """The address a request came from (what new sessions are rate-limited by); None outside a request."""
    if request is None:
        return None
    try:
        host = request.client.host
    except Exception:  # no client recorded (a test's bare Request): nothing to limit by
        return None
    return str(host) if host else None


def session_for(token: str | None, request: gr.Request | None):
    """This user's session: the one the token names if it was made under this Gradio session, else a new one.

    A `TascError` (shown by `user_errors`) when the token's session expired or was dropped to make room
    (said once), when this address made too many sessions in the last minute, or when every session holds work.
    """
    return store().resolve(token, _owner(request), client_address(request))


def existing_session(token: str | None, request: gr.Request | None):
    """This user's session if it exists (refreshes and Stop buttons never create one), else None."""
    return store().get(token, _owner(request))


def release_session(token: str | None) -> None:
    """Gradio dropped a browser session's state (tab closed): drop ours too (jobs cancelled, files removed)."""
    if token:
        store().drop(token)


def require_corpus(session) -> None:
    """gr.Error unless a corpus is loaded."""
    if session.corpus is None:
        raise gr.Error("No corpus loaded yet: pick an example or upload a file in the Corpus tab first.")


def heldout_inputs(session) -> list[str]:
    """The distinct held-out inputs of the session's corpus, first-seen order ([] without inputs)."""
    held = session.heldout
    return list(dict.fromkeys(held.inputs)) if held is not None and held.inputs is not None else []


def follow_to_end(job: Any, updates: Callable[[Any], tuple[Any, ...]], done: Callable[[Any], tuple[Any, ...]],
                  stopped: Callable[[], tuple[Any, ...]], what: str, poll_s: float | None = None) -> Iterator[tuple[Any, ...]]:
    """Stream a job's progress (`updates(job)`), then its result (`done(result)`), `stopped()` after a Stop,
    or its error as a message. A Stop, or a client that leaves (Gradio closes the generator), cancels the job
    (trainers save a checkpoint first)."""
    from studio.jobs import CANCELLED, DONE

    try:
        for j in job.follow(poll_s):
            yield updates(j)
    finally:
        if not job.finished:  # the thread stops at its next progress event
            job.cancel()
    if job.status == DONE:
        yield done(job.result)
    elif job.status == CANCELLED:
        yield stopped()
    else:
        raise gr.Error(job.error or f"the {what} failed")
