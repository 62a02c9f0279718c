"""The benchmark harness on a tiny model: every method answers, figures add up, greedy methods agree."""

from dataclasses import replace

import pytest

from tasc.bench import BenchConfig, format_table, overlap_warning, run_bench
from tasc.plots import write_bench_html


def test_bench_reports_every_method(tiny_lm, tmp_path):
    prompts = ["play some jazz", "weather in paris", "book a table", "play miles davis"]
    corpus = ['{"intent": "PlayMusic"}', '{"intent": "GetWeather"}'] * 5
    config = BenchConfig(methods=("greedy", "greedy-loop", "pld", "tasc-spec", "tasc-context"), max_new_tokens=12, warmup=1,
                         cost_curve=True)
    report = run_bench(tiny_lm, prompts, corpus, config)
    figures = report["methods"]
    assert set(figures) == {"greedy", "greedy-loop", "pld", "tasc-spec", "tasc-context"}
    assert report["n_prompts"] == 4
    for name, fig in figures.items():
        assert fig["identical_to_greedy"] == 1.0, name  # all methods here are lossless
        assert fig["new_tokens"] == figures["greedy"]["new_tokens"]
        assert fig["forward_passes"] >= 1 and fig["wall_s"] > 0
        assert fig["speedup"] > 0 and "speedup_vs_pld" in fig
    assert figures["greedy-loop"]["mean_accepted"] == 1.0
    assert report["prefix_cache_tokens"]["model"] > 0  # the shared system line and "Input:" were run once
    curve = report["verify_costs"]["model"]  # measured before timing; the TASC methods' drafts were cut by it
    assert len(curve) == 33 and curve[0] == 1.0 and report["cost_curve_s"] > 0
    assert max(figures["greedy"]["speedup"], figures["greedy-loop"]["speedup"]) == pytest.approx(1.0, abs=1e-3)
    table = format_table(report)
    assert "tasc-spec" in table and "identical" in table
    html = write_bench_html(report, tmp_path / "bench.html")
    assert "plotly" in html.read_text(encoding="utf-8").lower()


def test_bench_with_neighbours_and_tree_drafts_stays_lossless(tiny_lm):
    from tasc.drafts import SpecConfig

    prompts = ["play some jazz", "weather in paris", "book a table"]
    inputs = ["play jazz now", "weather in rome", "book a table for two"] * 4
    corpus = ['{"intent": "PlayMusic"}', '{"intent": "GetWeather"}', '{"intent": "Book"}'] * 4
    config = BenchConfig(methods=("greedy", "tasc-spec"), max_new_tokens=16, warmup=0, spec=SpecConfig(max_branches=2),
                         cost_curve=True)
    report = run_bench(tiny_lm, prompts, corpus, config, corpus_inputs=inputs)
    assert report["neighbour_index"] and report["spec"]["max_branches"] == 2 and report["spec"]["neighbours"] == 8
    assert report["methods"]["tasc-spec"]["identical_to_greedy"] == 1.0
    whole = run_bench(tiny_lm, prompts, corpus, replace(config, prefix_cache=False))  # outputs only: no neighbours
    assert not whole["neighbour_index"] and whole["prefix_cache_tokens"] == {}
    assert whole["answers"]["greedy"] == report["answers"]["greedy"]  # the cached prefix changes no answer
    assert report["verify_costs"] == {}  # tree drafts keep the token-cost rule, so no curve is measured


def test_bench_rejects_unknown_method_and_no_prompts(tiny_lm):
    with pytest.raises(ValueError, match="unknown method"):
        run_bench(tiny_lm, ["x"], ["y"], BenchConfig(methods=("greedy", "magic")))
    with pytest.raises(ValueError, match="no prompts"):
        run_bench(tiny_lm, [], ["y"], BenchConfig())


def test_overlap_warning_names_the_leak():
    assert overlap_warning(["a", "b"], ["b", "c"]).startswith("warning: 1 of 2")
    assert overlap_warning(["a"], ["c"]) is None


def test_tasc_ft_methods_run_on_the_enriched_model(tiny_lm, tmp_path):
    """tasc-ft runs the second model with its own tokenizer; tasc-ft+spec is lossless against it."""
    from tests.tiny import save_tiny

    ft_dir = save_tiny(tmp_path / "ft", seed=1)  # another model and tokenizer stand in for the enriched one
    prompts = ["play some jazz", "weather in paris", "book a table"]
    corpus = ['{"intent": "PlayMusic"}', '{"intent": "GetWeather"}'] * 5
    config = BenchConfig(methods=("greedy", "greedy-loop", "tasc-ft", "tasc-ft+spec"), max_new_tokens=10, warmup=1, ft_model=str(ft_dir))
    report = run_bench(tiny_lm, prompts, corpus, config, references=[[c] for c in corpus[:3]])
    figures = report["methods"]
    assert figures["tasc-ft+spec"]["identical_to_greedy"] == 1.0  # against tasc-ft's own greedy ids
    assert figures["tasc-ft+spec"]["new_tokens"] == figures["tasc-ft"]["new_tokens"]
    assert "chars_per_s" in figures["tasc-ft"] and "quality" in figures["tasc-ft"]
    with pytest.raises(ValueError, match="--ft-model"):
        run_bench(tiny_lm, prompts, corpus, BenchConfig(methods=("tasc-ft",)))
