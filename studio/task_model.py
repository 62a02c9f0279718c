"""The task model: a model that does the loaded corpus's task, trained by itself in the background.

A base model shown two examples copies them (a product from an example, or an example's answer
whole), so a live demo on it shows wrong answers. When a corpus with inputs is loaded, `ensure`
starts a short LoRA fine-tune of the base model on its training rows (`recipe`: sized to finish in
about three minutes on 2 CPU cores, seconds on a GPU) and the Arena answers with it once it is
ready; the base model with examples stays on offer.

One run per (base model, training rows, recipe): every session that loads the same corpus (each
visitor of an example) shares it, so visitors cannot start one each, and a finished model stays
on disk under the app's work folder, where a restart finds it ready (at most MAX_ON_DISK of them: the
oldest unused ones are deleted before a new one is trained). It trains as a job (counted by
the job board, one at a time: slot "task-model") that pauses while an Arena race or a benchmark runs
(`studio.foreground`). TASC_APP_TASK_MODEL=off turns it off (the Fine-tune tab still trains on request).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio.app_state import app_cache_dir, app_model
from studio.foreground import start_trainer
from studio.jobs import CANCELLED, DONE, FAILED, Job, JobsFull

log = logging.getLogger("tasc.app")

KIND = "task-model"
FOLDER = "task-models"
MIN_ROWS = 8  # fewer training rows than this teach nothing worth a background run
CPU_STEPS = 80  # ~2.2 minutes on 2 CPU cores at batch 8 in bf16 autocast, loading and saving included (README: "The live demo")
GPU_STEPS = 300  # a few seconds of an H200's time; more steps, better answers
MAX_ON_DISK = 3  # task models kept (a merged 135M model is ~540 MB); unused ones go, oldest first


@dataclass
class TaskModel:
    """Where a task model is, its run if this process trains it, and the sessions that use it."""

    key: str
    path: Path
    job: Job | None = None
    users: set[str] = field(default_factory=set)  # tokens of the sessions whose corpus it is

    @property
    def ready(self) -> bool:
        """True once the model directory is complete (its tasc.json is written last)."""
        return (self.path / "tasc.json").is_file()


_RUNS: dict[Path, TaskModel] = {}  # by folder: one per (app work folder, base model, rows, recipe)
_LOCK = threading.Lock()


def enabled() -> bool:
    """False when $TASC_APP_TASK_MODEL is "off" (or "0")."""
    return os.environ.get("TASC_APP_TASK_MODEL", "auto").strip().lower() not in ("off", "0", "false", "no")


LEARNING_RATE = 2e-3  # measured on the support tickets, 60 steps: exact match 0.80 against 0.53 at LoRA's usual 1e-3


def recipe(on_gpu: bool, train: Any) -> Any:
    """The background fine-tune of the corpus `train`: LoRA (rank 16, lr 2e-3) at batch 8, sized by the device;
    data-to-text corpora add the options of `data_to_text_options`."""
    from tasc.ft.finetune import FinetuneConfig, data_to_text_options

    return FinetuneConfig(steps=GPU_STEPS if on_gpu else CPU_STEPS, lora=True, learning_rate=LEARNING_RATE, log_every=5,
                          **data_to_text_options(train))


def key_of(base: str, train: Any, config: Any) -> str:
    """What identifies a task model: the base model, the training rows and the recipe."""
    h = hashlib.sha256()
    h.update(json.dumps([base, asdict(config)], sort_keys=True).encode())
    for inp, out in train.pairs():
        h.update(json.dumps([inp, out]).encode())
    return h.hexdigest()[:20]


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def ensure(session: Any, restart: bool = False) -> TaskModel | None:
    """The task model of the session's corpus, started (or joined) now when not ready.

    None when the corpus cannot have one (outputs only, fewer than MIN_ROWS rows) or the feature is off.
    The session leaves the run of its previous corpus, which stops when no session uses it any more.
    """
    train = session.train
    if not enabled() or train is None or train.inputs is None or len(train.outputs) < MIN_ROWS:
        leave(session)
        return None
    config = recipe(_on_gpu(), train)
    key = key_of(app_model(), train, config)
    path = app_cache_dir() / FOLDER / key
    if getattr(session, "task_model", None) != path:
        leave(session)  # its previous corpus's run, which stops if nobody else uses it
    with _LOCK:
        tm = _RUNS.setdefault(path, TaskModel(key, path))
        tm.users.add(session.token)
        # a run stopped (by Stop, or because its users left) resumes for whoever loads the corpus now;
        # a failed one only when asked again (Train task model), so an error does not repeat per visitor
        again = tm.job is None or (tm.job.finished and (restart or tm.job.status == CANCELLED))
        if not tm.ready and again:
            _prune(keep=path)  # before a new model is written: the folder stays bounded
            tm.job = _start(tm, train, config)
    session.task_model = path
    session.cleanups["task_model"] = functools.partial(leave, session)
    return tm


def _start(tm: TaskModel, train: Any, config: Any) -> Job | None:
    """Start the training job (resuming from a checkpoint a stopped run left); None when the job board is full."""
    from tasc.ft.finetune import finetune

    resume = (tm.path / "checkpoints").is_dir()
    try:
        return start_trainer(KIND, finetune, app_model(), train, tm.path, config, resume=resume, slot=KIND)
    except JobsFull as exc:
        log.info("task model not started: %s", exc)
        return None


def _prune(keep: Path) -> None:
    """Delete the oldest task-model folders beyond MAX_ON_DISK - 1 that no session uses and no job writes.
    Under _LOCK."""
    import shutil

    root = keep.parent
    if not root.is_dir():
        return
    folders = sorted((p for p in root.iterdir() if p.is_dir() and p != keep), key=lambda p: p.stat().st_mtime)
    for folder in folders[: max(0, len(folders) - (MAX_ON_DISK - 1))]:
        tm = _RUNS.get(folder)
        if tm is not None and (tm.users or (tm.job is not None and not tm.job.finished)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        _RUNS.pop(folder, None)


def leave(session: Any) -> None:
    """The session no longer uses its task model (a new corpus, or the session ends): a run nobody uses stops."""
    path = getattr(session, "task_model", None)
    session.task_model = None
    with _LOCK:
        tm = _RUNS.get(path) if path is not None else None
        if tm is None:
            return
        tm.users.discard(session.token)
        if not tm.users and tm.job is not None and not tm.job.finished:
            tm.job.cancel()  # it saves a checkpoint: a session that loads the corpus again resumes it


def of(session: Any) -> TaskModel | None:
    """The session's task model (ready or not), if its corpus has one."""
    path = getattr(session, "task_model", None)
    with _LOCK:
        return _RUNS.get(path) if path is not None else None


