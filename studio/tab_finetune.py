"""The Fine-tune tab: a background fine-tune (LoRA or full) with a live loss curve, Stop and Resume; and the
comparison models (a trained draft model, a hybrid), trained the same way.

`build()` lays the tab out, `wire()` attaches its listeners; the handlers are module-level functions
over `tasc.ft.finetune` and `studio.compare_training`, run as `studio.jobs` jobs. Each job lives as long
as its client: Stop, or a client that leaves (Gradio closes the event's generator), cancels it, and it
saves a checkpoint that Resume (or Train with the same kind and steps) continues.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from studio import compare_training
from studio.app_state import (
    STOP_WAIT_S,
    app_model,
    existing_session,
    follow_to_end,
    gpu,
    model_label,
    pool,
    require_corpus,
    session_for,
    user_errors,
)
from studio.compare_training import TRAIN_DRAFT, TRAIN_HYBRID, TRAIN_HYBRID_BLOCKS
from studio.foreground import start_trainer
from studio.sessions import FinetuneRequest
from studio.tab_arena import method_choices, model_update

FINETUNE_HELP = """\
**3. Teach the model the task (optional).** A short fine-tune on the corpus's input → output pairs.
LoRA trains small adapters and is quick; a full fine-tune trains every weight. It runs in the
background: watch the loss fall, stop it at any time, and resume it later from its last checkpoint.
Finished models appear in the Arena. Fine-tuning an **enriched** model (TASC-ft) also learns from the
session's fine-tuned base model, or else the corpus's task model: that model's answers to the corpus's inputs
join the training rows (on unseen E2E names this took TASC-ft from 6 BLEU behind the base model to level).
"""
COMPARE_HELP = """\
TASC's rivals, trained here so the Arena can race them. A **draft model** is a tiny model with the
app model's vocabulary: pretrained on text the app model writes, then fine-tuned on the corpus; it
drafts and the app model verifies (lossless). A **hybrid** lets the app model read the prompt once and
a small decoder write the whole answer (faster, but nothing checks it). Training a hybrid after a draft
model starts its decoder from the draft model. **Hybrid, decoder cut from the model** makes the decoder
from 6 of the app model's own blocks: slower to train and to run, far more accurate (SNIPS slot F1 0.66
against 0.53, 2.4x against 5.6x faster than greedy).
"""
LORA, FULL = "LoRA (fast)", "Full fine-tune"
MAX_STEPS = 5000  # longest fine-tune the app starts
TEACHER_INPUTS = 300  # distinct inputs a teacher answers before an enriched fine-tune (~3.5 min of a 135M model on 2 CPU cores)
NO_MODELS = "*No fine-tuned model yet.*"
COMPARE_STOPPED = "■ Stopped; its checkpoint is saved — press **Train** again (same kind and steps) to continue."


# --------------------------------------------------------------------------------------------
# Handlers: shared by both trainers
# --------------------------------------------------------------------------------------------
def device_note() -> str:
    """Which device fine-tunes and generation use."""
    import torch

    if torch.cuda.is_available():
        return f"● Running on GPU: **{torch.cuda.get_device_name(0)}**"
    return "○ Running on **CPU** (no GPU found): keep runs short (tens of steps) or use LoRA."


def finetune_base_choices(session) -> list[tuple[str, str]]:
    """(label, value) of the models a fine-tune can start from: the base model and this session's enriched ones."""
    base = [(f"{model_label(app_model())} (base model)", app_model())]
    return base + ([(m.label, m.label) for m in session.models_of("enriched")] if session else [])


def fmt_s(seconds: float | None) -> str:
    """Seconds as m:ss."""
    if seconds is None:
        return "…"
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def queued_text(job, what: str) -> str:
    """The status line of a job waiting for its turn: how many jobs are before it."""
    ahead = job.ahead()
    if ahead <= 0 and job.waiting_for_runner:
        return (f"Queued: another job (a fine-tune, or the corpus's task model) is using the model; your {what} "
                "starts when it finishes. Keep this page open: leaving cancels it.")
    if ahead <= 0:
        return f"Queued: your {what} starts in a moment…"
    return (f"Queued: **{ahead} {'job' if ahead == 1 else 'jobs'} ahead of yours** on this server (one {what} runs "
            "at a time); it starts when they finish. Keep this page open: leaving cancels it.")


