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
from typing import TYPE_CHECKING, Any, Generator, Iterator, Sequence

import gradio as gr

from studio.app_state import (
    MAX_PROMPT_CHARS,
    existing_session,
    follow_to_end,
    generation_limit,
    gpu,
    heldout_inputs,
    llamacpp_available,
    llamacpp_engines,
    pool,
    require_corpus,
    session_for,
    user_errors,
)
from studio.indexes import corpus_index_for, sample_note
from studio.model_thread import MODEL_THREAD
from tasc.core.corpus import check_text
from tasc.methods import (
    DEFAULT_BENCH_METHODS,
    DRAFT_MODEL_DIR,
    FT,
    HYBRID,
    HYBRID_DIR,
    LLAMACPP,
    LOOP,
    METHODS,
    TORCH,
    Method,
    Resources,
)

if TYPE_CHECKING:
    from tasc.spec.decode import Step

ARENA_HELP = """\
**4. Race them.** The same prompt is answered twice by the same model: on the left by plain greedy decoding
(one token per forward pass), on the right by the method you pick. Text on a coloured background was
*drafted* and then accepted by the model in a single verification pass —
<span style="background:#cfe2fb">&nbsp;corpus&nbsp;</span> drafted from the task corpus,
<span style="background:#cdeed8">&nbsp;context&nbsp;</span> copied from the prompt or the answer so far,
<span style="background:#e8d8f3">&nbsp;draft-model&nbsp;</span> drafted by a trained draft model; plain text
was written by the model itself. TASC-spec only skips forward passes, so its answer is *identical* to plain
greedy's. The model: the **task model** (fine-tuned on the corpus by itself in the background, see the Corpus
tab) once it is ready, else the base model shown a few examples.
"""
BENCH_HELP = ("Times plain greedy (transformers and our loop), transformers' prompt lookup (`pld`) and "
              "TASC-spec on the same held-out prompts, in the same run (`python -m tasc bench`).")