def ready_path(session: Any) -> Path | None:
    """The session's task model directory once it is ready."""
    tm = of(session)
    return tm.path if tm is not None and tm.ready else None


def stop(session: Any) -> bool:
    """Stop the session's task-model run (it saves a checkpoint; `ensure(restart=True)` resumes); False if none ran."""
    tm = of(session)
    if tm is None or tm.job is None or tm.job.finished:
        return False
    tm.job.cancel()
    return True


def stop_all() -> None:
    """Cancel every task-model run of this process (the app is closing)."""
    with _LOCK:
        runs = list(_RUNS.values())
        _RUNS.clear()
    for tm in runs:
        if tm.job is not None and not tm.job.finished:
            tm.job.cancel()


def status(session: Any, foreground_busy: bool = False) -> str:
    """One Markdown line on the session's task model."""
    if not enabled():
        return "Task model: off (TASC_APP_TASK_MODEL=off). Train one in the Fine-tune tab."
    tm = of(session)
    if tm is None:
        return "Task model: needs a corpus with inputs (at least 8 training rows)."
    if tm.ready:
        info = _figures(tm.path)
        return (f"**Task model ready ✓** — LoRA fine-tune, {info.get('steps', '?')} steps in "
                f"{info.get('wall_s', '?')} s, loss {info.get('final_loss', '?')}. The Arena answers with it.")
    job = tm.job
    if job is None:
        return "Task model: not started (the server's job slots are full). Press **Train task model** to try again."
    if job.status == FAILED:
        return f"Task model: training failed — {job.error}. Press **Train task model** to retry."
    if job.status == CANCELLED:
        return "Task model: stopped (checkpoint saved). Press **Train task model** to continue."
    if job.status == DONE:
        return "Task model: saving…"
    p = job.latest
    if p is None:
        return "Task model: starting (loading the base model)…" if job.status != "queued" else "Task model: queued…"
    eta = f", about {p.eta_s:.0f} s left" if p.eta_s else ""
    paused = " — paused while the Arena runs" if foreground_busy else ""
    loss = p.metrics.get("loss")  # none before the trainer's first logged step
    said_loss = f", loss {loss:.3f}" if loss is not None else ""
    return (f"Task model: training in the background (LoRA), step {p.done}/{p.total}{eta}{said_loss}{paused}. "
            "Until it is ready the Arena uses the base model with examples.")


def _figures(path: Path) -> dict[str, Any]:
    """The run figures a finished task model's tasc.json holds."""
    try:
        return json.loads((path / "tasc.json").read_text(encoding="utf-8")).get("finetune", {})
    except (OSError, ValueError):
        return {}
