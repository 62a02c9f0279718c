"""`python -m tasc bench`: time decoding methods on the same prompts against greedy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tasc.commands.engine import add_engine_options
from tasc.commands.options import (
    add_common,
    add_draft_answers_option,
    add_model_options,
    add_split_options,
    add_unseen_option,
    apply_unseen,
    load_from_args,
    progress_bar,
    split_settings,
    with_draft_answers,
)
from tasc.methods import DEFAULT_BENCH_METHODS, LLAMACPP, LLAMACPP_BENCH_METHODS, METHODS


def register(subparsers: Any) -> None:
    """Add the `bench` parser."""
    p = subparsers.add_parser("bench", help="benchmark greedy, prompt lookup and TASC-spec on held-out prompts")
    add_model_options(p)
    add_common(p)
    p.add_argument("--corpus", required=True, help="task output corpus the drafts come from (jsonl/csv/tsv/txt)")
    p.add_argument("--prompts", required=True, help="JSONL/CSV of held-out rows with an `input` column")
    p.add_argument("--n", type=int, default=50, help="number of prompts (default 50)")
    add_unseen_option(p, "prompts")
    add_draft_answers_option(p)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--methods", help=f"comma-separated, from: {', '.join(METHODS)} (default: {','.join(DEFAULT_BENCH_METHODS)}; "
                                     f"with --engine llamacpp: {','.join(LLAMACPP_BENCH_METHODS)})")
    add_engine_options(p)
    p.add_argument("--shots", type=int, default=0, help="few-shot examples from the corpus (for models without a stored prompt format)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up prompts")
    p.add_argument("--html", help="plot file (default: next to --json, .html)")
    p.add_argument("--draft-model", metavar="DIR", help="draft model (tasc train-draft) for draft-model, draft-model-hf, draft-model+tasc")
    p.add_argument("--hybrid-model", metavar="DIR", help="hybrid (tasc train-hybrid) for the hybrid method")
    p.add_argument("--tree-branches", type=int, default=0,
                   help="TASC-spec side branches per draft (default 0: chains; trees pay where extra verify tokens are cheap, e.g. GPUs)")
    p.add_argument("--neighbours", type=int, default=8,
                   help="corpus rows with inputs like each prompt whose answers TASC-spec also drafts from (default 8; 0: off)")
    p.add_argument("--history", type=int, default=256,
                   help="the model's finished answers TASC-spec keeps and drafts from for later alike prompts "
                        "(default 256; 0: off; an answer never drafts for its own prompt, so the warm-up cannot leak)")
    p.add_argument("--cost-curve", action="store_true",
                   help="measure the verify-cost curve first and cut TASC drafts where tokens per unit of cost peak (default: a fixed per-token cost)")
    p.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false",
                   help="prefill every prompt whole (default: the prefix all prompts share is run once per model and its cache reused)")
    p.add_argument("--no-static-cache", dest="static_cache", action="store_false",
                   help="our loop keeps transformers' DynamicCache (default: a preallocated KV cache, tasc/spec/kv_cache.py)")
    p.add_argument("--no-lazy-head", dest="lazy_head", action="store_false",
                   help="our loop runs the output head over every draft row (default on a CPU: only the rows greedy acceptance reaches)")
    p.add_argument("--no-cuda-graphs", dest="graphs", action="store_false", default=None,
                   help="on a GPU, run our loop's passes eagerly (default: bucketed widths compiled as CUDA graphs)")
    p.add_argument("--ft-model", metavar="DIR", help="enriched fine-tuned model (tasc enrich + finetune) for tasc-ft, tasc-ft+spec")
    add_split_options(p, (("--corpus-split", "part of --corpus to draft from (split as --split-by says)"),
                          ("--prompts-split", "part of --prompts to answer (split as --split-by says)")))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load model, corpus and prompts; run the benchmark; print the table; save the plots."""
    from tasc.bench.bench import BenchConfig, format_table, overlap_warning, run_bench
    from tasc.bench.report import split_text
    from tasc.core.corpus import load_corpus, references_by_input, select_split
    from tasc.spec.decode import DecodeConfig
    from tasc.spec.drafts import SpecConfig

    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    default = LLAMACPP_BENCH_METHODS if args.engine == LLAMACPP else DEFAULT_BENCH_METHODS
    methods = tuple(m.strip() for m in (args.methods or ",".join(default)).split(",") if m.strip())
    config = BenchConfig(methods=methods, decode=DecodeConfig(args.max_new_tokens, static_cache=args.static_cache, lazy_head=args.lazy_head,
                                                                  graphs=args.graphs), warmup=args.warmup,
                         draft_model=args.draft_model, hybrid_model=args.hybrid_model, ft_model=args.ft_model,
                         cost_curve=args.cost_curve, prefix_cache=args.prefix_cache,
                         engine=args.engine, gguf=args.gguf, gguf_type=args.gguf_type,
                         spec=SpecConfig(max_branches=args.tree_branches, neighbours=args.neighbours,
                                         history=args.history)).check()
    corpus = select_split(load_corpus(args.corpus), args.corpus_split, args.heldout_fraction, args.split_seed, args.split_by)
    prompts = select_split(load_corpus(args.prompts), args.prompts_split, args.heldout_fraction, args.split_seed, args.split_by)
    prompts = apply_unseen(prompts, args)
    if prompts.inputs is None:
        raise ValueError(f"{args.prompts} has no input column: the prompts file needs `input` values")
    # One prompt per distinct input (E2E repeats inputs with several references).
    refs = references_by_input(prompts)
    inputs = list(refs)[: args.n]
    corpus = with_draft_answers(corpus, args, inputs)
    warning = overlap_warning([refs[i][0] for i in inputs], corpus.outputs)
    if warning:
        print(warning, file=sys.stderr)

    lm = load_from_args(args)
    if args.shots:
        if corpus.inputs is None:
            raise ValueError("--shots needs a corpus with inputs")
        lm.prompt_format = lm.prompt_format.with_shots(corpus.pairs()[: args.shots])

    on_progress, close = progress_bar("bench")
    try:
        report = run_bench(lm, inputs, corpus.outputs, config, on_progress=on_progress, references=[refs[i] for i in inputs],
                           corpus_inputs=corpus.inputs)
    finally:
        close()
    report.update({"corpus": corpus.source, "prompts": prompts.source, "split": split_settings(args), "shots": args.shots,
                   "draft_answers": args.draft_answers,
                   "warning": warning})
    print(format_table(report))
    print(split_text(report))
    html = args.html or (str(Path(args.json).with_suffix(".html")) if args.json else None)
    if html:
        from tasc.bench.plots import write_bench_html

        write_bench_html(report, html)
        print(f"plots: {html}", file=sys.stderr)
    return report
