"""TASC-spec against prompt lookup, prompt by prompt: tokens per forward pass of each, greedy.

The benchmark (`tasc bench`) reports means; this script asks the per-prompt question: on how many
prompts does TASC-spec need no more passes per token than prompt lookup (`pld`, transformers)? It runs
the same runners the benchmark does (`tasc.bench.runs.method_runner`), on named sets:

    snips-ft     SNIPS valid, the fine-tuned runs/snips-ft-270, corpus SNIPS train
    snips-base   SNIPS valid, the base model with 3 training examples in the prompt
    e2e-base     E2E dev held out by input (10%), the base model, 3 examples, corpus = the train part
    support      assets/support_tickets.jsonl as the Arena uses it: held-out inputs, 2 examples, train index
    weather      assets/weather_reports.jsonl, likewise

Tokens per pass counts every forward pass, the prefill included, for every method. Example:

    .venv/bin/python scripts/drafts_vs_pld.py --sets support,weather --json /tmp/dvp.json
    .venv/bin/python scripts/drafts_vs_pld.py --sets support --show-drafts 3   # drafts per pass of prompt 3
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
SETS = ("snips-ft", "snips-base", "e2e-base", "support", "weather")


@dataclass
class PromptSet:
    """One comparison: a model, its prompt format's examples, the corpus it drafts from and the prompts."""

    name: str
    model: str  # alias or model directory
    shots: list[tuple[str, str]]  # examples shown first (base model only)
    corpus_outputs: list[str]
    corpus_inputs: list[str] | None
    prompts: list[str]
    index_budget: int | None = None  # the Arena's index token budget (None: all rows)


def load_set(name: str, n: int | None) -> PromptSet:
    """The prompts, corpus and model of a named set (see the module docstring)."""
    from tasc.core.corpus import load_corpus, references_by_input, select_split, split_by_input

    if name in ("snips-ft", "snips-base"):
        train = load_corpus(DATA / "snips" / "train.jsonl")
        prompts = list(references_by_input(load_corpus(DATA / "snips" / "valid.jsonl")))[: n or 50]
        model = str(ROOT / "runs" / "snips-ft-270") if name == "snips-ft" else "smollm2-135m"
        shots = train.pairs()[:3] if name == "snips-base" else []
        return PromptSet(name, model, shots, train.outputs, train.inputs, prompts)
    if name == "e2e-base":
        dev = load_corpus(DATA / "e2e" / "dev.jsonl")
        train = select_split(dev, "train", 0.1, 0)
        prompts = list(references_by_input(select_split(dev, "heldout", 0.1, 0)))[: n or 30]
        return PromptSet(name, "smollm2-135m", train.pairs()[:3], train.outputs, train.inputs, prompts)
    if name in ("support", "weather"):
        from studio.indexes import INDEX_MAX_TOKENS
        from studio.tab_corpus import HELDOUT_FRACTION, HELDOUT_SEED

        corpus = load_corpus(ROOT / "assets" / f"{'support_tickets' if name == 'support' else 'weather_reports'}.jsonl")
        train, held = split_by_input(corpus, HELDOUT_FRACTION, seed=HELDOUT_SEED)  # the app's split (studio.tab_corpus)
        prompts = list(dict.fromkeys(held.inputs or []))[: n or None]  # studio.app_state.heldout_inputs
        return PromptSet(name, "smollm2-135m", train.pairs()[:2], train.outputs, train.inputs, prompts, INDEX_MAX_TOKENS)
    raise ValueError(f"unknown set {name!r}; choose from {', '.join(SETS)}")


def resources(lm: Any, ps: PromptSet) -> Any:
    """What the methods run on: the Arena's / benchmark's corpus index and context keys for this model."""
    from tasc.methods import Resources
    from tasc.spec.drafts import SpecConfig, build_corpus_index
    from tasc.spec.ngram_index import normalised_keys

    # Built with the model's format before its examples are added, as studio.indexes.corpus_index_for does.
    index = build_corpus_index(lm.tokenizer, ps.corpus_outputs, ps.corpus_inputs, lm.prompt_format, max_tokens=ps.index_budget)
    return Resources(lm, index, spec=SpecConfig(), context_keys=normalised_keys(lm.tokenizer))


