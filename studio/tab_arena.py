"""The Arena tab: plain greedy (left) against a method of the registry (right) on one prompt, streamed
step by step; and the benchmark on held-out prompts (`tasc.bench.bench.run_bench`).

What a method name means (which model answers, where its drafts come from, whether its answer must
equal greedy's) is `tasc.methods`' to say; this module only loads what a method needs for this
session and shows the race. `build()` lays the tab out, `wire()` attaches its listeners; the handlers
are module-level functions.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generator, Iterator

import gradio as gr

from studio.app_state import (
    MAX_PROMPT_CHARS,
    existing_session,
    follow_to_end,
    generation_limit,
    gpu,
    heldout_inputs,
    pool,
    require_corpus,
    session_for,
    user_errors,
)
from studio.indexes import corpus_index_for, sample_note
from tasc.core.corpus import check_text
from tasc.methods import DEFAULT_BENCH_METHODS, DRAFT_MODEL_DIR, FT, HYBRID, HYBRID_DIR, METHODS, Method, Resources

if TYPE_CHECKING:
    from tasc.spec.decode import Step

ARENA_HELP = """\
**4. Race them.** The same prompt is answered twice: on the left by plain greedy decoding (one token per
forward pass), on the right by the method you pick. Highlighted text was *drafted* and then accepted by
the model in a single verification pass — <span style="color:#2f80ed">■</span> **corpus**: drafted from
the task corpus; <span style="color:#27ae60">■</span> **context**: copied from the prompt or the answer so
far; <span style="color:#9b59b6">■</span> **draft-model**: drafted by a trained draft model; plain text:
written by the model itself. TASC-spec only skips forward passes, so with the same model its answer is
*identical* to plain greedy.
"""
BENCH_HELP = ("Times plain greedy (transformers and our loop), transformers' prompt lookup (`pld`) and "
              "TASC-spec on the same held-out prompts, in the same run (`python -m tasc bench`).")
DEFAULT_METHOD = "tasc-spec"
# corpus/context as tasc.bench.plots; "draft-model" too: a session can train one in the Fine-tune tab
SOURCE_COLOURS = {"corpus": "#2f80ed", "context": "#27ae60", "draft-model": "#9b59b6"}
YIELD_EVERY_S = 0.05  # the Arena streams at most this often (every step would flood the socket)
ACTIVE_GENERATIONS: dict[str, float] = {}  # Arena runs in flight (id -> start time); tests check it drains
NO_DRAFT_MODEL = ("No draft model: train one in the Fine-tune tab (Comparison models), or start the app "
                  "with TASC_APP_DRAFT_MODEL=DIR (from tasc train-draft).")
NO_HYBRID = ("No hybrid model: train one in the Fine-tune tab (Comparison models), or start the app "
             "with TASC_APP_HYBRID_MODEL=DIR (from tasc train-hybrid).")


# --------------------------------------------------------------------------------------------
# Handlers: what the right pane may run, and what it runs on
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
    from tasc.compare.draft_model import load_draft_model

    return load_draft_model(path, pool().get())


@functools.lru_cache(maxsize=4)
def shared_hybrid(path: str) -> Any:
    """The trained hybrid (projector + decoder), loaded once."""
    from tasc.compare.hybrid import HybridModel

    return HybridModel.load(path, pool().get())


def offered_methods(session) -> list[Method]:
    """Right-pane methods on offer (`tasc.methods.arena_methods`): the fine-tuned ones once this session has a
    fine-tuned model, the draft-model and hybrid ones when such a model is at hand."""
    from tasc.methods import arena_methods

    trained = trained_dirs(session)
    return arena_methods(has_finetuned=bool(session is not None and session.models_of("finetuned")),
                         has_draft_model="draft" in trained, has_hybrid="hybrid" in trained)


def method_choices(session) -> list[tuple[str, str]]:
    """(label, name) of the offered methods, for the method picker."""
    return [(m.label, m.name) for m in offered_methods(session)]


def arena_method(name: str) -> Method:
    """The Arena method called `name` (a registry name such as "tasc-spec"); gr.Error listing the valid ones."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None or not method.arena:
        valid = [m.name for m in METHODS.values() if m.arena]
        raise gr.Error(f"Unknown method {name!r}; choose one of: {', '.join(valid)}")
    return method


