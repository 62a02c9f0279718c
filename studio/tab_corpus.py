"""The Corpus tab: pick an example or upload a file; see its statistics, a preview and the held-out split.

`build()` lays the tab out, `wire()` attaches its listeners; the handlers are module-level functions
over `tasc.core.corpus` and `studio.uploads`, callable without a Blocks context.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import types
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio import task_model
from studio.app_state import (
    ASSETS,
    MAX_UPLOAD_BYTES,
    app_cache_dir,
    existing_session,
    heldout_inputs,
    model_label,
    pool,
    require_corpus,
    session_for,
    user_errors,
)

CORPUS_HELP = """\
**1. Choose the task.** A corpus is a file of the task's answers (`output`), ideally with the request each
one answers (`input`). Start with one of the examples, or upload your own JSON Lines, CSV, TSV or plain
text file (one answer per line). A tenth of the inputs is held out: the Arena and the benchmark
use them as fresh prompts, and they are never used for drafting or fine-tuning.
"""
DEFAULT_EXAMPLE = "support_tickets.jsonl"
UPLOAD_TYPES = [".jsonl", ".csv", ".tsv", ".txt"]
AUTO = "(auto)"  # column pickers: let the parser find the column
NO_INPUT = "(none)"  # input column picker: read outputs only
PREVIEW_ROWS = 50  # rows shown in the corpus preview table
HELDOUT_FRACTION = 0.1  # share of distinct inputs held out for the Arena and the benchmark
HELDOUT_SEED = 0  # the same corpus always splits the same way
HELDOUT_CHOICES = 100  # held-out inputs offered in the Arena's picker
EXPORTS = "exports"  # under the app's work folder: one folder per session, holding its latest export only
SUMMARY_SAMPLE_CHARS = 200_000  # output characters tokenised for the statistics (at least one output)
STALE_EXPORT_S = 3600.0  # an export folder untouched this long whose session this process does not know goes


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------
def example_names() -> list[str]:
    """The example corpora shipped in assets/."""
    return sorted(p.name for p in ASSETS.glob("*.jsonl"))


def split_corpus(corpus) -> tuple[Any, Any]:
    """(train, held-out) of a freshly read corpus: the app's one held-out policy.

    A corpus with at least two distinct inputs is split by input (`tasc.core.corpus.split_by_input`,
    as `tasc bench --corpus-split` does); otherwise nothing is held out: every row drafts, and the
    Arena takes typed prompts.
    """
    from tasc.core.corpus import Corpus, compute_stats, split_by_input

    if corpus.inputs is not None and len(set(corpus.inputs)) >= 2:
        return split_by_input(corpus, HELDOUT_FRACTION, seed=HELDOUT_SEED)
    return corpus, Corpus([], None, corpus.source, compute_stats([], None))


def corpus_summary(session) -> str:
    """Markdown statistics of the session's corpus (token counts with the base model's tokenizer)."""
    c, train, held = session.corpus, session.train, session.heldout
    s = c.stats
    tok = pool().get().tokenizer
    sample: list[str] = []  # the first outputs, up to SUMMARY_SAMPLE_CHARS (tokenising 20 MB costs ~1 GB for a moment)
    sample_chars = 0
    for output in c.outputs[:2000]:
        if sample and sample_chars + len(output) > SUMMARY_SAMPLE_CHARS:
            break
        sample.append(output)
        sample_chars += len(output)
    n_tokens = sum(len(ids) for ids in tok(sample, add_special_tokens=False)["input_ids"])
    if c.inputs is not None:
        split = (f"{s.distinct_inputs:,} distinct inputs → **{len(train):,} rows for drafting and training**, "
                 f"**{len(held):,} held out** ({len(heldout_inputs(session))} inputs) as fresh Arena prompts")
    else:
        split = "outputs only (no inputs): TASC-spec can draft from it; fine-tuning and the Arena's held-out prompts need inputs"
    return (f"### ✓ {c.source}\n{s.rows:,} rows · {split}\n\n"
            f"| statistic | value |\n|---|---|\n| characters in outputs | {s.chars:,} (mean {s.mean_output_chars:,.0f}, longest {s.max_output_chars:,}) |\n"
            f"| base tokens per output | {n_tokens / len(sample):,.1f} ({sample_chars / max(n_tokens, 1):.2f} characters per token, "
            f"{model_label(pool().get().name)} tokenizer) |\n"
            f"| TASC-spec index | {index_coverage(train, n_tokens / max(sample_chars, 1))} |")


def index_coverage(train, tokens_per_char: float) -> str:
    """How much of the training outputs TASC-spec's index will hold (it is capped, `studio.indexes.INDEX_MAX_TOKENS`)."""
    from studio.indexes import INDEX_MAX_TOKENS
    from tasc.spec.drafts import MARKS_PER_ROW

    need = sum(len(o) for o in train.outputs) * tokens_per_char + MARKS_PER_ROW * len(train)
    if need <= INDEX_MAX_TOKENS:
        return f"all training outputs (≈ {need:,.0f} tokens)"
    return (f"**a sample**: about {INDEX_MAX_TOKENS / need:.0%} of the training outputs (they need ≈ {need:,.0f} tokens; "
            f"an index holds at most {INDEX_MAX_TOKENS:,}, to bound the server's memory)")


