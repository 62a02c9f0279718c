"""The app's Benchmark and Arena read the library's definitions: `tasc bench`'s measurement, the method
registry, the one answer-length bound.

The handlers run in-process on the tiny model (no server); the CLI side calls `run_bench` exactly as
`tasc/commands/bench.py` does (`--corpus-split train --prompts-split heldout --shots 1`).
"""

from __future__ import annotations

import re

import pytest

from studio import app_state, tab_arena, tab_corpus
from studio.app_state import ASSETS, heldout_inputs

EXAMPLE = "weather_reports.jsonl"
N_PROMPTS, MAX_NEW, SHOTS = 3, 16, 1


@pytest.fixture
def app_on_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    """The app's store and pool on the tiny model, fresh for this test."""
    monkeypatch.setenv("TASC_APP_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("TASC_APP_CACHE", str(tmp_path / "app_cache"))
    # No background task model: its fine-tune would load models on the app's model thread while the test's
    # own thread loads one for the CLI bench (transformers' loading patches torch's init functions process-wide).
    monkeypatch.setenv("TASC_APP_TASK_MODEL", "off")
    app_state.store.cache_clear()
    app_state.pool.cache_clear()
    yield
    app_state.store().close()
    app_state.store.cache_clear()
    app_state.pool.cache_clear()


def cli_bench(model_dir, n: int) -> dict:
    """`tasc bench` on the example: train split as the corpus, held-out split as the prompts."""
    from tasc.bench.bench import BenchConfig, run_bench
    from tasc.core.corpus import load_corpus, references_by_input, select_split
    from tasc.core.models import load_model
    from tasc.methods import DEFAULT_BENCH_METHODS
    from tasc.spec.decode import DecodeConfig

    corpus = select_split(load_corpus(ASSETS / EXAMPLE), "train", tab_corpus.HELDOUT_FRACTION, tab_corpus.HELDOUT_SEED)
    prompts = select_split(load_corpus(ASSETS / EXAMPLE), "heldout", tab_corpus.HELDOUT_FRACTION, tab_corpus.HELDOUT_SEED)
    refs = references_by_input(prompts)
    inputs = list(refs)[:n]
    config = BenchConfig(methods=DEFAULT_BENCH_METHODS, decode=DecodeConfig(MAX_NEW), warmup=1).check()
    lm = load_model(str(model_dir))
    lm.prompt_format = lm.prompt_format.with_shots(corpus.pairs()[:SHOTS])
    report = run_bench(lm, inputs, corpus.outputs, config, references=[refs[i] for i in inputs],
                       corpus_inputs=corpus.inputs)
    report["prompts"] = inputs
    return report


def test_app_benchmark_matches_the_cli_benchmark(app_on_tiny_model, tiny_model_dir):
    token = tab_corpus.use_example(EXAMPLE, None, None)[0]
    *_, (status, table, plot) = tab_arena.run_benchmark(N_PROMPTS, MAX_NEW, SHOTS, "base", token, None)
    assert status.startswith(f"Done: {N_PROMPTS} held-out prompts")
    session = app_state.store().get(token)
    app_report = session.jobs["bench"].result

    cli_report = cli_bench(tiny_model_dir, N_PROMPTS)
    assert heldout_inputs(session)[:N_PROMPTS] == cli_report["prompts"]  # the same held-out prompts
    assert app_report["neighbour_index"] and cli_report["neighbour_index"]  # both draft from similar inputs' rows
    app_spec, cli_spec = app_report["methods"]["tasc-spec"], cli_report["methods"]["tasc-spec"]
    assert app_spec["mean_accepted"] == cli_spec["mean_accepted"]
    assert app_spec["forward_passes"] == cli_spec["forward_passes"]
    assert app_spec["accepted_by_source"] == cli_spec["accepted_by_source"]
    assert list(table["method"]) == list(app_report["methods"])  # the table shows that report


def test_app_benchmark_refuses_a_bad_answer_length(app_on_tiny_model):
    import gradio as gr

    from tasc.spec.decode import MAX_NEW_TOKENS

    token = tab_corpus.use_example(EXAMPLE, None, None)[0]
    with pytest.raises(gr.Error, match=f"from 1 to {MAX_NEW_TOKENS}"):
        list(tab_arena.run_benchmark(N_PROMPTS, MAX_NEW_TOKENS + 1, SHOTS, "base", token, None))


def test_arena_takes_registry_names_and_the_library_bound(app_on_tiny_model):
    import gradio as gr

    from tasc.spec.decode import MAX_NEW_TOKENS

    token = tab_corpus.use_example(EXAMPLE, None, None)[0]
    with pytest.raises(gr.Error, match="Unknown method .*choose one of: tasc-spec, tasc-context, tasc-ft"):
        list(tab_arena.arena_run("hello", "TASC-spec (drafts from the corpus and the prompt)", None, 16, 0, None, token, None))
    with pytest.raises(gr.Error, match="Unknown method 'pld'"):  # a registry method the Arena does not race
        list(tab_arena.arena_run("hello", "pld", None, 16, 0, None, token, None))
    with pytest.raises(gr.Error, match=f"from 1 to {MAX_NEW_TOKENS}, got {MAX_NEW_TOKENS + 8}"):
        list(tab_arena.arena_run("hello", "tasc-spec", None, MAX_NEW_TOKENS + 8, 0, None, token, None))
    *_, final = tab_arena.arena_run("hello", "tasc-context", None, 8, 0, None, token, None)
    assert "identical output ✓" in final[4]


def test_arena_picker_offers_registry_methods_up_to_the_library_bound(monkeypatch):
    import gradio as gr

    import app
    from tasc.methods import arena_methods
    from tasc.spec.decode import MAX_NEW_TOKENS

    monkeypatch.delenv("TASC_APP_DRAFT_MODEL", raising=False)
    monkeypatch.delenv("TASC_APP_HYBRID_MODEL", raising=False)
    blocks = app.build_demo().blocks.values()
    (picker,) = [b for b in blocks if isinstance(b, gr.Dropdown) and b.label == "Right pane"]
    assert [tuple(c) for c in picker.choices] == [(m.label, m.name) for m in arena_methods(False, False, False)]
    assert picker.value == "tasc-spec"
    sliders = [b for b in blocks if isinstance(b, gr.Slider) and b.label == "Max new tokens"]
    assert [s.maximum for s in sliders] == [MAX_NEW_TOKENS]


def test_arena_races_on_llama_cpp(app_on_tiny_model, tmp_path, monkeypatch):
    """The Arena's engine choice: both panes on llama.cpp (the tiny model's f32 GGUF), same answer as PyTorch's."""
    import gradio as gr

    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -r requirements-llamacpp.txt")
    monkeypatch.setenv("TASC_HOME", str(tmp_path / "home"))
    app_state.llamacpp_engines.cache_clear()
    token = tab_corpus.use_example(EXAMPLE, None, None)[0]
    prompt = heldout_inputs(app_state.store().get(token))[0]
    *_, on_torch = tab_arena.arena_run(prompt, "tasc-spec", "base", 16, 0, "torch", token, None)
    *_, on_llama = tab_arena.arena_run(prompt, "tasc-spec", "base", 16, 0, "llamacpp", token, None)
    assert "identical output ✓" in on_llama[4] and "Engine: llama.cpp" in on_llama[4]
    # the answer's text, legend left out: drafts differ (the session learnt from the first race), answers not
    text = lambda pane: re.sub(r"<[^>]+>", "", re.sub(r'<div class="tasc-legend">.*?</div>', "", pane))  # noqa: E731
    assert text(on_llama[0]) == text(on_torch[0]) == text(on_llama[2]) == text(on_torch[2]) != ""
    assert len(list((tmp_path / "home" / "gguf").glob("*.gguf"))) == 1  # exported once
    with pytest.raises(gr.Error, match="engine must be"):
        list(tab_arena.arena_run(prompt, "tasc-spec", "base", 16, 0, "vllm", token, None))
    app_state.llamacpp_engines.cache_clear()


def test_a_race_says_it_started_then_stays_quiet_for_the_update_interval(app_on_tiny_model, monkeypatch):
    """The page hears of a race before its first pass, and no update follows within YIELD_EVERY_S: a short
    answer runs without the browser repainting beside it (only the final frame carries the verdict)."""
    monkeypatch.setattr(tab_arena, "YIELD_EVERY_S", 1e9)
    token = tab_corpus.use_example(EXAMPLE, None, None)[0]
    frames = list(tab_arena.arena_run("hello", "tasc-spec", "base", 16, 0, None, token, None))
    assert len(frames) == 2
    first, final = frames
    assert first[4] == "*generating…*" and "tk" not in first[0] and "tk" not in first[2]  # empty panes
    assert "identical output ✓" in final[4]


def test_a_race_behind_foreground_work_says_it_waits_for_the_model(app_on_tiny_model, monkeypatch):
    """While a benchmark holds the model thread a race cannot start: its first frame says why nothing moves."""
    from studio.foreground import FOREGROUND

    monkeypatch.setattr(tab_arena, "YIELD_EVERY_S", 1e9)
    token = tab_corpus.use_example(EXAMPLE, None, None)[0]
    race = tab_arena.arena_run("hello", "tasc-spec", "base", 16, 0, None, token, None)
    with FOREGROUND.running(settle_s=0):  # as a running benchmark does
        waiting = next(race)
    assert "Waiting for the model" in waiting[4]
    frames = list(race)
    assert frames[0][4] == "*generating…*" and "identical output ✓" in frames[-1][4]