def not_started(job, other: str) -> str | None:
    """The status line of a training job that has not reported a step yet (queued, or loading), else None."""
    if job.status == "queued":
        return queued_text(job, other)
    return "Loading the model and preparing the data…" if job.latest is None else None


def loss_text(p) -> str:
    """' · loss **x**' of a progress event that carries a loss, else ''."""
    return f" · loss **{p.metrics['loss']:.3f}**" if "loss" in p.metrics else ""


# --------------------------------------------------------------------------------------------
# Handlers: the fine-tune
# --------------------------------------------------------------------------------------------
def loss_frame(job):
    """(step, loss) points of a fine-tune job's progress events."""
    import pandas as pd

    points: dict[int, float] = {}
    last = None
    for e in job.events:
        # every step reports the latest logged loss; a new value marks the step it was logged at
        if "loss" in e.metrics and "step" in e.metrics and e.metrics["loss"] != last:
            points[int(e.metrics["step"])] = last = e.metrics["loss"]
    return pd.DataFrame({"step": list(points), "loss": list(points.values())})


def finetune_status(job) -> str:
    """A fine-tune job's progress line."""
    waiting = not_started(job, "fine-tune")
    if waiting:
        return waiting
    p = job.latest
    if p.task == "distill":
        return (f"The teacher answers the corpus's inputs: **{p.done}/{p.total}** · elapsed {fmt_s(p.elapsed_s)} · "
                f"ETA {fmt_s(p.eta_s)}")
    step = int(p.metrics.get("step", p.done))
    return (f"Step **{step}/{step - p.done + p.total}**{loss_text(p)} · "
            f"elapsed {fmt_s(p.elapsed_s)} · ETA {fmt_s(p.eta_s)}")


def models_md(session) -> str:
    """This session's fine-tuned models as a Markdown list."""
    models = session.models_of("finetuned")
    if not models:
        return NO_MODELS
    return "**Fine-tuned models in this session** (selectable in the Arena):\n" + "\n".join(f"- {m.label}" for m in models)


RECIPE_NAMES = {"faithful_only": "faithful rows only", "attribute_dropout": "attribute dropout", "new_names": "new names",
                "teacher": "the teacher's answers"}


def rows_text(result: dict[str, Any]) -> str:
    """What a finished fine-tune trained on: its row count and the data-to-text options it used, if any."""
    config = result.get("config") or {}
    used = [label for key, label in RECIPE_NAMES.items() if config.get(key)]
    rows = f"{result['train_rows']:,} training rows" if "train_rows" in result else ""
    return f" Trained on {rows}{' (' + ', '.join(used) + ')' if used else ''}." if rows else ""


def _finetuned(session, job) -> tuple[Any, ...]:
    """Register a finished fine-tune's model in the session; the tab's final outputs."""
    from studio.sessions import SessionModel

    r = job.result
    n = len(session.models_of("finetuned")) + 1
    lora = session.finetune_request is not None and session.finetune_request.lora
    label = f"fine-tuned #{n} ({'LoRA' if lora else 'full'}, {r['steps']} steps, loss {r['final_loss']})"
    with session.lock:
        session.models[label] = SessionModel(label, Path(r["out_dir"]), "finetuned", r)
    return (f"✓ Done: {r['steps']} steps in {fmt_s(r['wall_s'])} on {r['device']}, final loss {r['final_loss']}."
            f"{rows_text(r)} Pick **{label}** in the Arena.", loss_frame(job), gr.update(visible=False), models_md(session),
            model_update(session, label), gr.update(choices=method_choices(session)))


def finetune_stream(session, job, progress) -> Iterator[tuple[Any, ...]]:
    """Follow a fine-tune job: progress line, loss curve; at the end register the model."""

    def updates(j: Any) -> tuple[Any, ...]:
        p = j.latest
        if p is not None and p.total:
            progress((p.done, p.total), desc="fine-tune")
        return finetune_status(j), loss_frame(j), gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def stopped() -> tuple[Any, ...]:
        return (f"■ Stopped at step {int(job.latest.metrics.get('step', 0)) if job.latest else 0}; its checkpoint is "
                "saved — press **Resume** to continue.", loss_frame(job), gr.update(visible=True), gr.skip(), gr.skip(),
                gr.skip())

    yield from follow_to_end(job, updates, lambda _result: _finetuned(session, job), stopped, "fine-tune", poll_s=0.5)