def run_set(ps: PromptSet, methods: Sequence[str], max_new_tokens: int, cached: dict[str, Any], fresh: bool) -> dict[str, Any]:
    """Every method on every prompt of a set; per prompt: tokens, passes, tokens per pass.

    `fresh`: a new drafter per prompt, as the Arena builds one per request (no statistics learnt from
    earlier prompts); otherwise one drafter answers all prompts in turn, as in the benchmark.
    """
    from tasc.bench.runs import method_runner
    from tasc.core.models import load_model
    from tasc.methods import get
    from tasc.spec.decode import DecodeConfig, PrefixCache

    lm = load_model(ps.model, device="cpu")
    if ps.shots:
        lm.prompt_format = lm.prompt_format.with_shots(ps.shots)
    res = resources(lm, ps)
    lm_fmt = lm.prompt_format
    ids = [lm_fmt.prompt_ids(lm.tokenizer, p) for p in ps.prompts]
    prefix = PrefixCache(lm.model, lm_fmt.shared_prefix_ids(lm.tokenizer))
    config = DecodeConfig(max_new_tokens)
    out: dict[str, Any] = {"model": ps.model, "shots": len(ps.shots), "prompts": ps.prompts, "fresh": fresh, "methods": {}}
    for name in methods:
        old = cached.get(name)
        if old is not None and old.get("prompts") == ps.prompts and old.get("max_new_tokens") == max_new_tokens:
            out["methods"][name] = old["runs"]  # a baseline that the drafter does not change (pld)
            continue
        method = get(name)
        runner = method_runner(method, res, config, prefix=None if method.engine == "hf" else prefix)
        runs = []
        for prompt_ids in ids:
            if fresh:
                runner = method_runner(method, res, config, prefix=None if method.engine == "hf" else prefix)
            r = runner(prompt_ids)
            runs.append({"tokens": r.tokens, "passes": r.forward_passes, "tpp": len(r.tokens) / max(r.forward_passes, 1),
                         "wall_s": round(r.wall_s, 3), "phases": r.phases})
            print(f"{ps.name} {name} prompt {len(runs) - 1}: {runs[-1]['tpp']:.2f} tokens/pass", file=sys.stderr, flush=True)
        out["methods"][name] = runs
    out["lm"], out["res"], out["ids"] = lm, res, ids
    return out


def compare(result: dict[str, Any], method: str, baseline: str) -> dict[str, Any]:
    """Per-prompt `method` vs `baseline`: share of prompts at least as good, means, identical answers."""
    a, b = result["methods"][method], result["methods"][baseline]
    wins = [x["tpp"] >= y["tpp"] - 1e-9 for x, y in zip(a, b, strict=True)]
    return {
        "share_ge": round(sum(wins) / len(wins), 4),
        "mean_tpp": round(sum(len(x["tokens"]) for x in a) / sum(x["passes"] for x in a), 3),
        "mean_tpp_baseline": round(sum(len(y["tokens"]) for y in b) / sum(y["passes"] for y in b), 3),
        "mean_of_ratios": round(sum(x["tpp"] / y["tpp"] for x, y in zip(a, b, strict=True)) / len(a), 3),
        "identical": sum(x["tokens"] == y["tokens"] for x, y in zip(a, b, strict=True)),
        "losing_prompts": [i for i, w in enumerate(wins) if not w],
        "drafter_share": drafter_share(a),
    }


def drafter_share(runs: Sequence[dict[str, Any]]) -> float | None:
    """Share of our loop's wall time spent drafting and updating the drafter (None for transformers' methods)."""
    phases = [r["phases"] for r in runs if r.get("phases")]
    wall = sum(r["wall_s"] for r in runs if r.get("phases"))
    if not phases or not wall:
        return None
    return round(sum(p["draft"] + p["update"] for p in phases) / wall, 4)