def right_model(session, method: Method, ft_model: str | None):
    """The model that answers in the right pane: the base model, or the chosen fine-tuned one (FT methods)."""
    if method.model != FT:
        return pool().get()
    models = {m.label: m for m in session.models_of("finetuned")}
    if not models:
        raise gr.Error("No fine-tuned model in this session yet: train one in the Fine-tune tab.")
    chosen = models.get(ft_model) or list(models.values())[-1]
    return pool().get(str(chosen.path))


def resources_for(session, method: Method, lm) -> Resources:
    """What `method` runs on for this session: its corpus index, the shared draft model or hybrid."""
    trained = trained_dirs(session)
    if method.needs == DRAFT_MODEL_DIR and "draft" not in trained:
        raise gr.Error(NO_DRAFT_MODEL)
    if method.needs == HYBRID_DIR and "hybrid" not in trained:
        raise gr.Error(NO_HYBRID)
    return Resources(lm, index=corpus_index_for(session, lm) if method.needs_corpus else None,
                     draft_model=shared_draft_model(trained["draft"]) if method.needs == DRAFT_MODEL_DIR else None,
                     hybrid=shared_hybrid(trained["hybrid"]) if method.needs == HYBRID_DIR else None)


def prompt_format(session, lm, shots: int) -> Any:
    """A model's prompt format: a fine-tuned model uses its stored one; the base model may get examples."""
    fmt = lm.prompt_format
    if shots and "finetune" not in lm.meta and session.train is not None and session.train.inputs is not None:
        fmt = fmt.with_shots(session.train.pairs()[:shots])
    return fmt


def encode_prompt(session, lm, prompt: str, shots: int) -> tuple[list[int], Any]:
    """Prompt ids for a model in its format (`prompt_format`), and the model's cached states of what
    every prompt in that format starts with (system turn, examples)."""
    from tasc.spec.decode import shared_prefix_cache

    fmt = prompt_format(session, lm, shots)
    return fmt.prompt_ids(lm.tokenizer, prompt), shared_prefix_cache(lm.model, fmt.shared_prefix_ids(lm.tokenizer))


# --------------------------------------------------------------------------------------------
# Handlers: the race
# --------------------------------------------------------------------------------------------
def lane_stats(lane, seconds_label: str = "s") -> str:
    """One pane's figures as a Markdown line."""
    st = lane.stats()
    acc = lane.accepted_by_source()
    accepted = ", ".join(f"{n} {src}" for src, n in sorted(acc.items())) or "none"
    return (f"**{st['tokens']} tokens** in {st['seconds']:.2f} {seconds_label} · **{st['tokens_per_s']:.1f} tokens/s** · "
            f"{st['passes']} forward passes · **{st['tokens_per_pass']:.2f} tokens per pass** · accepted drafts: {accepted}")


def verdict(lanes, method: Method) -> str:
    """Whether both panes wrote the same answer (`tasc.methods.same_answer_expected`), and how much faster the right one was."""
    from tasc.methods import same_answer_expected

    lossless, why = same_answer_expected(method)
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


def arena_plots(lanes):
    """Cumulative tokens over time, latency per pass, and tokens per pass, for both panes."""
    from tasc.bench.plots import acceptance_histogram, cumulative_tokens, step_latency

    return (cumulative_tokens({lane.name: lane.timeline() for lane in lanes}),
            step_latency({lane.name: lane.step_s[1:] for lane in lanes}),  # [0] is the prefill
            acceptance_histogram({lane.name: lane.step_lengths[1:] for lane in lanes}))


@dataclass
class Race:
    """Both panes of one Arena request, ready to run: their models and their Step streams."""

    method: Method
    models: tuple[Any, Any]  # (left: the base model, right: the model `method` answers with)
    streams: list[Generator[Step, None, None]]
    note: str = ""  # said under the verdict (e.g. that the corpus index is a sample)


