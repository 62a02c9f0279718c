"""The Vocabulary tab: mine the corpus's recurring strings, see a text tokenised before and after, and
enrich the base model's vocabulary with them (a background job with Stop).

`build()` lays the tab out, `wire()` attaches its listeners; the handlers are module-level functions
over `tasc.ft.ngrams` and `tasc.ft.vocab`. Mining and enrichment run as `studio.jobs` jobs (a 20 MB
corpus mines for minutes): progress per round, the tab's Stop button, and a client that leaves cancels
its job.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from studio.app_state import (
    MAX_PROMPT_CHARS,
    app_model,
    existing_session,
    follow_to_end,
    gpu,
    pool,
    require_corpus,
    session_for,
    user_errors,
)
from studio.sessions import MiningPreview
from studio.tab_finetune import finetune_base_choices, queued_text

VOCAB_HELP = """\
**2. Find the task's recurring text.** Answers of one task repeat the same strings (JSON keys, phrases).
Mining finds the multi-token strings that occur most; enrichment adds them to the tokenizer as single
tokens, so the model can write each of them in one step.
"""
TOKENS_HELP = ("**See the difference.** Any text, cut into tokens: alternating shades mark token "
               "boundaries, <span style='background:#7bd89f'>green</span> tokens are mined strings.")
TOKEN_COLOURS = {"token": "#dbe7fb", "token ": "#f8e5c4", "mined": "#7bd89f"}  # two alternating shades + new tokens
TABLE_COLUMNS = ["string", "kind", "occurrences", "base tokens", "tokens saved", "round", "uses"]


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------
def mined_table(tokens: list[dict[str, Any]]):
    """Mined strings as a sortable table."""
    import pandas as pd

    from studio.plots import shown

    return pd.DataFrame([{"string": shown(t["text"]), "kind": t["kind"], "occurrences": t["count"],
                          "base tokens": t["base_tokens"], "tokens saved": t["saved"], "round": t["round"],
                          "uses": t["uses"]} for t in tokens], columns=TABLE_COLUMNS)


def token_view(decode: Callable[[list[int]], str], ids: list[int], base_size: int | None) -> list[tuple[str, str]]:
    """A text cut into its tokens, alternately shaded; tokens at or above `base_size` marked as mined."""
    from studio.arena import labelled_spans

    labels = ["mined" if base_size is not None and t >= base_size else ("token" if i % 2 == 0 else "token ")
              for i, t in enumerate(ids)]
    return [(piece, label) for piece, label in labelled_spans(decode, ids, labels, merge=False) if piece]


def _heldout_outputs(session) -> list[str] | None:
    """The held-out outputs (mining reports its compression on them too), or None."""
    return session.heldout.outputs if session.heldout is not None and len(session.heldout) else None


@user_errors
def vocab_tokenise(text: str, token: str | None, request: gr.Request):
    """Show a text tokenised by the base tokenizer and by the enriched one (once strings are mined)."""
    from tasc.core.corpus import check_text

    text = check_text(text if text is not None else "", "The text to tokenise")[:MAX_PROMPT_CHARS]
    if not text:
        return [], [], ""
    base = pool().get().tokenizer
    ids = base(text, add_special_tokens=False)["input_ids"]
    before = token_view(lambda x: base.decode(x, skip_special_tokens=True), ids, None)
    session = existing_session(token, request)
    mining = session.mining if session else None
    if mining is None:
        return before, [], f"**{len(ids)} tokens** with the base tokenizer. Mine the corpus to see the enriched tokenizer."
    seg = mining.segmenter
    new_ids = seg.encode([text])[0]
    after = token_view(lambda x: seg.tokenizer.decode(x, skip_special_tokens=True), new_ids, seg.base_size)
    ratio = len(ids) / max(len(new_ids), 1)
    return before, after, f"**{len(ids)} → {len(new_ids)} tokens** ({ratio:.2f}× fewer) with the mined strings"


def mine_job(texts: list[str], segmenter: Any, config: Any, *, heldout: list[str] | None = None,
             on_progress: Callable[[Any], None], cancel: Any) -> Any:
    """`tasc.ft.ngrams.mine` as a job function: a progress event per round (its figures in the metrics,
    "round" included); a cancel stops it after tokenising or within a round."""
    import time

    from tasc.core.progress import Progress
    from tasc.ft.ngrams import mine

    t0 = time.perf_counter()

    def on_round(row: dict[str, Any]) -> None:
        metrics: dict[str, float] = {k: row[k] for k in ("round", "added", "compression", "heldout_compression") if k in row}
        on_progress(Progress("mine", min(row["round"], config.rounds), config.rounds, time.perf_counter() - t0, metrics,
                             f"round {row['round']}: {row['added']} strings, {row['compression']:.2f}× fewer tokens"))

    return mine(texts, segmenter, config, heldout=heldout, on_round=on_round, cancel=cancel)


def mined_rounds(job) -> list[dict[str, Any]]:
    """Per-round figures carried by a mining job's progress events, by round."""
    rows = {int(e.metrics["round"]): e.metrics for e in job.events if "round" in e.metrics}
    return [{**rows[r], "round": r} for r in sorted(rows)]


