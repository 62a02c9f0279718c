"""The llama.cpp methods in the registry and the CLI's --engine options; no llama.cpp needed here."""

import pytest

from tasc.bench.bench import BenchConfig, _lineup
from tasc.cli import build_parser
from tasc.methods import LLAMACPP, LLAMACPP_BENCH_METHODS, LOOP, TORCH, Resources, get, runs_on_llamacpp


def test_llamacpp_methods_and_where_our_loop_runs():
    assert get("llamacpp-greedy").engine == get("llamacpp-lookup").engine == LLAMACPP
    assert get("llamacpp-lookup").drafts == "lookup" and get("llamacpp-lookup").lossless
    assert runs_on_llamacpp(get("llamacpp-greedy"), TORCH)  # llama.cpp's own methods always run there
    assert runs_on_llamacpp(get("tasc-spec"), LLAMACPP) and not runs_on_llamacpp(get("tasc-spec"), TORCH)
    assert not runs_on_llamacpp(get("pld"), LLAMACPP)  # transformers' baselines stay on torch
    assert get("tasc-spec").engine == LOOP


def test_resources_say_what_a_llama_cpp_method_lacks(tiny_lm):
    with pytest.raises(ValueError, match="llama.cpp"):
        Resources(tiny_lm).check(get("llamacpp-greedy"))
    with pytest.raises(ValueError, match="llama.cpp"):
        Resources(tiny_lm, loop_engine=LLAMACPP).check(get("greedy-loop"))
    Resources(tiny_lm).check(get("greedy-loop"))


def test_bench_on_llama_cpp_compares_with_llama_cpp_greedy():
    config = BenchConfig(methods=LLAMACPP_BENCH_METHODS, engine=LLAMACPP).check()
    assert [m.name for m in _lineup(config, ["x"], None)] == ["llamacpp-greedy", "llamacpp-lookup", "llamacpp-lookup-corpus", "tasc-spec"]
    assert [m.name for m in _lineup(BenchConfig().check(), ["x"], None)][0] == "greedy"
    with pytest.raises(ValueError, match="engine"):
        BenchConfig(engine="onnx").check()


def test_cli_takes_engine_options_and_export():
    parser = build_parser()
    args = parser.parse_args(["bench", "--engine", "llamacpp", "--gguf", "shipped", "--corpus", "c", "--prompts", "p"])
    assert (args.engine, args.gguf, args.gguf_type, args.methods) == ("llamacpp", "shipped", "f32", None)
    args = parser.parse_args(["generate", "hi", "--engine", "llamacpp", "--gguf-type", "bf16"])
    assert (args.engine, args.gguf_type) == ("llamacpp", "bf16")
    args = parser.parse_args(["evaluate", "--corpus", "c", "--engine", "llamacpp", "--gguf-type", "q8_0"])
    assert (args.engine, args.gguf_type) == ("llamacpp", "q8_0")
    args = parser.parse_args(["export", "--gguf", "out.gguf", "--type", "q8_0"])
    assert (args.gguf, args.gguf_type, args.model) == ("out.gguf", "q8_0", "smollm2-135m")
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--gguf", "x", "--type", "q4_k"])


def test_export_command_writes_a_gguf(tiny_model_dir, tmp_path):
    from tasc.cli import main

    out = tmp_path / "tiny.gguf"
    assert main(["export", "--model", str(tiny_model_dir), "--gguf", str(out), "--type", "bf16"]) == 0
    assert out.is_file() and out.read_bytes()[:4] == b"GGUF"
    assert main(["export", "--model", str(tmp_path / "missing"), "--gguf", str(out)]) == 2


def test_llama_cpp_lookup_port_drafts_from_corpus_context_and_earlier_answers():
    from tasc.spec.llamacpp_lookup import CorpusLookup

    lookup = CorpusLookup([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], n_draft=8)
    assert lookup([9, 1, 2]).tolist() == [3, 4, 5]  # the static corpus cache, up to where it knows nothing
    assert lookup([9, 1, 2, 6]).tolist() == []  # (2, 6) was never seen; a continuation of the same answer
    assert lookup([7, 8, 9, 7, 8, 9, 7, 8]).tolist() == [9, 7, 8, 9, 7, 8, 9, 7]  # the context cache: (7, 8) -> 9 twice
    assert lookup.dynamic[(1, 2)][6] == 1 and (7, 8) not in lookup.dynamic  # earlier answers' context caches, merged
    assert len(lookup([5]).tolist()) == 0  # shorter than a static 2-gram: no draft
    assert lookup.dynamic[(7, 8)][9] == 2