def corpus_preview(session):
    """The first rows of the corpus as a table."""
    import pandas as pd

    c = session.corpus
    rows = {"input": c.inputs[:PREVIEW_ROWS]} if c.inputs is not None else {}
    rows["output"] = c.outputs[:PREVIEW_ROWS]
    return pd.DataFrame(rows)


_EXPORT_OWNERS: dict[str, Any] = {}  # export folder name -> weakref.finalize that removes it with its session


def export_folder(session) -> Path:
    """This session's export folder (`exports/<its folder's name>`), removed when the session object goes.

    Exports sit under `exports/` (the folder the server may hand files out of) rather than in the
    session's own folder; the store drops a session by forgetting it, and the finalizer registered here
    then deletes its export too.
    """
    folder = app_cache_dir() / EXPORTS / session.workdir.name
    if folder.name not in _EXPORT_OWNERS:
        try:
            _EXPORT_OWNERS[folder.name] = weakref.finalize(session, _forget_export, folder)
        except TypeError:  # a stand-in session that takes no weak reference: the sweep removes its folder
            pass
    return folder


def _forget_export(folder: Path) -> None:
    """Delete a dropped session's export folder."""
    _EXPORT_OWNERS.pop(folder.name, None)
    shutil.rmtree(folder, ignore_errors=True)


def sweep_exports(root: Path, max_age_s: float = STALE_EXPORT_S) -> int:
    """Delete export folders no live session of this process owns, untouched for `max_age_s` (an earlier run's,
    a crashed one's); returns how many. The server copies an export into its own cache when it hands it out,
    so even a live session of another process loses nothing it still needs."""
    removed = 0
    now = time.time()
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            stale = folder.name not in _EXPORT_OWNERS and now - folder.stat().st_mtime > max_age_s
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)
            removed += 1
    return removed


def export_corpus_csv(session, corpus=None) -> Path:
    """Write the corpus (default: the session's) as CSV for download, formula cells escaped, replacing the
    session's previous export: a session keeps one export, which goes with it."""
    import csv
    import tempfile

    from tasc.core.corpus import escape_csv_cell

    c = corpus if corpus is not None else session.corpus
    folder = export_folder(session)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (Path(c.source).stem + ".csv")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".export-", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            if c.inputs is not None:
                w.writerow(["input", "output"])
                w.writerows([escape_csv_cell(i), escape_csv_cell(o)] for i, o in zip(c.inputs, c.outputs, strict=True))
            else:
                w.writerow(["output"])
                w.writerows([escape_csv_cell(o)] for o in c.outputs)
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    for old in folder.iterdir():  # the previous export (another corpus name); a write in progress stays
        if old != path and not old.name.startswith(".export-"):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    sweep_exports(folder.parent)
    return path


def heldout_choices(session) -> list[tuple[str, str]]:
    """(label, value) for the Arena's held-out prompt picker."""
    inputs = heldout_inputs(session)[:HELDOUT_CHOICES]
    return [(i if len(i) <= 90 else i[:87] + "…", i) for i in inputs]


def install_corpus(session, corpus) -> tuple[Any, ...]:
    """Split a freshly read corpus, make every view of it, and only then keep it in the session: a corpus
    whose views fail is never installed, and the session keeps the corpus it had."""
    train, held = split_corpus(corpus)
    views = types.SimpleNamespace(corpus=corpus, train=train, heldout=held)  # what the views read of a session
    choices = heldout_choices(views)
    first = choices[0][1] if choices else ""
    summary, preview = corpus_summary(views), corpus_preview(views)
    export = export_corpus_csv(session, corpus)
    session.set_corpus(corpus, train, held)
    task_model.ensure(session)  # a model that does this task, trained in the background (shared, cached)
    return (session.token, summary, preview, gr.update(value=str(export), visible=True),
            gr.update(choices=choices, value=first if choices else None), first)


