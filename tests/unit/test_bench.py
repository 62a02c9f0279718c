"""The benchmark harness on a tiny model: every method answers, figures add up, greedy methods agree."""

import re
from dataclasses import replace

import pytest

from tasc.bench.bench import BenchConfig, format_table, overlap_warning, run_bench
from tasc.bench.plots import write_bench_html
from tasc.spec.decode import DecodeConfig


def test_bench_reports_every_method(tiny_lm, tmp_path):
    prompts = ["play some jazz", "weather in paris", "book a table", "play miles davis"]
    corpus = ['{"intent": "PlayMusic"}', '{"intent": "GetWeather"}'] * 5
    config = BenchConfig(methods=("greedy", "greedy-loop", "pld", "tasc-spec", "tasc-context"), decode=DecodeConfig(12), warmup=1,
                         cost_curve=True)
    report = run_bench(tiny_lm, prompts, corpus, config)
    figures = report["methods"]
    assert set(figures) == {"greedy", "greedy-loop", "pld", "tasc-spec", "tasc-context"}
    assert report["n_prompts"] == 4
    for name, fig in figures.items():
        assert fig["identical_to_greedy"] == fig["identical_to_greedy_loop"] == 1.0, name  # all lossless here
        assert fig["new_tokens"] == figures["greedy"]["new_tokens"]
        assert fig["forward_passes"] >= 1 and fig["wall_s"] > 0
        assert fig["speedup"] > 0 and "speedup_vs_pld" in fig
    assert figures["greedy-loop"]["mean_accepted"] == 1.0
    assert report["prefix_cache_tokens"]["model"] > 0  # the shared system line and "Input:" were run once
    curve = report["verify_costs"]["model"]  # measured before timing; the TASC methods' drafts were cut by it
    assert len(curve) == 33 and curve[0] == 1.0 and report["cost_curve_s"] > 0
    assert max(figures["greedy"]["speedup"], figures["greedy-loop"]["speedup"]) == pytest.approx(1.0, abs=1e-3)
    # Where our loop's time goes: every phase, ms per pass and shares that add up to the wall time.
    for name in ("greedy-loop", "tasc-spec", "tasc-context"):
        split = figures[name]["time_split"]
        assert list(split) == ["setup", "draft", "forward", "accept", "update", "rest"], name
        assert sum(s["share"] for s in split.values()) == pytest.approx(1.0, abs=2e-3), name
        ms = sum(s["ms_per_pass"] for s in split.values()) * figures[name]["forward_passes"] / 1000
        assert ms == pytest.approx(figures[name]["wall_s"], rel=1e-2), name
        assert split["forward"]["share"] > split["setup"]["share"], name
    assert figures["greedy"]["time_split"] is None and figures["pld"]["time_split"] is None  # transformers' loops
    table = format_table(report)
    assert "tasc-spec" in table and "identical" in table and "ms per pass" in table
    html = write_bench_html(report, tmp_path / "bench.html")
    assert "plotly" in html.read_text(encoding="utf-8").lower()


def test_bench_with_neighbours_and_tree_drafts_stays_lossless(tiny_lm):
    from tasc.spec.drafts import SpecConfig

    prompts = ["play some jazz", "weather in paris", "book a table"]
    inputs = ["play jazz now", "weather in rome", "book a table for two"] * 4
    corpus = ['{"intent": "PlayMusic"}', '{"intent": "GetWeather"}', '{"intent": "Book"}'] * 4
    config = BenchConfig(methods=("greedy", "tasc-spec"), decode=DecodeConfig(16), warmup=0, spec=SpecConfig(max_branches=2),
                         cost_curve=True)
    report = run_bench(tiny_lm, prompts, corpus, config, corpus_inputs=inputs)
    assert report["neighbour_index"] and report["spec"]["max_branches"] == 2 and report["spec"]["neighbours"] == 8
    assert report["spec"]["history"] == 256  # the model's own finished answers draft too (tasc.spec.history)
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
    config = BenchConfig(methods=("greedy", "greedy-loop", "tasc-ft", "tasc-ft+spec"), decode=DecodeConfig(10), warmup=1, ft_model=str(ft_dir))
    report = run_bench(tiny_lm, prompts, corpus, config, references=[[c] for c in corpus[:3]])
    figures = report["methods"]
    assert figures["tasc-ft+spec"]["identical_to_greedy"] == 1.0  # against tasc-ft's own greedy ids
    assert figures["tasc-ft+spec"]["new_tokens"] == figures["tasc-ft"]["new_tokens"]
    assert "chars_per_s" in figures["tasc-ft"] and "quality" in figures["tasc-ft"]
    with pytest.raises(ValueError, match="--ft-model"):
        run_bench(tiny_lm, prompts, corpus, BenchConfig(methods=("tasc-ft",)))


