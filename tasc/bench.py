"""Benchmark decoding methods on the same prompts, in the same run, against plain greedy.

Every method answers every prompt; prompts are the outer loop and the order of methods rotates
from prompt to prompt, so slow drifts of the machine (other processes, thermal) spread over all
methods instead of biasing one. A warm-up (excluded) runs each method first. The baseline wall
time is the faster of transformers' `generate(do_sample=False)` and our own plain loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from tasc.cpu_kernels import linear_kernels
from tasc.decode import DecodeConfig, GenerationResult, PrefixCache, generate, measure_verify_costs
from tasc.drafts import CONTEXT, CORPUS, NoDraft, SpecConfig, build_corpus_index, make_drafter
from tasc.model_drafts import AssistConfig
from tasc.models import LoadedModel
from tasc.ngram_index import CorpusIndex, normalised_keys
from tasc.progress import Progress, ProgressFn, check_cancel
from tasc.report import machine_info, quality_text

GREEDY_METHODS = ("greedy", "greedy-loop")
DEFAULT_METHODS = ("greedy", "greedy-loop", "pld", "tasc-spec")
# Trained comparison modes (tasc.bench_models): need --draft-model / --hybrid-model directories.
MODEL_METHODS = ("draft-model", "draft-model-hf", "draft-model+tasc", "hybrid")
# TASC-ft: the enriched fine-tuned model (`BenchConfig.ft_model`), greedy and with TASC-spec drafting.
FT_METHODS = ("tasc-ft", "tasc-ft+spec")
KNOWN_METHODS = DEFAULT_METHODS + ("tasc-corpus", "tasc-context") + MODEL_METHODS + FT_METHODS
# Methods whose drafts come from a TascDrafter, and so are cut by a verify-cost curve.
SPEC_METHODS = ("tasc-spec", "tasc-corpus", "tasc-context", "draft-model+tasc", "tasc-ft+spec")


@dataclass
class BenchConfig:
    """What to run."""

    methods: Sequence[str] = DEFAULT_METHODS  # decoding methods, see KNOWN_METHODS
    max_new_tokens: int = 128  # answer cap per prompt
    warmup: int = 2  # prompts run by every method before timing starts (not counted)
    pld_tokens: int = 10  # transformers prompt lookup: draft length
    pld_ngram: int = 2  # transformers prompt lookup: longest n-gram matched
    spec: SpecConfig = field(default_factory=SpecConfig)  # TASC-spec drafting parameters
    draft_model: str | None = None  # draft model directory (tasc train-draft) for the draft-model methods
    hybrid_model: str | None = None  # hybrid directory (tasc train-hybrid) for the hybrid method
    ft_model: str | None = None  # enriched fine-tuned model directory for the tasc-ft methods
    assist: AssistConfig = field(default_factory=AssistConfig)  # draft-model drafting and mixing parameters
    # Measure each model's verify-cost curve first and cut TASC chain drafts by it. Off by default: on 50
    # SNIPS prompts it lost 5% (a gain of 1-4% on 20 was noise), see README.
    cost_curve: bool = False
    # Cache the states of the prefix all prompts share (system turn, template) once per model, for the
    # methods this module drives (greedy through generate, our loop); not pld, not the trained-model methods.
    prefix_cache: bool = True


@dataclass
class MethodRun:
    """What one method did on one prompt."""

    tokens: list[int]
    wall_s: float
    forward_passes: int
    accepted_by_source: dict[str, int] = field(default_factory=dict)
    step_lengths: list[int] = field(default_factory=list)
    draft_s: float = 0.0  # time spent drafting (our loop only)
    forward_s: float = 0.0  # time in forward passes and acceptance, prefill included (our loop only)


class ForwardCounter:
    """Counts calls of a model's forward (for methods we do not drive ourselves, like pld)."""

    def __init__(self, model: Any) -> None:
        self.calls = 0
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: Any) -> None:
        self.calls += 1

    def close(self) -> None:
        """Remove the hook."""
        self._handle.remove()


def _strip_eos(tokens: list[int], eos: int | None) -> list[int]:
    """Answer tokens without the final EOS, so methods that stop differently compare equal."""
    return tokens[:-1] if tokens and tokens[-1] == eos else tokens