def start_race(session, prompt: str, method: Method, ft_model: str | None, config: Any, shots: int) -> Race:
    """Plain greedy on the base model (left) and `method`'s Step stream (right), both on `prompt`."""
    from tasc.methods import step_stream
    from tasc.spec.decode import speculative_steps

    base = pool().get()
    right_lm = right_model(session, method, ft_model)
    res = resources_for(session, method, right_lm)
    right_shots = 0 if method.engine == HYBRID else shots  # the hybrid learnt the prompt format without examples
    # Both panes reuse their model's cached prompt prefix (system turn, examples): the race stays fair.
    left_ids, left_prefix = encode_prompt(session, base, prompt, shots)
    right_ids, right_prefix = encode_prompt(session, right_lm, prompt, right_shots)
    streams = [speculative_steps(base.model, left_ids, None, config, base.eos_token_id, left_prefix),
               step_stream(method, res, right_ids, config, right_prefix)]
    return Race(method, (base, right_lm), streams, sample_note(res.index))


def run_race(race: Race) -> Iterator[tuple[Any, ...]]:
    """Stream both panes (at most every YIELD_EVERY_S), then the verdict and the plots; frees the caches at the end."""
    from studio.arena import Lane
    from studio.arena import race as interleave

    def panes(lanes) -> tuple[Any, ...]:
        return tuple(x for lane, lm in zip(lanes, race.models, strict=True)
                     for x in (lane.spans(lm.tokenizer, [lm.eos_token_id]), lane_stats(lane)))

    lanes = [Lane("plain greedy"), Lane(race.method.label.split(" (")[0])]  # the method's short name
    run_id = secrets.token_hex(6)
    ACTIVE_GENERATIONS[run_id] = time.time()
    try:
        last = 0.0
        for _ in interleave(lanes, race.streams):  # the lanes advance in place
            if time.perf_counter() - last >= YIELD_EVERY_S:
                last = time.perf_counter()
                yield *panes(lanes), "*generating…*", gr.skip(), gr.skip(), gr.skip()
        said = verdict(lanes, race.method) + (f"\n\n{race.note}" if race.note else "")
        yield *panes(lanes), said, *arena_plots(lanes)
    finally:
        for s in race.streams:
            s.close()  # frees the KV caches now, also when the client went away mid-stream
        ACTIVE_GENERATIONS.pop(run_id, None)