def test_data_to_text_quality_includes_faithfulness(tiny_lm):
    """Prompts that are attribute lists get the faithfulness scores beside BLEU, per method."""
    prompts = ["name[Aromi], eatType[pub], area[riverside]", "name[Zizzi], food[Italian], area[city centre]"]
    refs = [["Aromi is a pub by the riverside."], ["Zizzi serves Italian food in the city centre."]]
    corpus = [r[0] for r in refs] * 3
    config = BenchConfig(methods=("greedy", "greedy-loop", "tasc-spec"), decode=DecodeConfig(8), warmup=0)
    quality = run_bench(tiny_lm, prompts, corpus, config, references=refs)["methods"]["tasc-spec"]["quality"]
    assert quality["task"] == "text" and {"bleu", "faithful", "missing", "invented"} <= set(quality)


@pytest.mark.parametrize("change, message", [
    ({"methods": ("greedy", "nope")}, "unknown method 'nope'"),
    ({"decode": DecodeConfig(0)}, "max new tokens must be a whole number from 1 to 512"),
    ({"decode": DecodeConfig(513)}, "from 1 to 512, got 513"),
    ({"warmup": -1}, "warm-up"),
    ({"methods": ("tasc-ft",)}, "--ft-model"),
    ({"methods": ("hybrid",)}, "--hybrid-model"),
    ({"methods": ("draft-model+tasc",)}, "--draft-model"),
])
def test_bench_config_is_checked_where_it_is_built(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BenchConfig(**change).check()


def test_spec_config_bounds():
    from tasc.spec.drafts import SpecConfig

    assert SpecConfig().check() == SpecConfig()
    for bad in ({"max_draft": 0}, {"neighbours": -1}, {"max_branches": 2.5}, {"token_cost": 1.0}, {"prior_strength": 0},
                {"history": -1}, {"history_neighbours": 1.5}):
        with pytest.raises(ValueError, match="TASC-spec"):
            SpecConfig(**bad).check()
    with pytest.raises(ValueError, match="neighbours"):
        BenchConfig(spec=SpecConfig(neighbours=-3)).check()


def test_static_cache_greedy_is_a_baseline(tiny_lm):
    """transformers' static-cache greedy (compiled on a GPU) answers as greedy does and counts as a baseline."""
    config = BenchConfig(methods=("greedy", "greedy-static", "tasc-context"), decode=DecodeConfig(10), warmup=0)
    report = run_bench(tiny_lm, ["play some jazz", "book a table"], ["x"], config)
    figures = report["methods"]
    assert figures["greedy-static"]["identical_to_greedy"] == 1.0
    assert report["baseline_wall_s"] == min(figures[m]["wall_s"] for m in ("greedy", "greedy-static"))


@pytest.mark.parametrize("lazy", [True, False])
def test_the_report_says_whether_the_head_ran_lazily(tiny_lm, lazy):
    """A CPU Llama model's run records the lazy head as it ran (`--no-lazy-head` turns it off); answers stay greedy's."""
    config = BenchConfig(methods=("greedy", "tasc-spec"), decode=DecodeConfig(12, lazy_head=lazy), warmup=0)
    report = run_bench(tiny_lm, ["play some jazz", "book a table"], ['{"intent": "PlayMusic"}'], config)
    assert report["lazy_head"] is lazy
    assert report["methods"]["tasc-spec"]["identical_to_greedy"] == 1.0