def _run_hf(lm: LoadedModel, prompt_ids: list[int], config: BenchConfig, pld: bool, prefix: PrefixCache | None = None) -> MethodRun:
    """transformers generate: greedy, or prompt lookup decoding."""
    counter = ForwardCounter(lm.model)
    extra = {"prompt_lookup_num_tokens": config.pld_tokens, "max_matching_ngram_size": config.pld_ngram} if pld else {}
    ids = torch.tensor([prompt_ids], device=lm.device)
    try:
        t0 = time.perf_counter()
        if prefix is not None and prefix.covers(prompt_ids):
            extra["past_key_values"] = prefix.fork()  # generate runs only the uncached prompt tokens
        with torch.inference_mode():
            out = lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                eos_token_id=lm.eos_token_id,
                pad_token_id=lm.tokenizer.pad_token_id or lm.eos_token_id,
                **extra,
            )
        wall = time.perf_counter() - t0
    finally:
        counter.close()
    tokens = out[0, len(prompt_ids) :].tolist()
    return MethodRun(tokens, wall, counter.calls)


def _run_loop(lm: LoadedModel, prompt_ids: list[int], drafter: Any, config: BenchConfig, prefix: PrefixCache | None = None) -> MethodRun:
    """Our verify loop with a drafter (NoDraft = our plain greedy loop)."""
    t0 = time.perf_counter()
    result: GenerationResult = generate(lm.model, prompt_ids, drafter, DecodeConfig(config.max_new_tokens), lm.eos_token_id, prefix)
    wall = time.perf_counter() - t0
    by_source = {CORPUS: 0, CONTEXT: 0}
    for step in result.steps:
        for src in step.sources[: step.n_accepted]:
            by_source[src] = by_source.get(src, 0) + 1
    draft_s = sum(s.draft_s for s in result.steps)
    forward_s = sum(s.forward_s for s in result.steps)
    return MethodRun(result.tokens, wall, result.forward_passes, by_source, [len(s.tokens) for s in result.steps], draft_s, forward_s)


def method_runner(
    method: str, lm: LoadedModel, corpus_index: CorpusIndex | None, config: BenchConfig, prefix: PrefixCache | None = None
) -> Callable[[list[int]], MethodRun]:
    """A function that answers one prompt with `method` (`prefix`: the model's shared-prompt cache, if any)."""
    if method == "greedy":
        return lambda ids: _run_hf(lm, ids, config, pld=False, prefix=prefix)
    if method == "pld":
        # No prefix cache: transformers 5.23's prompt lookup with a pre-filled cache changed the answers of
        # 7 of 50 SNIPS prompts ("peeter townshend" for "pete townshend"), so it prefills whole and stays exact.
        return lambda ids: _run_hf(lm, ids, config, pld=True)
    if method == "greedy-loop":
        return lambda ids: _run_loop(lm, ids, NoDraft(), config, prefix)
    if method in ("tasc-spec", "tasc-corpus", "tasc-context"):
        keys = normalised_keys(lm.tokenizer) if config.spec.normalise_context else None
        drafter = make_drafter(method, lm.tokenizer, corpus_index, config.spec, keys)
        # One drafter per method for the whole run: its acceptance statistics keep learning.
        return lambda ids: _run_loop(lm, ids, drafter, config, prefix)
    if method in FT_METHODS:  # `lm` and `corpus_index` are the enriched model's here
        drafter = make_drafter("tasc-spec", lm.tokenizer, corpus_index, config.spec) if method == "tasc-ft+spec" else NoDraft()
        return lambda ids: _run_loop(lm, ids, drafter, config, prefix)
    if method in MODEL_METHODS:
        from tasc.bench_models import model_method_runner

        return model_method_runner(method, lm, corpus_index, config)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(KNOWN_METHODS)}")


def summarise(runs: list[MethodRun], reference: list[list[int]], eos: int | None) -> dict[str, Any]:
    """Fold one method's per-prompt runs into the figures the report shows."""
    new_tokens = sum(len(r.tokens) for r in runs)
    wall = sum(r.wall_s for r in runs)
    passes = sum(r.forward_passes for r in runs)
    identical = sum(_strip_eos(r.tokens, eos) == _strip_eos(ref, eos) for r, ref in zip(runs, reference))
    accepted: dict[str, int] = {}
    for r in runs:
        for src, n in r.accepted_by_source.items():
            accepted[src] = accepted.get(src, 0) + n
    return {
        "new_tokens": new_tokens,
        "wall_s": round(wall, 4),
        "tokens_per_s": round(new_tokens / wall, 2) if wall else 0.0,
        "forward_passes": passes,
        "mean_accepted": round(new_tokens / passes, 3) if passes else 0.0,
        "identical_to_greedy": round(identical / len(runs), 4) if runs else 0.0,
        "accepted_by_source": accepted,
        # Where the time goes (our loop only): drafting, forward passes, and the rest (Python, cache, sampling).
        "time_split": {
            "draft": round(sum(r.draft_s for r in runs) / wall, 4) if wall else 0.0,
            "forward": round(sum(r.forward_s for r in runs) / wall, 4) if wall else 0.0,
        } if any(r.forward_s for r in runs) else None,
        "step_lengths": [n for r in runs for n in r.step_lengths],
    }