DEFAULT_METHOD = "tasc-spec"
# The Arena streams at most this often. The browser that renders each update shares the machine's cores
# with the model: measured on 2 cores (scripts/demo_timing.py), 20 updates a second cost ~40% of the
# decoding speed, 4 a second ~30%, 2 a second 11-20%.
YIELD_EVERY_S = 0.5
# Where both panes run: PyTorch (transformers), or llama.cpp on the model's f32 GGUF (when llama-cpp-python is installed)
ENGINE_CHOICES = [("PyTorch (transformers)", TORCH), ("llama.cpp (GGUF f32)", LLAMACPP)]
BASE, TASK = "base", "task"  # the model picker's values besides the session's fine-tuned models' labels
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
    tuned = has_task_model(session) or bool(session is not None and session.models_of("finetuned"))
    return arena_methods(has_finetuned=tuned,
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


def has_task_model(session) -> bool:
    """Whether the session's corpus has a task model ready (`studio.task_model`)."""
    from studio import task_model

    return session is not None and task_model.ready_path(session) is not None


def model_choices(session) -> list[tuple[str, str]]:
    """(label, value) of the models the Arena can answer with: the task model once ready, the base model,
    this session's fine-tuned models."""
    choices = [("task model (LoRA fine-tuned on the corpus)", TASK)] if has_task_model(session) else []
    choices.append(("base model (shown examples)", BASE))
    choices += [(m.label, m.label) for m in (session.models_of("finetuned") if session is not None else [])]
    return choices


def default_model(session) -> str:
    """The task model once it is ready, else the base model."""
    return TASK if has_task_model(session) else BASE


def model_named(session, choice: str | None):
    """The loaded model a picker value names (None or "": `default_model`); gr.Error listing the valid ones."""
    from studio import task_model

    choice = choice or default_model(session)
    if choice == BASE:
        return pool().get()
    if choice == TASK:
        path = task_model.ready_path(session)
        if path is None:
            raise gr.Error("The task model is not ready yet (see the Corpus tab); the base model is.")
        return pool().get(str(path))
    models = {m.label: m for m in session.models_of("finetuned")}
    if choice not in models:
        valid = [value for _, value in model_choices(session)]
        raise gr.Error(f"Unknown model {choice!r}; choose one of: {', '.join(valid)}")
    return pool().get(str(models[choice].path))


def model_title(session, choice: str | None) -> str:
    """How the verdict names a picker value."""
    choice = choice or default_model(session)
    return {TASK: "the task model (fine-tuned on this corpus)", BASE: "the base model, shown examples"}.get(choice, choice)


def race_models(session, method: Method, choice: str | None) -> tuple[Any, Any, str]:
    """(left model, right model, the right one's picker value): the chosen model on both sides; a
    fine-tuned-model method (TASC-ft) races a fine-tuned model (the chosen one, else the latest) against
    the base model's greedy."""
    if method.model != FT:
        choice = choice or default_model(session)
        lm = model_named(session, choice)
        return lm, lm, choice
    if choice in (None, "", BASE):
        tuned = [m.label for m in session.models_of("finetuned")]
        choice = tuned[-1] if tuned else TASK
        if choice == TASK and not has_task_model(session):
            raise gr.Error("No fine-tuned model yet: wait for the task model (Corpus tab) or train one in the Fine-tune tab.")
    return pool().get(), model_named(session, choice), choice


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
    """Tokens over time, latency per pass and tokens per pass of both panes, each titled with what it shows."""
    from tasc.bench.plots import acceptance_histogram, cumulative_tokens, step_latency

    left, right = lanes
    ls, rs = left.stats(), right.stats()
    if rs["seconds"] and ls["seconds"]:
        tokens_title = (f"{right.name}: {rs['tokens']} tokens in {rs['seconds']:.2f} s; "
                        f"{left.name}: {ls['tokens']} in {ls['seconds']:.2f} s")
    else:
        tokens_title = "Tokens over time"
    per_pass = {lane.name: lane.step_s[1:] for lane in lanes}  # [0] is the prefill (the prompt's pass)
    # every pass that wrote tokens, the prefill included (it verifies a first draft too), as the stats count them
    lengths: dict[str, Sequence[int]] = {lane.name: [k for k in lane.step_lengths if k] for lane in lanes}
    medians = [f"{name} {1000 * sorted(v)[len(v) // 2]:.0f} ms" for name, v in per_pass.items() if v]
    latency_title = "Median pass: " + " · ".join(medians)
    means = [f"{name} {sum(v) / len(v):.1f}" for name, v in lengths.items() if v]
    hist_title = "Tokens per forward pass, mean: " + " · ".join(means)
    return (cumulative_tokens({lane.name: lane.timeline() for lane in lanes}, tokens_title),
            step_latency(per_pass, latency_title),
            acceptance_histogram(lengths, hist_title))


@dataclass
class Race:
    """Both panes of one Arena request, ready to run: their models and their Step streams."""

    method: Method
    models: tuple[Any, Any]  # (left, right): the chosen model twice, or the base model and a fine-tuned one
    streams: list[Generator[Step, None, None]]
    note: str = ""  # said under the verdict (e.g. that the corpus index is a sample)
    model: str = ""  # which model answered, for the verdict


def start_race(session, prompt: str, method: Method, choice: str | None, config: Any, shots: int,
               engine: str = TORCH) -> Race:
    """Plain greedy (left) and `method`'s Step stream (right) on `prompt`, with the models `race_models` picks,
    both on `engine` (TORCH or LLAMACPP)."""
    from tasc.methods import step_stream
    from tasc.spec.decode import speculative_steps

    if engine == LLAMACPP and method.engine != LOOP:
        raise gr.Error(f"{method.label} runs on PyTorch only; llama.cpp runs our verify loop's methods.")
    left_lm, right_lm, choice = race_models(session, method, choice)
    res = resources_for(session, method, right_lm)
    right_shots = 0 if method.engine == HYBRID else shots  # the hybrid learnt the prompt format without examples
    # Both panes reuse their model's cached prompt prefix (system turn, examples): the race stays fair.
    left_ids, left_prefix = encode_prompt(session, left_lm, prompt, shots)
    right_ids, right_prefix = encode_prompt(session, right_lm, prompt, right_shots)
    drafter = session_drafter(session, method, right_lm, res)
    which = (f"Left: the base model; right: {model_title(session, choice)}." if left_lm is not right_lm
             else f"Both panes: {model_title(session, choice)}.")
    if engine == LLAMACPP:
        from tasc.spec.llamacpp import llamacpp_steps

        res.llamacpp, res.loop_engine = llamacpp_engines().get(right_lm.name), LLAMACPP
        left_context = llamacpp_engines().get(left_lm.name).context_for("greedy")  # the right pane has its own
        left = llamacpp_steps(left_context, left_ids, None, config, left_lm.eos_token_id)
        which += " Engine: llama.cpp (f32 GGUF)."
    else:
        left = speculative_steps(left_lm.model, left_ids, None, config, left_lm.eos_token_id, left_prefix)
    streams = [left, step_stream(method, res, right_ids, config, right_prefix, drafter)]
    return Race(method, (left_lm, right_lm), streams, sample_note(res.index), which)


def session_drafter(session, method: Method, lm, res: Resources) -> Any:
    """A new drafter for `method` on `lm` that carries on the acceptance statistics and the answer history of this
    session's earlier races (as the benchmark's drafter does across prompts); None outside our loop (those build their own).

    Only the statistics are kept, never the drafter: it holds a corpus index, whose memory the shared index
    cache bounds (`studio.indexes`)."""
    from tasc.methods import LOOP, build_drafter
    from tasc.spec.drafts import TascDrafter

    if method.engine != LOOP:
        return None
    drafter = build_drafter(method, res)
    if isinstance(drafter, TascDrafter):  # TASC's mixer; plain and draft-model drafters learn nothing across answers
        with session.lock:
            drafter.acceptance = session.acceptance.setdefault((method.name, lm.name), drafter.acceptance)
            if drafter.history is not None:
                drafter.history = session.answers.setdefault((method.name, lm.name), drafter.history)
    return drafter


def pane_html(lane, lm) -> str:
    """A pane's answer as continuous HTML text (`studio.highlight.answer_html`)."""
    from studio.highlight import answer_html

    return answer_html(lane.token_pieces(lm.tokenizer, [lm.eos_token_id]))


def advance(steps: Iterator[Any], budget_s: float) -> bool:
    """Run `steps` for about `budget_s` seconds (at least one step); True once it is exhausted."""
    t0 = time.perf_counter()
    for _ in steps:
        if time.perf_counter() - t0 >= budget_s:
            return False
    return True


def close_streams(streams: Sequence[Iterator[Any]]) -> None:
    """Close the step streams: frees their KV caches now, also when the client went away mid-stream."""
    for s in streams:
        s.close()  # type: ignore[attr-defined]


def run_race(race: Race) -> Iterator[tuple[Any, ...]]:
    """Stream both panes (at most every YIELD_EVERY_S), then the verdict and the plots; frees the caches at the end.

    The passes run on the app's model thread (`studio.model_thread`), YIELD_EVERY_S at a time, while this
    handler's thread sends the panes; background training parks while the race runs (`studio.foreground`):
    the race is timed alone.
    """
    from studio.arena import Lane
    from studio.arena import race as interleave
    from studio.foreground import FOREGROUND

    def panes(lanes) -> tuple[Any, ...]:
        return tuple(x for lane, lm in zip(lanes, race.models, strict=True) for x in (pane_html(lane, lm), lane_stats(lane)))

    lanes = [Lane("plain greedy"), Lane(race.method.label.split(" (")[0])]  # the method's short name
    run_id = secrets.token_hex(6)
    ACTIVE_GENERATIONS[run_id] = time.time()
    try:
        with FOREGROUND.running():
            # The page learns that the race started before the first pass, and then hears nothing for
            # YIELD_EVERY_S: a short answer (TASC-spec writes 36 tokens in ~0.2 s) runs without the browser
            # repainting beside it on the same cores.
            yield *panes(lanes), "*generating…*", gr.skip(), gr.skip(), gr.skip()
            steps = interleave(lanes, race.streams)  # the lanes advance in place
            while not MODEL_THREAD.call(advance, steps, YIELD_EVERY_S):
                yield *panes(lanes), "*generating…*", gr.skip(), gr.skip(), gr.skip()
        said = "\n\n".join(x for x in (verdict(lanes, race.method), race.model, race.note) if x)
        yield *panes(lanes), said, *arena_plots(lanes)
    finally:
        MODEL_THREAD.call(close_streams, race.streams)
        ACTIVE_GENERATIONS.pop(run_id, None)


@gpu(duration=120)
@user_errors
def arena_run(prompt: str, method: str, model: str | None, max_new_tokens: float, shots: float,
              engine: str | None, token: str | None, request: gr.Request):
    """Stream plain greedy (left) and the chosen method (right) on one prompt, step by step.

    `method` is a registry name ("tasc-spec", "tasc-context", "tasc-ft", "tasc-ft+spec", "draft-model",
    "draft-model+tasc", "hybrid"); the picker shows their labels. `model` is "task" (the corpus's task
    model), "base" (the base model, shown `shots` examples) or a fine-tuned model's label; None: the task
    model once it is ready, else the base model. `engine`: "torch" (default) or "llamacpp" (both panes on
    llama.cpp; our loop's methods only, when llama-cpp-python is installed).
    """
    from tasc.spec.decode import DecodeConfig

    prompt = check_text(prompt if prompt is not None else "", "The prompt").strip()  # before any session state
    if not prompt:
        raise gr.Error("Type a prompt, or pick one of the held-out inputs.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise gr.Error(f"The prompt has {len(prompt):,} characters; the Arena takes at most {MAX_PROMPT_CHARS:,}.")
    if model is not None and not isinstance(model, str):
        raise gr.Error(f"The model must be named by its label (text), got {type(model).__name__}.")
    engine = engine or TORCH
    if engine not in (TORCH, LLAMACPP):
        raise gr.Error(f"The engine must be {TORCH!r} or {LLAMACPP!r}, got {str(engine)[:40]!r}.")
    if engine == LLAMACPP and not llamacpp_available():
        raise gr.Error("llama.cpp is not installed on this server (pip install -r requirements-llamacpp.txt).")
    chosen = arena_method(method)
    session = session_for(token, request)
    if chosen.needs_corpus:
        require_corpus(session)
    config = DecodeConfig(max_new_tokens=int(max_new_tokens)).check()  # its ValueError is the user's message
    from studio.foreground import FOREGROUND

    if FOREGROUND.busy:  # a benchmark (or another race) holds the model thread: say why nothing moves yet
        yield (gr.skip(),) * 4 + ("*Waiting for the model: a benchmark or another race is running on this server…*",) \
            + (gr.skip(),) * 3
    race = MODEL_THREAD.call(start_race, session, prompt, chosen, model, config, int(shots), engine)  # loads, prefills
    yield from run_race(race)


def model_update(session, current: str | None = None) -> Any:
    """The model picker as this session's models allow, keeping `current` while it is still offered."""
    choices = model_choices(session)
    value = current if current in [v for _, v in choices] else default_model(session)
    return gr.update(choices=choices, value=value)


def refresh_arena(current_model: str | None, token: str | None, request: gr.Request):
    """Arena selectors as this session's models allow (on entering the tab)."""
    session = existing_session(token, request)
    return gr.update(choices=method_choices(session)), model_update(session, current_model)


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


def bench_model(session, lm, shots: int):
    """The Arena's model `lm` for the benchmark: the base model's prompt format shows `shots` training examples
    first (as `tasc bench --shots`)."""
    fmt = prompt_format(session, lm, shots)
    return lm if fmt is lm.prompt_format else dataclasses.replace(lm, prompt_format=fmt)


def bench_config(max_new_tokens: int) -> Any:
    """The app's benchmark: the default methods (`tasc.methods.DEFAULT_BENCH_METHODS`), one warm-up prompt."""
    from tasc.bench.bench import BenchConfig
    from tasc.spec.decode import DecodeConfig

    return BenchConfig(methods=DEFAULT_BENCH_METHODS, decode=DecodeConfig(max_new_tokens), warmup=1).check()


@gpu(duration=300)
@user_errors
def run_benchmark(n_prompts: float, max_new_tokens: float, shots: float, model: str | None, token: str | None,
                  request: gr.Request, progress=gr.Progress()):  # noqa: B008  (Gradio injects it)
    """Benchmark greedy, prompt lookup and TASC-spec on held-out prompts (tasc.bench.bench) with a progress bar.

    It runs on the Arena's model (`model`: see `arena_run`). TASC-spec drafts from the training rows'
    outputs and, by their inputs, from the rows most like each prompt: the same drafter as the Arena's and
    `tasc bench`'s. Background training pauses while it runs.
    """
    from studio.foreground import in_foreground
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
    arena_lm = model_named(session, model)
    rows = corpus_index_for(session, arena_lm).rows  # the Arena's index: its budget and sample
    if rows is not None:
        train = train.subset(rows)
    bench = in_foreground(MODEL_THREAD.serving_at_reports(run_bench))  # races run between two prompts
    job = start_job("bench", bench, bench_model(session, arena_lm, int(shots)), prompts, train.outputs, config,
                    corpus_inputs=train.inputs, slot="bench", runner=functools.partial(MODEL_THREAD.run_job, urgent=True))
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
    model: gr.Dropdown
    max_new: gr.Slider
    shots: gr.Slider
    engine: gr.Dropdown
    run_btn: gr.Button
    stop_btn: gr.Button
    outputs: list[Any]  # left, left stats, right, right stats, verdict, three plots: what `arena_run` yields
    boundaries: gr.Checkbox
    bench_n: gr.Slider
    bench_btn: gr.Button
    bench_stop: gr.Button
    bench_outputs: list[Any]  # status, table, plot: what `run_benchmark` yields


def _request_rows() -> tuple[gr.Textbox, gr.Dropdown, gr.Dropdown, gr.Dropdown, gr.Slider, gr.Slider,
                            gr.Dropdown, gr.Button, gr.Button]:
    """Prompt, held-out picker, method, fine-tuned model, max new tokens, shots, engine, Run and Stop."""
    from tasc.spec.decode import MAX_NEW_TOKENS

    with gr.Row():
        prompt = gr.Textbox(label="Prompt", lines=2, scale=3, max_length=MAX_PROMPT_CHARS,
                            placeholder="type a task input, or pick a held-out one")
        heldout = gr.Dropdown([], label="Held-out inputs of the corpus", scale=2)
    with gr.Row():
        method = gr.Dropdown(method_choices(None), value=DEFAULT_METHOD, label="Right pane", scale=2,
                             allow_custom_value=True)  # API clients may name any method; the handler checks
        model = gr.Dropdown(model_choices(None), value=BASE, label="Model (both panes)", scale=2,
                            allow_custom_value=True, elem_id="arena-model")
        max_new = gr.Slider(8, MAX_NEW_TOKENS, value=96, step=8, label="Max new tokens", scale=1, elem_id="arena-max-new")
        shots = gr.Slider(0, 4, value=2, step=1, label="Examples in the prompt", scale=1,
                          info="task examples shown to the base model first")
        engine = gr.Dropdown(ENGINE_CHOICES, value=TORCH, label="Engine (both panes)", scale=1, elem_id="arena-engine",
                             visible=llamacpp_available(), allow_custom_value=True)  # the handler checks
    with gr.Row():
        run_btn = gr.Button("Run", variant="primary")
        stop_btn = gr.Button("Stop", variant="stop")
    return prompt, heldout, method, model, max_new, shots, engine, run_btn, stop_btn


def _race_outputs() -> tuple[list[Any], gr.Checkbox]:
    """The two panes with their figures, the verdict and the three plots; the token-boundaries switch."""
    from studio.highlight import PANES_ID

    panes: list[gr.HTML | gr.Markdown] = []
    with gr.Row(equal_height=True, elem_id=PANES_ID):
        for side, label in (("left", "**Plain greedy** — one token per forward pass"),
                            ("right", "**The chosen method** — drafts verified in one pass")):
            with gr.Column():
                gr.Markdown(label)
                panes.append(gr.HTML("", elem_id=f"pane-{side}", js_on_load=None, min_height=80))
                panes.append(gr.Markdown(elem_id=f"stats-{side}"))
    boundaries = gr.Checkbox(False, label="Show token boundaries", elem_id="show-tokens", container=False)
    verdict_md = gr.Markdown(elem_id="verdict")
    with gr.Row():
        plots = [gr.Plot(label="Tokens over time", elem_id="plot-tokens"),
                 gr.Plot(label="Latency per forward pass", elem_id="plot-latency")]
    plots.append(gr.Plot(label="Tokens per forward pass", elem_id="plot-hist"))
    return [*panes, verdict_md, *plots], boundaries


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
        outputs, boundaries = _race_outputs()
        bench = _benchmark()
    return ArenaTab(tab, *request, outputs, boundaries, *bench)


def wire(ui: ArenaTab, token: gr.State) -> None:
    """The Arena tab's listeners: Run/Stop, the benchmark's Run/Stop, the method picker refreshed on entry."""
    from studio.highlight import PANES_ID

    # No progress overlay: its animated timer on every output repaints the page many times a second, and
    # the browser's rendering took ~40% of the model's cores on a 2-core machine; the verdict says "generating…"
    arena_event = ui.run_btn.click(
        arena_run, [ui.prompt, ui.method, ui.model, ui.max_new, ui.shots, ui.engine, token], ui.outputs,
        api_name="arena", concurrency_id="generate", concurrency_limit=generation_limit(), show_progress="hidden")
    ui.stop_btn.click(None, None, None, cancels=[arena_event], api_visibility="private")
    ui.tab.select(refresh_arena, [ui.model, token], [ui.method, ui.model], api_visibility="private")
    # drawn by the page alone (studio.highlight.ANSWER_CSS): no request, nothing re-rendered
    ui.boundaries.change(None, [ui.boundaries], None, api_visibility="private",
                         js=f"(on) => {{ document.getElementById('{PANES_ID}')?.classList.toggle('show-tokens', on); }}")
    bench_event = ui.bench_btn.click(
        run_benchmark, [ui.bench_n, ui.max_new, ui.shots, ui.model, token], ui.bench_outputs,
        api_name="benchmark", concurrency_id="bench", concurrency_limit=1)
    ui.bench_stop.click(None, None, None, cancels=[bench_event], api_visibility="private")