@user_errors
def use_example(name: str, token: str | None, request: gr.Request):
    """Load one of the example corpora into this session."""
    from tasc.core.corpus import load_example

    if name not in example_names():
        raise gr.Error(f"Unknown example {name!r}; choose one of: {', '.join(example_names())}")
    session = session_for(token, request)
    return install_corpus(session, load_example(name))


@user_errors
def inspect_upload(path: str | None):
    """Check an upload's name, size and bytes and offer its columns in the column pickers."""
    from studio.uploads import UploadLimits, read_upload
    from tasc.core.corpus import candidate_columns

    if not path:
        return gr.update(choices=[AUTO], value=AUTO), gr.update(choices=[AUTO], value=AUTO)
    data, name = read_upload(path, limits=UploadLimits(max_bytes=MAX_UPLOAD_BYTES))
    columns = [AUTO] + candidate_columns(data, name)
    return (gr.update(choices=columns, value=AUTO, interactive=len(columns) > 1),
            gr.update(choices=columns + [NO_INPUT], value=AUTO, interactive=len(columns) > 1))


@user_errors
def load_upload(path: str | None, output_column: str | None, input_column: str | None,
                token: str | None, request: gr.Request):
    """Read an uploaded corpus (content checked by its bytes) into this session."""
    from studio.uploads import UploadLimits
    from studio.uploads import load_upload as read_corpus

    if not path:
        raise gr.Error("Choose a file to upload first (.jsonl, .csv, .tsv or .txt, 20 MB at most).")
    for role, column in (("output", output_column), ("input", input_column)):
        if column is not None and not isinstance(column, str):  # the API takes any JSON value here
            raise gr.Error(f"The {role} column must be a column name (text) or {AUTO!r}, got {type(column).__name__}.")
    out_col = None if output_column in (None, "", AUTO) else output_column
    in_col = None if input_column in (None, "", AUTO, NO_INPUT) else input_column
    corpus = read_corpus(path, None, out_col, in_col, UploadLimits(max_bytes=MAX_UPLOAD_BYTES))
    if input_column == NO_INPUT and corpus.inputs is not None:
        corpus = dataclasses.replace(corpus, inputs=None)
    session = session_for(token, request)
    return install_corpus(session, corpus)


def pick_heldout(value: str | None) -> str:
    """Copy a picked held-out input into the prompt box."""
    return value or ""


TASK_POLL_S = 2.0  # how often an open page asks how the task model is doing, while it trains


def task_model_tick(current_model: str | None, token: str | None, request: gr.Request):
    """The task model's status line; when it has just become ready, the Arena's model picker switches to it;
    the poll stops once nothing is left to watch."""
    from studio.foreground import FOREGROUND
    from studio.tab_arena import TASK, model_update

    session = existing_session(token, request)
    if session is None:
        return "", gr.skip(), gr.Timer(active=False)
    tm = task_model.of(session)
    picker = gr.skip()
    if tm is not None and tm.ready and not session.task_model_shown:
        session.task_model_shown = True
        picker = model_update(session, TASK)
    live = tm is not None and not tm.ready and tm.job is not None and not tm.job.finished
    return task_model.status(session, FOREGROUND.busy), picker, gr.Timer(active=live)


@user_errors
def task_model_train(current_model: str | None, token: str | None, request: gr.Request):
    """(Re)start the task model of this session's corpus (a stopped run continues from its checkpoint)."""
    session = session_for(token, request)
    require_corpus(session)
    if session.train.inputs is None:
        raise gr.Error("A task model needs input → output pairs; this corpus has outputs only.")
    task_model.ensure(session, restart=True)
    return task_model_tick(current_model, token, request)


@user_errors
def task_model_stop(token: str | None, request: gr.Request) -> str:
    """Stop this session's task-model run (its checkpoint is saved)."""
    session = existing_session(token, request)
    if session is None or not task_model.stop(session):
        return "No task model is training."
    return "■ Stopping the task model after its current step (a checkpoint is saved)…"