def teacher_for(session) -> str | None:
    """The model whose answers an enriched fine-tune learns from: the session's latest fine-tune of the base
    model, else the corpus's task model once trained; None when there is neither."""
    from_base = [m for m in session.models_of("finetuned") if m.info.get("from_model") == app_model()]
    if from_base:
        return str(from_base[-1].path)
    task_model = getattr(session, "task_model", None)
    if task_model is not None and (Path(task_model) / "tasc.json").is_file():
        return str(task_model)
    return None


def _finetune_request(session, base_model: str, method: str, steps: int, lr: float | None) -> FinetuneRequest:
    """The fine-tune a Start asks for (checked): which model, which settings, which folder."""
    from tasc.ft.finetune import FinetuneConfig, data_to_text_options

    if not 1 <= steps <= MAX_STEPS:
        raise gr.Error(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")
    if lr is not None and not 0 < lr < 1:
        raise gr.Error(f"The learning rate must be between 0 and 1 (e.g. 0.001), got {lr}.")
    enriched = {m.label: m for m in session.models_of("enriched")}
    if base_model not in enriched and base_model != app_model():
        raise gr.Error(f"Unknown model {base_model!r}: start from the base model or an enriched one of this session.")
    spec = str(enriched[base_model].path) if base_model in enriched else app_model()
    lora = method.startswith("LoRA")
    config = FinetuneConfig(steps=steps, lora=lora, learning_rate=lr, save_every=max(1, min(50, steps // 4 or 1)),
                            log_every=max(1, steps // 50), **data_to_text_options(session.train))
    if base_model in enriched:  # TASC-ft learns one consistent way to answer from a fine-tuned base model
        config.teacher, config.teacher_inputs = teacher_for(session), TEACHER_INPUTS
    return FinetuneRequest(spec, config, session.workdir / "models" / f"ft-{secrets.token_hex(4)}", lora)


@gpu(duration=600)
@user_errors
def finetune_start(base_model: str, method: str, steps: float, learning_rate: float | None,
                   token: str | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """Start a background fine-tune of the session's training rows and stream its progress."""
    from tasc.ft.finetune import finetune

    session = session_for(token, request)
    require_corpus(session)
    if session.train.inputs is None:
        raise gr.Error("Fine-tuning needs input → output pairs; this corpus has outputs only.")
    running = session.jobs.get("finetune")
    if running is not None and not running.finished:
        raise gr.Error("A fine-tune of this session is already running; stop it first.")
    info = _finetune_request(session, base_model, method, int(steps), float(learning_rate) if learning_rate else None)
    session.finetune_request = info
    job = start_trainer("finetune", finetune, info.model, session.train, info.out_dir, info.config, slot="finetune")
    session.jobs["finetune"] = job
    yield from finetune_stream(session, job, progress)


@gpu(duration=600)
@user_errors
def finetune_resume(token: str | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """Continue the session's last stopped fine-tune from its checkpoint."""
    from studio.jobs import CANCELLED
    from tasc.ft.finetune import finetune

    session = session_for(token, request)
    last = session.jobs.get("finetune")
    info = session.finetune_request
    if last is None or info is None or not last.cancel_event.is_set():
        raise gr.Error("Nothing to resume: only a stopped fine-tune can be resumed.")
    if not last.finished:
        yield "Waiting for the stopped run to save its checkpoint…", *[gr.skip()] * 5
        last.wait()
    if last.status != CANCELLED:
        raise gr.Error(f"Nothing to resume: the last fine-tune {last.status}.")
    job = start_trainer("finetune", finetune, info.model, session.train, info.out_dir, info.config,
                        resume=True, slot="finetune")
    session.jobs["finetune"] = job
    yield from finetune_stream(session, job, progress)


@user_errors
def finetune_stop(token: str | None, request: gr.Request):
    """Cancel this session's fine-tune; it finishes its step and saves a checkpoint, then Resume is offered."""
    session = existing_session(token, request)
    job = session.jobs.get("finetune") if session else None
    if job is None or job.finished:
        yield "No fine-tune is running.", gr.skip()
        return
    job.cancel()
    yield "■ Stopping after the current step (saving a checkpoint)…", gr.skip()
    job.wait(STOP_WAIT_S)
    step = int(job.latest.metrics.get("step", 0)) if job.latest else 0
    if job.status == "cancelled":
        yield f"■ Stopped at step {step}; its checkpoint is saved — press **Resume** to continue.", gr.update(visible=True)
    elif job.finished:
        yield f"The fine-tune ended ({job.status}) before it could be stopped.", gr.skip()
    else:
        yield "■ Still stopping (saving a checkpoint); Resume will wait for it.", gr.update(visible=True)


# --------------------------------------------------------------------------------------------
# Handlers: comparison models (a trained draft model, a hybrid)
# --------------------------------------------------------------------------------------------
def compare_frame(job):
    """(step, loss, phase) points of a draft/hybrid training job, one curve per training phase."""
    import pandas as pd

    rows, last = [], None
    for e in job.events:
        if "loss" in e.metrics and (e.task, e.done) != last:
            rows.append({"step": e.done, "loss": e.metrics["loss"], "phase": e.task.split(": ")[-1]})
            last = (e.task, e.done)
    return pd.DataFrame(rows, columns=["step", "loss", "phase"])


def compare_status(job) -> str:
    """A draft/hybrid training job's progress line."""
    waiting = not_started(job, "training job")
    if waiting:
        return waiting
    p = job.latest
    return f"**{p.task}** {p.done}/{p.total}{loss_text(p)} · elapsed {fmt_s(job.elapsed_s())} · phase ETA {fmt_s(p.eta_s)}"


def _compared(session, run: compare_training.CompareRun, job) -> tuple[Any, ...]:
    """Register a finished draft model / hybrid in the session; the accordion's final outputs."""
    from studio.sessions import SessionModel

    r = job.result
    label = f"{run.what} #{len(session.models_of(run.model_kind)) + 1} ({run.config.steps} steps)"
    with session.lock:
        session.models[label] = SessionModel(label, Path(r["out_dir"]), run.model_kind, r)
    return (f"✓ Done in {fmt_s(r['wall_s'])}: the Arena now offers the **{run.what}**"
            + (" (and Draft model + TASC)." if not run.hybrid else "."), compare_frame(job),
            gr.update(choices=method_choices(session)))


@gpu(duration=900)
@user_errors
def compare_train(kind: str, steps: float, token: str | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """Train a draft model or a hybrid for the app's model on the session's corpus, as a background job.

    A stopped run of the same kind continues from its checkpoint the next time Train is pressed.
    """

    session = session_for(token, request)
    require_corpus(session)
    run = compare_training.plan(session, kind, int(steps), pool().get().model.config.num_hidden_layers)
    job = start_trainer("compare", run.train, app_model(), session.train, run.out_dir, run.config, resume=run.resume,
                        slot="finetune")
    session.jobs["compare"] = job

    def updates(j: Any) -> tuple[Any, ...]:
        p = j.latest
        if p is not None and p.total:
            progress((p.done, p.total), desc=p.task)
        return compare_status(j), compare_frame(j), gr.skip()

    yield from follow_to_end(job, updates, lambda _result: _compared(session, run, job),
                             lambda: (COMPARE_STOPPED, compare_frame(job), gr.skip()), "training", poll_s=0.5)


@user_errors
def compare_stop(token: str | None, request: gr.Request) -> str:
    """Cancel this session's draft/hybrid training; it saves a checkpoint first."""
    session = existing_session(token, request)
    job = session.jobs.get("compare") if session else None
    if job is None or job.finished:
        return "No draft/hybrid training is running."
    job.cancel()
    job.wait(STOP_WAIT_S)
    return COMPARE_STOPPED


# --------------------------------------------------------------------------------------------
# Layout and listeners
# --------------------------------------------------------------------------------------------
@dataclass
class FinetuneTab:
    """The Fine-tune tab's components (the comparison models' accordion included)."""

    device: gr.Markdown
    base: gr.Dropdown
    method: gr.Radio
    steps: gr.Slider
    lr: gr.Number
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    status: gr.Markdown
    loss: gr.LinePlot
    models: gr.Markdown
    cmp_kind: gr.Radio
    cmp_steps: gr.Slider
    cmp_start: gr.Button
    cmp_stop: gr.Button
    cmp_status: gr.Markdown
    cmp_loss: gr.LinePlot


def _settings() -> tuple[gr.Dropdown, gr.Radio, gr.Slider, gr.Number]:
    """Start from which model, LoRA or full, steps, learning rate."""
    base = gr.Dropdown(finetune_base_choices(None), value=app_model(), label="Start from", allow_custom_value=True,
                       info="the base model, or one with an enriched vocabulary (Vocabulary tab)")
    method = gr.Radio([LORA, FULL], value=LORA, label="Method")
    steps = gr.Slider(1, 1000, value=60, step=1, label="Steps", info="optimiser steps of 8 examples", elem_id="ft-steps")
    lr = gr.Number(0, label="Learning rate", info="0: the default (1e-3 for LoRA, 2e-4 full)", minimum=0)
    return base, method, steps, lr


def _comparison_models() -> tuple[Any, ...]:
    """The accordion that trains a draft model or a hybrid: (kind, steps, start, stop, status, loss)."""
    with gr.Accordion("Comparison models: a trained draft model, or a hybrid", open=False):
        gr.Markdown(COMPARE_HELP)
        with gr.Row():
            kind = gr.Radio([TRAIN_DRAFT, TRAIN_HYBRID, TRAIN_HYBRID_BLOCKS], value=TRAIN_DRAFT, label="Train")
            steps = gr.Slider(10, 1000, value=150, step=10, label="Steps", info="task steps of 16 examples",
                              elem_id="cmp-steps")
            start = gr.Button("Train", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        status = gr.Markdown(elem_id="cmp-status")
        loss = gr.LinePlot(x="step", y="loss", color="phase", title="Training loss", height=240, elem_id="cmp-loss")
    return kind, steps, start, stop, status, loss


def build() -> FinetuneTab:
    """The Fine-tune tab (inside the app's Blocks)."""
    with gr.Tab("Fine-tune"):
        gr.Markdown(FINETUNE_HELP)
        device = gr.Markdown(elem_id="ft-device")
        with gr.Row():
            base, method, steps, lr = _settings()
        with gr.Row():
            start = gr.Button("Start fine-tune", variant="primary")
            stop = gr.Button("Stop", variant="stop")
            resume = gr.Button("Resume", visible=False, elem_id="ft-resume")
        status = gr.Markdown(elem_id="ft-status")
        loss = gr.LinePlot(x="step", y="loss", title="Training loss", height=260, elem_id="ft-loss")
        models = gr.Markdown(NO_MODELS)
        comparison = _comparison_models()
    return FinetuneTab(device, base, method, steps, lr, start, stop, resume, status, loss, models, *comparison)


def wire(ui: FinetuneTab, token: gr.State, arena_model: gr.Dropdown, method: gr.Dropdown, loaded: Any) -> None:
    """The Fine-tune tab's listeners; new models are offered in the Arena (`arena_model`, its `method` picker).
    `loaded` is the page-load event: the device note follows it."""
    loaded.then(device_note, None, ui.device, api_visibility="private")
    outputs = [ui.status, ui.loss, ui.resume, ui.models, arena_model, method]
    ft_event = ui.start.click(finetune_start, [ui.base, ui.method, ui.steps, ui.lr, token], outputs,
                              api_name="finetune", concurrency_id="finetune", concurrency_limit=1)
    resume_event = ui.resume.click(finetune_resume, [token], outputs, api_name="finetune_resume",
                                   concurrency_id="finetune", concurrency_limit=1)
    ui.stop.click(finetune_stop, [token], [ui.status, ui.resume], api_name="finetune_stop",
                  cancels=[ft_event, resume_event])
    cmp_event = ui.cmp_start.click(compare_train, [ui.cmp_kind, ui.cmp_steps, token], [ui.cmp_status, ui.cmp_loss, method],
                                   api_name="train_compare", concurrency_id="compare", concurrency_limit=1)
    ui.cmp_stop.click(compare_stop, [token], [ui.cmp_status], api_name="train_compare_stop", cancels=[cmp_event])