def mining_config(session, budget: float, rounds: float) -> Any:
    """The mining settings of a request: the sliders, and the names the session's corpus inputs hold."""
    from tasc.ft.ngrams import MiningConfig
    from tasc.ft.vocab import mining_config_for

    return mining_config_for(MiningConfig(budget=int(budget), rounds=int(rounds)), session.train)


@user_errors
def vocab_mine(budget: float, rounds: float, token: str | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """Mine the training outputs for the strings worth a token of their own (no model change yet), as a job:
    compression per round as it goes, Stop, and a client that leaves cancels it."""
    from studio.jobs import start_job
    from studio.plots import compression_rounds, mined_bars
    from tasc.ft.vocab import TokenizerSegmenter

    session = session_for(token, request)
    require_corpus(session)
    config = mining_config(session, budget, rounds)
    config.check()  # its ValueError is the user's message
    earlier = session.jobs.get("mine")
    if earlier is not None and not earlier.finished:
        earlier.cancel()  # this session's new request replaces it
    seg = TokenizerSegmenter(pool().get().tokenizer)
    job = start_job("mine", mine_job, session.train.outputs, seg, config, heldout=_heldout_outputs(session), slot="mine")
    session.jobs["mine"] = job
    skip4 = (gr.skip(),) * 4

    def updates(j: Any) -> tuple[Any, ...]:
        p = j.latest
        if j.status == "queued":
            line = queued_text(j, "mining run")
        elif p is None:
            line = "Tokenising the corpus…"
        elif p.done == 0:
            line = f"Corpus tokenised; mining round 1 of {p.total}…"
        else:
            progress((p.done, p.total), desc="mining")
            line = f"Mining… {p.message} · elapsed {p.elapsed_s:.0f} s"
        rows = mined_rounds(j)
        return session.token, gr.skip(), gr.skip(), compression_rounds(rows) if rows else gr.skip(), line, *skip4

    def done(result: Any) -> tuple[Any, ...]:
        session.mining = MiningPreview(result, seg)
        last = result.rounds[-1]
        status = (f"Mined **{len(result.tokens)} strings** in {result.wall_s:.2f} s: the training outputs need "
                  f"**{last['compression']:.2f}× fewer tokens**"
                  + (f", held-out outputs {last['heldout_compression']:.2f}× fewer" if "heldout_compression" in last else "")
                  + ". Press **Enrich the model** to add them to the model's vocabulary.")
        sample = session.train.outputs[0]
        return (session.token, mined_table([c.to_dict() for c in result.tokens]), mined_bars(result.tokens),
                compression_rounds(result.rounds), status, sample, *vocab_tokenise(sample, session.token, request))

    yield from follow_to_end(job, updates, done, lambda: (session.token, gr.skip(), gr.skip(), gr.skip(), "Mining stopped.", *skip4),
                             "mining")


def vocab_preview(budget: float, rounds: float, token: str | None, request: gr.Request,
                  progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """On opening the tab: mine the corpus (as `vocab_mine`) unless this corpus was mined or is being mined."""
    session = existing_session(token, request)
    mining = session.jobs.get("mine") if session is not None else None
    if session is None or session.corpus is None or session.mining is not None or (mining is not None and not mining.finished):
        yield (gr.skip(),) * 9  # the outputs of `vocab_mine`
        return
    yield from vocab_mine(budget, rounds, token, request, progress)


def rounds_from_events(job) -> list[dict[str, Any]]:
    """Per-round figures carried by an enrichment job's progress events."""
    rows: dict[int, dict[str, Any]] = {}
    for e in job.events:
        if "compression" in e.metrics:
            rows[e.done] = {"round": e.done, **e.metrics}
    return list(rows.values())


def _enriched(session, result: dict[str, Any]) -> tuple[Any, ...]:
    """Register a finished enrichment's model in the session; the tab's final outputs."""
    from studio.plots import compression_rounds
    from studio.sessions import SessionModel

    label = (f"enriched #{len(session.models_of('enriched')) + 1} (+{result['added']} tokens, "
             f"{result['compression']:.2f}× fewer)")
    with session.lock:
        session.models[label] = SessionModel(label, Path(result["out_dir"]), "enriched", result)
    return (f"✓ Added **{result['added']} tokens** to the model's vocabulary in {result['wall_s']:.1f} s: the corpus "
            f"needs {result['compression']:.2f}× fewer tokens. Fine-tune **{label}** in the Fine-tune tab to teach "
            "the model to use them.", compression_rounds(result["rounds"]),
            gr.update(choices=finetune_base_choices(session), value=label))


@gpu(duration=300)
@user_errors
def vocab_enrich(budget: float, rounds: float, token: str | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """Mine, add the strings to the base model's tokenizer, initialise their embeddings, save the model."""
    from studio.foreground import start_trainer
    from studio.plots import compression_rounds
    from tasc.ft.vocab import enrich

    session = session_for(token, request)
    require_corpus(session)
    config = mining_config(session, budget, rounds)
    out_dir = session.workdir / "models" / f"enriched-{secrets.token_hex(4)}"
    job = start_trainer("enrich", enrich, app_model(), session.train.outputs, out_dir, config,
                        heldout=_heldout_outputs(session), slot="enrich")
    session.jobs["enrich"] = job

    def updates(j: Any) -> tuple[Any, ...]:
        p = j.latest
        if p is not None:
            progress((p.done, p.total), desc=p.message or "enrich")
        rows = rounds_from_events(j)
        line = queued_text(j, "enrichment") if j.status == "queued" else p.message if p else "Loading the tokenizer…"
        return line, compression_rounds(rows) if rows else gr.skip(), gr.skip()

    yield from follow_to_end(job, updates, lambda result: _enriched(session, result),
                             lambda: ("Enrichment stopped.", gr.skip(), gr.skip()), "enrichment")


# --------------------------------------------------------------------------------------------
# Layout and listeners
# --------------------------------------------------------------------------------------------
@dataclass
class VocabTab:
    """The Vocabulary tab's components."""

    tab: gr.Tab
    budget: gr.Slider
    rounds: gr.Slider
    mine_btn: gr.Button
    enrich_btn: gr.Button
    stop: gr.Button  # stops mining or enrichment
    status: gr.Markdown
    bars: gr.Plot
    rounds_plot: gr.Plot
    table: gr.Dataframe
    tok_text: gr.Textbox
    tok_before: gr.HighlightedText
    tok_after: gr.HighlightedText
    tok_counts: gr.Markdown


def _token_pane(label: str, elem_id: str) -> gr.HighlightedText:
    """One tokenised view of the text (token boundaries shaded, mined tokens green)."""
    return gr.HighlightedText(label=label, color_map=TOKEN_COLOURS, show_legend=False, show_inline_category=False,
                              combine_adjacent=False, elem_id=elem_id)


def build() -> VocabTab:
    """The Vocabulary tab (inside the app's Blocks)."""
    with gr.Tab("Vocabulary") as tab:
        gr.Markdown(VOCAB_HELP)
        with gr.Row():
            budget = gr.Slider(10, 500, value=100, step=10, label="Budget: new tokens",
                               info="how many strings to add at most")
            rounds = gr.Slider(1, 10, value=4, step=1, label="Rounds",
                               info="later rounds build longer strings from earlier picks")
            mine_btn = gr.Button("Mine the corpus", variant="primary")
            enrich_btn = gr.Button("Enrich the model")
            stop = gr.Button("Stop", variant="stop")
        status = gr.Markdown(elem_id="vocab-status")
        with gr.Row():
            bars = gr.Plot(label="Mined strings", elem_id="vocab-bars")
            rounds_plot = gr.Plot(label="Compression per round", elem_id="vocab-rounds")
        table = gr.Dataframe(label="Mined strings (click a column header to sort)", interactive=False,
                             max_height=320, elem_id="vocab-table")
        gr.Markdown(TOKENS_HELP)
        tok_text = gr.Textbox(label="Text to tokenise", lines=2, max_length=MAX_PROMPT_CHARS)
        with gr.Row():
            tok_before = _token_pane("base tokenizer", "tok-before")
            tok_after = _token_pane("with the mined strings", "tok-after")
        tok_counts = gr.Markdown(elem_id="tok-counts")
    return VocabTab(tab, budget, rounds, mine_btn, enrich_btn, stop, status, bars, rounds_plot, table, tok_text,
                    tok_before, tok_after, tok_counts)


def wire(ui: VocabTab, token: gr.State, ft_base: gr.Dropdown) -> None:
    """The Vocabulary tab's listeners; an enriched model becomes the Fine-tune tab's starting model."""
    tokenised = [ui.tok_before, ui.tok_after, ui.tok_counts]
    mined = [token, ui.table, ui.bars, ui.rounds_plot, ui.status, ui.tok_text, *tokenised]
    mine_event = ui.mine_btn.click(vocab_mine, [ui.budget, ui.rounds, token], mined,
                                   api_name="mine", concurrency_id="mine", concurrency_limit=1)
    # the strings are shown when the tab first opens, without a click (a small corpus mines in seconds)
    preview_event = ui.tab.select(vocab_preview, [ui.budget, ui.rounds, token], mined, api_visibility="private",
                                  concurrency_id="mine", concurrency_limit=1)
    ui.tok_text.submit(vocab_tokenise, [ui.tok_text, token], tokenised, api_name="tokenise")
    ui.tok_text.blur(vocab_tokenise, [ui.tok_text, token], tokenised, api_visibility="private")
    enrich_event = ui.enrich_btn.click(vocab_enrich, [ui.budget, ui.rounds, token], [ui.status, ui.rounds_plot, ft_base],
                                       api_name="enrich", concurrency_id="enrich", concurrency_limit=1)
    ui.stop.click(None, None, None, cancels=[mine_event, preview_event, enrich_event], api_visibility="private")