def print_set(name: str, result: dict[str, Any], methods: Sequence[str]) -> None:
    """Per-prompt tokens per pass of every method, then the comparison lines."""
    mode = "a fresh drafter per prompt" if result["fresh"] else "one drafter for all prompts"
    print(f"\n== {name}: {result['model']}, {result['shots']} examples, {len(result['prompts'])} prompts, {mode}")
    print(f"{'#':>3} {'tokens':>6} " + " ".join(f"{m:>12}" for m in methods))
    for i in range(len(result["prompts"])):
        row = [result["methods"][m][i] for m in methods]
        print(f"{i:>3} {len(row[0]['tokens']):>6} " + " ".join(f"{r['tpp']:>12.2f}" for r in row))
    for m in methods:
        if m == "pld":
            continue
        c = result["compare"][m]
        print(f"{m} vs pld: mean tokens/pass {c['mean_tpp']:.2f} vs {c['mean_tpp_baseline']:.2f}; "
              f"per prompt >= pld on {c['share_ge']:.0%}; identical answers {c['identical']}/{len(result['prompts'])}; "
              f"losing prompts {c['losing_prompts']}; drafting + update {c['drafter_share'] or 0:.1%} of wall time")


def show_drafts(result: dict[str, Any], prompt: int, method: str = "tasc-spec") -> None:
    """Replay one prompt with `method`'s drafter and print each pass's draft, sources and accepted count."""
    from tasc.methods import build_drafter, get
    from tasc.spec.decode import DecodeConfig, speculative_steps

    lm, res = result["lm"], result["res"]
    drafter = build_drafter(get(method), res)
    for warm in [] if result["fresh"] else result["ids"][:prompt]:  # the drafter's statistics as they were when it met this prompt
        for _ in speculative_steps(lm.model, warm, drafter, DecodeConfig(result["max_new_tokens"]), lm.eos_token_id):
            pass
    tok = lm.tokenizer
    print(f"\n-- drafts of {method} on prompt {prompt}: {result['prompts'][prompt]!r}")
    for i, step in enumerate(speculative_steps(lm.model, result["ids"][prompt], drafter, DecodeConfig(result["max_new_tokens"]),
                                               lm.eos_token_id)):
        srcs = "".join(s[:2] for s in dict.fromkeys(step.sources[: step.n_accepted])) or "-"
        print(f"pass {i:>3}: drafted {len(step.draft):>2}, accepted {step.n_accepted:>2} [{srcs}] "
              f"{tok.decode(step.draft)!r} -> {tok.decode(step.tokens)!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sets, print the tables, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from: {', '.join(SETS)}")
    p.add_argument("--methods", default="pld,tasc-spec", help="comma-separated method names; pld is the baseline")
    p.add_argument("--n", type=int, help="prompts per set (default: 50 SNIPS, 30 E2E, all held-out inputs of the examples)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--fresh", action="store_true", help="a new drafter per prompt, as the Arena (default: one per set, as the benchmark)")
    p.add_argument("--json", help="write per-prompt results and summaries here")
    p.add_argument("--reuse", help="an earlier --json: take its runs of --reuse-methods from it (same prompts, same cap)")
    p.add_argument("--reuse-methods", default="pld", help="methods whose earlier runs --reuse takes (default: pld)")
    p.add_argument("--show-drafts", type=int, action="append", default=[], help="print the drafts of this prompt (index)")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "pld" not in methods:
        methods.insert(0, "pld")
    earlier_report = json.loads(Path(args.reuse).read_text()) if args.reuse else {}
    earlier = earlier_report.get("sets", {})
    reuse = set(args.reuse_methods.split(","))
    report: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "methods": methods, "sets": {}}
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        old = earlier.get(name, {})
        cached = {m: {"prompts": old.get("prompts"), "max_new_tokens": earlier_report.get("max_new_tokens"), "runs": old["methods"][m]}
                  for m in reuse if m in old.get("methods", {})}
        result = run_set(load_set(name, args.n), methods, args.max_new_tokens, cached, args.fresh)
        result["max_new_tokens"] = args.max_new_tokens
        result["compare"] = {m: compare(result, m, "pld") for m in methods if m != "pld"}
        print_set(name, result, methods)
        for i in args.show_drafts:
            show_drafts(result, i)
        report["sets"][name] = {k: v for k, v in result.items() if k not in ("lm", "res", "ids")}
        if args.json:  # after every set: a long run keeps what it has
            Path(args.json).write_text(json.dumps(report, indent=1))
    print("\nset          method        tokens/pass  pld  share >= pld")
    for name, r in report["sets"].items():
        for m, c in r["compare"].items():
            print(f"{name:<12} {m:<13} {c['mean_tpp']:>10.2f} {c['mean_tpp_baseline']:>5.2f} {c['share_ge']:>8.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