@gpu(duration=120)
@user_errors
def arena_run(prompt: str, method: str, ft_model: str | None, max_new_tokens: float, shots: float,
              token: str | None, request: gr.Request):
    """Stream plain greedy (left) and the chosen method (right) on one prompt, step by step.

    `method` is a registry name ("tasc-spec", "tasc-context", "tasc-ft", "tasc-ft+spec", "draft-model",
    "draft-model+tasc", "hybrid"); the picker shows their labels.
    """
    from tasc.spec.decode import DecodeConfig

    prompt = check_text(prompt if prompt is not None else "", "The prompt").strip()  # before any session state
    if not prompt:
        raise gr.Error("Type a prompt, or pick one of the held-out inputs.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise gr.Error(f"The prompt has {len(prompt):,} characters; the Arena takes at most {MAX_PROMPT_CHARS:,}.")
    if ft_model is not None and not isinstance(ft_model, str):
        raise gr.Error(f"The fine-tuned model must be named by its label (text), got {type(ft_model).__name__}.")
    chosen = arena_method(method)
    session = session_for(token, request)
    if chosen.needs_corpus:
        require_corpus(session)
    config = DecodeConfig(max_new_tokens=int(max_new_tokens)).check()  # its ValueError is the user's message
    yield from run_race(start_race(session, prompt, chosen, ft_model, config, int(shots)))


def refresh_arena(token: str | None, request: gr.Request):
    """Arena selectors as this session's models allow (on entering the tab)."""
    session = existing_session(token, request)
    models = [m.label for m in session.models_of("finetuned")] if session else []
    return (gr.update(choices=method_choices(session)),
            gr.update(choices=models, value=models[-1] if models else None, visible=bool(models)))


# --------------------------------------------------------------------------------------------
# Handlers: the benchmark
# --------------------------------------------------------------------------------------------
def bench_table(report: dict[str, Any]):
    """The benchmark report as a DataFrame, one row per method."""
    import pandas as pd

    rows = []
    for name, f in report["methods"].items():
        rows.append({"method": name, "tokens/s": f["tokens_per_s"], "speed-up vs greedy": f["speedup"],
                     "tokens per pass": f["mean_accepted"], "forward passes": f["forward_passes"],
                     "identical to greedy": f"{f['identical_to_greedy']:.0%}"})
    return pd.DataFrame(rows)


def bench_model(session, shots: int):
    """The base model, its prompt format showing `shots` training examples first (as `tasc bench --shots`)."""
    base = pool().get()
    if shots and session.train.inputs is not None:
        return dataclasses.replace(base, prompt_format=base.prompt_format.with_shots(session.train.pairs()[:shots]))
    return base


def bench_config(max_new_tokens: int) -> Any:
    """The app's benchmark: the default methods (`tasc.methods.DEFAULT_BENCH_METHODS`), one warm-up prompt."""
    from tasc.bench.bench import BenchConfig
    from tasc.spec.decode import DecodeConfig

    return BenchConfig(methods=DEFAULT_BENCH_METHODS, decode=DecodeConfig(max_new_tokens), warmup=1).check()


@gpu(duration=300)
@user_errors
def run_benchmark(n_prompts: float, max_new_tokens: float, shots: float, token: str | None,
                  request: gr.Request, progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """Benchmark greedy, prompt lookup and TASC-spec on held-out prompts (tasc.bench.bench) with a progress bar.

    TASC-spec drafts from the training rows' outputs and, by their inputs, from the rows most like each
    prompt: the same drafter as the Arena's and `tasc bench`'s.
    """
    from studio.jobs import start_job
    from tasc.bench.bench import run_bench
    from tasc.bench.plots import speedup_bars

    session = session_for(token, request)
    require_corpus(session)
    prompts = heldout_inputs(session)[: int(n_prompts)]
    if not prompts:
        raise gr.Error("This corpus has no held-out inputs to benchmark on (it needs an input column).")
    config = bench_config(int(max_new_tokens))
    train = session.train
    rows = corpus_index_for(session, pool().get()).rows  # the bench's index gets the Arena's budget and sample
    if rows is not None:
        train = train.subset(rows)
    job = start_job("bench", run_bench, bench_model(session, int(shots)), prompts, train.outputs, config,
                    corpus_inputs=train.inputs, slot="bench")
    session.jobs["bench"] = job

    def updates(j: Any) -> tuple[Any, ...]:
        p = j.latest
        if p is not None:
            progress((p.done, p.total), desc=f"benchmark: prompt {p.done}/{p.total}")
        return f"Running: {p.done if p else 0}/{len(prompts)} prompts (after a warm-up)…", gr.skip(), gr.skip()

    def done(report: dict[str, Any]) -> tuple[Any, ...]:
        return (f"Done: {report['n_prompts']} held-out prompts, up to {report['max_new_tokens']} new tokens each, "
                f"on {report['device']}.", bench_table(report), speedup_bars(report))

    yield from follow_to_end(job, updates, done, lambda: ("Benchmark stopped.", gr.skip(), gr.skip()), "benchmark")


# --------------------------------------------------------------------------------------------
# Layout and listeners
# --------------------------------------------------------------------------------------------
@dataclass
class ArenaTab:
    """The Arena tab's components (the benchmark's accordion included)."""

    tab: gr.Tab
    prompt: gr.Textbox
    heldout: gr.Dropdown
    method: gr.Dropdown
    ft_model: gr.Dropdown
    max_new: gr.Slider
    shots: gr.Slider
    run_btn: gr.Button
    stop_btn: gr.Button
    outputs: list[Any]  # left, left stats, right, right stats, verdict, three plots: what `arena_run` yields
    bench_n: gr.Slider
    bench_btn: gr.Button
    bench_stop: gr.Button
    bench_outputs: list[Any]  # status, table, plot: what `run_benchmark` yields


def _request_rows() -> tuple[gr.Textbox, gr.Dropdown, gr.Dropdown, gr.Dropdown, gr.Slider, gr.Slider,
                            gr.Button, gr.Button]:
    """Prompt, held-out picker, method, fine-tuned model, max new tokens, shots, Run and Stop."""
    from tasc.spec.decode import MAX_NEW_TOKENS

    with gr.Row():
        prompt = gr.Textbox(label="Prompt", lines=2, scale=3, max_length=MAX_PROMPT_CHARS,
                            placeholder="type a task input, or pick a held-out one")
        heldout = gr.Dropdown([], label="Held-out inputs of the corpus", scale=2)
    with gr.Row():
        method = gr.Dropdown(method_choices(None), value=DEFAULT_METHOD, label="Right pane", scale=2,
                             allow_custom_value=True)  # API clients may name any method; the handler checks
        ft_model = gr.Dropdown([], label="Fine-tuned model", visible=False, scale=2, allow_custom_value=True)
        max_new = gr.Slider(8, MAX_NEW_TOKENS, value=96, step=8, label="Max new tokens", scale=1)
        shots = gr.Slider(0, 4, value=2, step=1, label="Examples in the prompt", scale=1,
                          info="task examples shown to the base model first")
    with gr.Row():
        run_btn = gr.Button("Run", variant="primary")
        stop_btn = gr.Button("Stop", variant="stop")
    return prompt, heldout, method, ft_model, max_new, shots, run_btn, stop_btn


def _race_outputs() -> list[Any]:
    """The two panes with their figures, the verdict and the three plots."""
    panes: list[gr.HighlightedText | gr.Markdown] = []
    with gr.Row(equal_height=True):
        for side, label in (("left", "plain greedy"), ("right", "right pane: the chosen method")):
            with gr.Column():
                panes.append(gr.HighlightedText(label=label, color_map=dict(SOURCE_COLOURS), show_legend=True,
                                                combine_adjacent=True, elem_id=f"pane-{side}"))
                panes.append(gr.Markdown(elem_id=f"stats-{side}"))
    verdict_md = gr.Markdown(elem_id="verdict")
    with gr.Row():
        plots = [gr.Plot(label="Tokens over time", elem_id="plot-tokens"),
                 gr.Plot(label="Latency per forward pass", elem_id="plot-latency"),
                 gr.Plot(label="Tokens per forward pass", elem_id="plot-hist")]
    return [*panes, verdict_md, *plots]


def _benchmark() -> tuple[gr.Slider, gr.Button, gr.Button, list[Any]]:
    """The benchmark's accordion: (prompts slider, Run, Stop, [status, table, plot])."""
    with gr.Accordion("Benchmark on held-out prompts", open=False):
        gr.Markdown(BENCH_HELP)
        with gr.Row():
            n = gr.Slider(2, 50, value=8, step=1, label="Held-out prompts")
            run = gr.Button("Run benchmark", variant="primary")
            stop = gr.Button("Stop benchmark", variant="stop")
        outputs = [gr.Markdown(elem_id="bench-status"),
                   gr.Dataframe(label="Benchmark", interactive=False, elem_id="bench-table"),
                   gr.Plot(label="Speed-up over greedy", elem_id="bench-plot")]
    return n, run, stop, outputs


def build() -> ArenaTab:
    """The Arena tab (inside the app's Blocks)."""
    with gr.Tab("Arena") as tab:
        gr.Markdown(ARENA_HELP)
        request = _request_rows()
        outputs = _race_outputs()
        bench = _benchmark()
    return ArenaTab(tab, *request, outputs, *bench)


def wire(ui: ArenaTab, token: gr.State) -> None:
    """The Arena tab's listeners: Run/Stop, the benchmark's Run/Stop, the method picker refreshed on entry."""
    arena_event = ui.run_btn.click(
        arena_run, [ui.prompt, ui.method, ui.ft_model, ui.max_new, ui.shots, token], ui.outputs,
        api_name="arena", concurrency_id="generate", concurrency_limit=generation_limit())
    ui.stop_btn.click(None, None, None, cancels=[arena_event], api_visibility="private")
    ui.tab.select(refresh_arena, [token], [ui.method, ui.ft_model], api_visibility="private")
    bench_event = ui.bench_btn.click(
        run_benchmark, [ui.bench_n, ui.max_new, ui.shots, token], ui.bench_outputs,
        api_name="benchmark", concurrency_id="bench", concurrency_limit=1)
    ui.bench_stop.click(None, None, None, cancels=[bench_event], api_visibility="private")
