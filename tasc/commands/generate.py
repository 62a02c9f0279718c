"""`python -m tasc generate`: answer one input with any method of `tasc.methods`, streaming the text."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Iterable

from tasc.commands.engine import add_engine_options, llamacpp_engine
from tasc.commands.options import add_common, add_draft_answers_option, add_model_options, load_from_args, with_draft_answers
from tasc.methods import FT, HF, LLAMACPP, METHODS, runs_on_llamacpp


def register(subparsers: Any) -> None:
    """Add the `generate` parser."""
    p = subparsers.add_parser("generate", help="answer one input with a decoding method (plain greedy, TASC-spec, ...)")
    add_model_options(p)
    add_engine_options(p)
    add_common(p)
    p.add_argument("input", help="the task input text")
    p.add_argument("--method", choices=list(METHODS), default="greedy-loop",
                   help="greedy-loop (default: plain greedy, streamed); tasc-spec drafts from --corpus and the context; "
                        "tasc-context from the context only; the others as in `tasc bench`")
    p.add_argument("--corpus", help="task corpus for the methods that draft from it")
    add_draft_answers_option(p)
    p.add_argument("--ft-model", metavar="DIR", help="fine-tuned model for tasc-ft, tasc-ft+spec")
    p.add_argument("--draft-model", metavar="DIR", help="draft model (tasc train-draft) for the draft-model methods")
    p.add_argument("--hybrid-model", metavar="DIR", help="hybrid (tasc train-hybrid) for the hybrid method")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy (speculative sampling keeps the model's distribution)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(run=run)


def _resources(args: argparse.Namespace, method: Any) -> Any:
    """Load what the method runs on: its model, the corpus index, a trained draft model or hybrid."""
    from tasc.core.corpus import load_corpus
    from tasc.methods import DRAFT_MODEL_DIR, HYBRID_DIR, Resources
    from tasc.spec.drafts import build_corpus_index

    if method.needs_corpus and not args.corpus:
        raise ValueError(f"--method {method.name} needs --corpus (the task corpus its drafts come from)")
    needed = {FT: ("--ft-model", args.ft_model), DRAFT_MODEL_DIR: ("--draft-model", args.draft_model),
              HYBRID_DIR: ("--hybrid-model", args.hybrid_model)}
    for kind in (method.model, method.needs):
        if kind in needed and not needed[kind][1]:
            raise ValueError(f"--method {method.name} needs {needed[kind][0]} DIR")
    target = load_from_args(args)
    lm = load_from_args(args, args.ft_model) if method.model == FT else target
    res = Resources(lm, llamacpp=llamacpp_engine(args, lm.name, [method], base=method.model != FT), loop_engine=args.engine)
    if method.needs_corpus:
        corpus = with_draft_answers(load_corpus(args.corpus), args)  # no leak check: one answer, lossless, not a benchmark
        res.index = build_corpus_index(lm.tokenizer, corpus.outputs, corpus.inputs, lm.prompt_format)
        res.corpus_outputs = corpus.outputs
    if method.needs == DRAFT_MODEL_DIR:
        from tasc.compare.draft_model import load_draft_model

        res.draft_model = load_draft_model(args.draft_model, target)
    if method.needs == HYBRID_DIR:
        from tasc.compare.hybrid import HybridModel

        res.hybrid = HybridModel.load(args.hybrid_model, target)
    return res


def _stream(tokenizer: Any, steps: Iterable[Any]) -> tuple[list[int], int, int, float]:
    """Write the answer to stdout as its steps arrive; return tokens, passes, accepted draft tokens, seconds."""
    tokens: list[int] = []
    printed = ""
    passes = accepted = 0
    elapsed = 0.0
    for step in steps:
        tokens += step.tokens
        passes, accepted, elapsed = passes + 1, accepted + step.n_accepted, step.elapsed_s
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        sys.stdout.write(text[len(printed):])  # decode the whole answer: a token may complete a character
        sys.stdout.flush()
        printed = text
    sys.stdout.write("\n")
    return tokens, passes, accepted, elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Stream the answer to stdout; speed figures go to stderr."""
    from tasc.methods import get, step_stream
    from tasc.spec.decode import DecodeConfig

    method = get(args.method)
    config = DecodeConfig(args.max_new_tokens, args.sample, args.temperature, args.top_p, args.seed).check()
    if args.sample and method.engine == HF:
        raise ValueError(f"--method {method.name} runs transformers' greedy generate: --sample needs one of our loop's methods")
    res = _resources(args, method)
    ids = res.lm.prompt_format.prompt_ids(res.lm.tokenizer, args.input)
    if method.engine in (HF, LLAMACPP):  # transformers' or llama.cpp's own generate: the whole answer at once, its passes counted
        from tasc.bench.runs import method_runner

        run_ = method_runner(method, res, config)(ids)
        tokens, passes, accepted, elapsed = run_.tokens, run_.forward_passes, len(run_.tokens) - run_.forward_passes, run_.wall_s
        print(res.lm.tokenizer.decode(tokens, skip_special_tokens=True))
    else:
        tokens, passes, accepted, elapsed = _stream(res.lm.tokenizer, step_stream(method, res, ids, config))
    engine = LLAMACPP if runs_on_llamacpp(method, args.engine) else "torch"
    stats = {"method": method.name, "engine": engine, "new_tokens": len(tokens), "forward_passes": passes, "accepted_draft_tokens": max(accepted, 0),
             "wall_s": round(elapsed, 3), "tokens_per_s": round(len(tokens) / elapsed, 2) if elapsed else 0.0}
    print(" ".join(f"{k}={v}" for k, v in stats.items()), file=sys.stderr)
    return {"input": args.input, "output": res.lm.tokenizer.decode(tokens, skip_special_tokens=True).strip(), **stats}