def run_bench(
    lm: LoadedModel,
    prompts: Sequence[str],
    corpus_outputs: Sequence[str],
    config: BenchConfig | None = None,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    references: Sequence[Sequence[str]] | None = None,
    corpus_inputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Time every method on every prompt; return figures and speed-ups against greedy.

    Args:
        lm: the target model with its prompt format.
        prompts: task inputs (rendered with `lm.prompt_format`).
        corpus_outputs: the task output corpus the TASC drafters index.
        config: methods and settings.
        corpus_inputs: the corpus rows' inputs, when it has them: TASC-spec then also drafts from
            the answers of the rows whose inputs are most like each prompt.
        references: per prompt, its reference outputs; when given, each method's figures get a
            "quality" entry (BLEU/chrF, or JSON exact match and slot F1), needed by lossy methods.
    Returns:
        {"model", "device", "n_prompts", "max_new_tokens", "methods": {name: figures}, ...}.
    """
    config = config or BenchConfig()
    methods = list(dict.fromkeys(["greedy", *config.methods]))  # greedy is always the reference
    unknown = [m for m in methods if m not in KNOWN_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(KNOWN_METHODS)}")
    if not prompts:
        raise ValueError("no prompts to benchmark")
    if references is not None and len(references) != len(prompts):
        raise ValueError(f"got {len(references)} reference lists for {len(prompts)} prompts")
    t_index = time.perf_counter()
    needs_index = any(m in ("tasc-spec", "tasc-corpus", "draft-model+tasc") for m in methods)
    corpus_index = build_corpus_index(lm.tokenizer, corpus_outputs, corpus_inputs, lm.prompt_format) if needs_index else None
    index_s = time.perf_counter() - t_index
    # Each method runs on its model with that model's tokenizer and prompt format: the TASC-ft
    # methods on the enriched fine-tuned model, every other method on `lm`.
    model_of = {m: lm for m in methods}
    ft_index = None
    if any(m in FT_METHODS for m in methods):
        if not config.ft_model:
            raise ValueError("methods tasc-ft and tasc-ft+spec need the enriched fine-tuned model: --ft-model DIR")
        from tasc.models import load_model

        ft_lm = load_model(config.ft_model, device=lm.device)
        ft_index = build_corpus_index(ft_lm.tokenizer, corpus_outputs, corpus_inputs, ft_lm.prompt_format) if "tasc-ft+spec" in methods else None
        model_of.update({m: ft_lm for m in methods if m in FT_METHODS})
    # Each model's verify-cost curve, measured before timing starts (a few seconds, reported).
    t_curve = time.perf_counter()
    configs = {m: config for m in methods}
    curves: dict[str, tuple[float, ...]] = {}
    if config.cost_curve and config.spec.max_branches == 0:  # tree drafts keep the token-cost rule
        for m in methods:
            if m in SPEC_METHODS:
                x = model_of[m]
                key = "ft" if m in FT_METHODS else "model"
                if key not in curves:
                    curves[key] = measure_verify_costs(x.model, x.prompt_format.prompt_ids(x.tokenizer, prompts[0]))
                configs[m] = replace(config, spec=replace(config.spec, verify_costs=curves[key]))
    curve_s = time.perf_counter() - t_curve
    distinct = {id(x): x for x in model_of.values()}  # each model's prompts are tokenised once
    prefixes = {key: PrefixCache(x.model, x.prompt_format.shared_prefix_ids(x.tokenizer)) for key, x in distinct.items()} if config.prefix_cache else {}
    runners = {m: method_runner(m, model_of[m], ft_index if m in FT_METHODS else corpus_index, configs[m], prefixes.get(id(model_of[m])))
               for m in methods}
    ids_by_model = {key: [x.prompt_format.prompt_ids(x.tokenizer, p) for p in prompts] for key, x in distinct.items()}
    prompt_ids = {m: ids_by_model[id(model_of[m])] for m in methods}

    for i in range(min(config.warmup, len(prompts))):
        for method in methods:
            runners[method](prompt_ids[method][i])

    runs: dict[str, list[MethodRun]] = {m: [] for m in methods}
    t0 = time.perf_counter()
    for i in range(len(prompts)):
        check_cancel(cancel)
        order = methods[i % len(methods) :] + methods[: i % len(methods)]
        for method in order:
            runs[method].append(runners[method](prompt_ids[method][i]))
        if on_progress:
            on_progress(Progress("bench", i + 1, len(prompts), time.perf_counter() - t0, message=f"prompt {i + 1}"))

    # Token ids compare within one tokenizer: the TASC-ft methods against the enriched model's greedy.
    reference = [r.tokens for r in runs["greedy"]]
    ft_reference = [r.tokens for r in runs["tasc-ft"]] if "tasc-ft" in runs else reference
    figures = {m: summarise(runs[m], ft_reference if m in FT_METHODS else reference, lm.eos_token_id) for m in methods}
    texts = {m: [model_of[m].tokenizer.decode(r.tokens, skip_special_tokens=True).strip() for r in runs[m]] for m in methods}
    for m in methods:  # characters per second compare methods whose tokenizers differ
        wall = figures[m]["wall_s"]
        figures[m]["chars_per_s"] = round(sum(map(len, texts[m])) / wall, 1) if wall else 0.0
        figures[m]["identical_text_to_greedy"] = round(sum(a == b for a, b in zip(texts[m], texts["greedy"])) / len(prompts), 4)
    if references is not None:  # quality of every method's answers (lossy methods differ from greedy's)
        from tasc.evaluate import score_answers

        for m in methods:
            figures[m]["quality"] = score_answers(texts[m], references)
    baseline = min(figures[m]["wall_s"] for m in methods if m in GREEDY_METHODS)
    for m, fig in figures.items():
        fig["speedup"] = round(baseline / fig["wall_s"], 3) if fig["wall_s"] else 0.0
    if "pld" in figures:
        for fig in figures.values():
            fig["speedup_vs_pld"] = round(figures["pld"]["wall_s"] / fig["wall_s"], 3) if fig["wall_s"] else 0.0
    return {
        "model": lm.name,
        "device": lm.device,
        # the kernels of the model that ran, not of the machine: a GPU, bf16 or too-large model is not packed
        "machine": {**machine_info(), "cpu_linear": linear_kernels(lm.model)},
        "n_prompts": len(prompts),
        "max_new_tokens": config.max_new_tokens,
        "corpus_outputs": len(corpus_outputs),
        "spec": asdict(config.spec),  # the TASC-spec drafting parameters of this run
        "neighbour_index": bool(corpus_index is not None and corpus_index.neighbours is not None),
        "index_build_s": round(index_s, 3),
        "verify_costs": {k: list(v) for k, v in curves.items()},  # per model: pass of n tokens / pass of 1
        "cost_curve_s": round(curve_s, 2),
        # Per model: prompt tokens whose states were cached once (0 or absent: every prompt prefilled whole).
        "prefix_cache_tokens": {"model" if distinct[key] is lm else "ft": len(p.ids) for key, p in prefixes.items()},
        "baseline_wall_s": baseline,
        "methods": figures,
        "answers": {m: texts[m][:5] for m in methods},
    }


def overlap_warning(prompt_refs: Sequence[str], corpus_outputs: Sequence[str]) -> str | None:
    """A warning when the corpus contains reference outputs of the benchmark prompts (a leak)."""
    corpus = set(corpus_outputs)
    leaked = sum(ref in corpus for ref in prompt_refs)
    if leaked:
        return f"warning: {leaked} of {len(prompt_refs)} prompt reference outputs are in the corpus; drafts may be unrealistically good"
    return None


def format_table(report: dict[str, Any]) -> str:
    """The benchmark as a fixed-width text table."""
    header = f"{'method':<18}{'tok/s':>8}{'speedup':>9}{'vs pld':>8}{'tok/pass':>10}{'passes':>8}{'identical':>11}  quality"
    lines = [f"model={report['model']} device={report['device']} prompts={report['n_prompts']} max_new_tokens={report['max_new_tokens']}", header]
    for name, fig in report["methods"].items():
        lines.append(
            f"{name:<18}{fig['tokens_per_s']:>8.1f}{fig['speedup']:>8.2f}x"
            + (f"{fig['speedup_vs_pld']:>7.2f}x" if "speedup_vs_pld" in fig else f"{'-':>8}")  # no pld in this run
            + f"{fig['mean_accepted']:>10.2f}{fig['forward_passes']:>8}{fig['identical_to_greedy']:>11.2f}  {quality_text(fig.get('quality'), pair='{}={}', sep=' ')}"
        )
    return "\n".join(lines)