# --------------------------------------------------------------------------------------------
# Layout and listeners
# --------------------------------------------------------------------------------------------
@dataclass
class CorpusTab:
    """The Corpus tab's components."""

    example: gr.Dropdown
    example_btn: gr.Button
    upload: gr.File
    out_col: gr.Dropdown
    in_col: gr.Dropdown
    upload_btn: gr.Button
    summary: gr.Markdown
    preview: gr.Dataframe
    export: gr.DownloadButton
    task_status: gr.Markdown
    task_train: gr.Button
    task_stop: gr.Button
    task_timer: gr.Timer


def _example_picker() -> tuple[gr.Dropdown, gr.Button]:
    """The example dropdown (the default example preselected) and its button."""
    examples = example_names()
    example = gr.Dropdown(examples, value=DEFAULT_EXAMPLE if DEFAULT_EXAMPLE in examples else None,
                          label="Example corpus", info="written for this app; small and realistic")
    return example, gr.Button("Use this example", variant="primary")


def _upload_picker() -> tuple[gr.File, gr.Dropdown, gr.Dropdown, gr.Button]:
    """The upload box, its column pickers and its button."""
    upload = gr.File(label="…or upload your own (.jsonl, .csv, .tsv, .txt; 20 MB at most)", file_types=UPLOAD_TYPES,
                     type="filepath", height=120, elem_id="corpus-upload")
    with gr.Row():
        # custom values: API clients name columns without the picker; the parser checks them
        out_col = gr.Dropdown([AUTO], value=AUTO, label="Output column", interactive=False, allow_custom_value=True)
        in_col = gr.Dropdown([AUTO], value=AUTO, label="Input column", interactive=False, allow_custom_value=True)
    return upload, out_col, in_col, gr.Button("Load the uploaded file")


def build() -> CorpusTab:
    """The Corpus tab (inside the app's Blocks)."""
    with gr.Tab("Corpus"):
        gr.Markdown(CORPUS_HELP)
        with gr.Row():
            with gr.Column():
                example, example_btn = _example_picker()
            with gr.Column():
                upload, out_col, in_col, upload_btn = _upload_picker()
        summary = gr.Markdown("*No corpus loaded yet.*", elem_id="corpus-summary")
        preview = gr.Dataframe(label="Preview (first rows)", interactive=False, wrap=True, max_height=360,
                               column_widths=["50%", "50%"])
        export = gr.DownloadButton("Download as CSV", visible=False, size="sm")
        with gr.Row(equal_height=True):
            task_status = gr.Markdown(elem_id="task-model-status")
            task_train = gr.Button("Train task model", size="sm", scale=0, min_width=160)
            task_stop = gr.Button("Stop", size="sm", variant="stop", scale=0, min_width=80)
        task_timer = gr.Timer(TASK_POLL_S, active=False)
    return CorpusTab(example, example_btn, upload, out_col, in_col, upload_btn, summary, preview, export,
                     task_status, task_train, task_stop, task_timer)


def wire(demo: gr.Blocks, ui: CorpusTab, token: gr.State, heldout: gr.Dropdown, prompt: gr.Textbox,
         arena_model: gr.Dropdown) -> Any:
    """The Corpus tab's listeners; a corpus fills the Arena's held-out picker and prompt, and its task model,
    once ready, the Arena's model picker. Returns the page-load event (the default example is loaded when the
    page opens), for others to chain on."""
    outputs = [token, ui.summary, ui.preview, ui.export, heldout, prompt]
    watch = (task_model_tick, [arena_model, token], [ui.task_status, arena_model, ui.task_timer])
    ui.example_btn.click(use_example, [ui.example, token], outputs, api_name="use_example").then(
        *watch, api_visibility="private")
    ui.upload.upload(inspect_upload, [ui.upload], [ui.out_col, ui.in_col], api_visibility="private").success(
        load_upload, [ui.upload, ui.out_col, ui.in_col, token], outputs, api_visibility="private").then(
        *watch, api_visibility="private")
    ui.upload_btn.click(load_upload, [ui.upload, ui.out_col, ui.in_col, token], outputs, api_name="load_corpus").then(
        *watch, api_visibility="private")
    heldout.change(pick_heldout, heldout, prompt, api_visibility="private")
    ui.task_timer.tick(*watch, api_visibility="private", concurrency_limit=None)  # cheap: reads job state only
    ui.task_train.click(task_model_train, [arena_model, token], [ui.task_status, arena_model, ui.task_timer],
                        api_name="task_model_train")
    ui.task_stop.click(task_model_stop, [token], [ui.task_status], api_name="task_model_stop")
    loaded = demo.load(use_example, [ui.example, token], outputs, api_visibility="private")
    loaded.then(*watch, api_visibility="private")
    return loaded
