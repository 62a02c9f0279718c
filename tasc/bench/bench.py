"""Benchmark decoding methods on the same prompts, in the same run, against plain greedy.

Every method answers every prompt; prompts are the outer loop and the order of methods rotates
from prompt to prompt, so slow drifts of the machine (other processes, thermal) spread over all
methods instead of biasing one. A warm-up (excluded) runs each method first. The baseline wall
time is the faster of transformers' `generate(do_sample=False)` and our own plain loop (with
`engine="llamacpp"`: of llama.cpp's own greedy loop and ours on llama.cpp, and every answer is
compared with llama.cpp's own greedy one).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from tasc.bench.report import machine_info, quality_text
from tasc.bench.runs import PHASES, HfSettings, MethodRun, method_runner
from tasc.compare.model_drafts import AssistConfig
from tasc.core.cpu_kernels import linear_kernels
from tasc.core.models import LoadedModel, load_model
from tasc.core.progress import Progress, ProgressFn, check_cancel
from tasc.methods import (
    BASE,
    DEFAULT_BENCH_METHODS,
    DRAFT_MODEL_DIR,
    FT,
    GREEDY_BASELINES,
    HYBRID_DIR,
    LLAMACPP,
    LOOP_ENGINES,
    METHODS,
    REFERENCE,
    TORCH,
    Method,
    Resources,
    get,
    runs_on_llamacpp,
)
from tasc.spec.decode import DecodeConfig, PrefixCache, measure_verify_costs
from tasc.spec.drafts import SpecConfig, build_corpus_index
from tasc.spec.lazy_head import lazy_head_supported
from tasc.spec.ngram_index import normalised_keys


@dataclass
class BenchConfig:
    """What to run; `check()` validates it where it is built."""

    methods: Sequence[str] = DEFAULT_BENCH_METHODS  # decoding methods, names from `tasc.methods.METHODS`
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # answer cap (greedy: no sampling)
    warmup: int = 2  # prompts run by every method before timing starts (not counted)
    hf: HfSettings = field(default_factory=HfSettings)  # transformers prompt lookup settings (pld)
    spec: SpecConfig = field(default_factory=SpecConfig)  # TASC-spec drafting parameters
    draft_model: str | None = None  # draft model directory (tasc train-draft) for the draft-model methods
    hybrid_model: str | None = None  # hybrid directory (tasc train-hybrid) for the hybrid method
    ft_model: str | None = None  # enriched fine-tuned model directory for the tasc-ft methods
    assist: AssistConfig = field(default_factory=AssistConfig)  # draft-model drafting and mixing parameters
    # Measure each model's verify-cost curve first and cut TASC chain drafts by it. Off by default: on 50
    # SNIPS prompts it lost 5% (a gain of 1-4% on 20 was noise), see README.
    cost_curve: bool = False
    # Cache the states of the prefix all prompts share (system turn, template) once per model, for every
    # method but pld and transformers' assisted generation.
    prefix_cache: bool = True
    engine: str = TORCH  # where our loop's methods run: "torch" or "llamacpp" (`tasc.methods.LOOP_ENGINES`)
    gguf: str | None = None  # llama.cpp: the target's GGUF file, or "shipped" (None: the model exported at first use)
    gguf_type: str = "f32"  # llama.cpp: the type an exported GGUF's weights get (f32 = the torch weights exactly)

    def check(self) -> "BenchConfig":
        """Raise ValueError naming the first bad setting; return self."""
        if self.engine not in LOOP_ENGINES:
            raise ValueError(f"engine must be one of {', '.join(LOOP_ENGINES)}, got {self.engine!r}")
        for name in self.methods:
            get(name)
        self.decode.check()
        if self.decode.do_sample:
            raise ValueError("the benchmark compares greedy answers: sampling is not benchmarked")
        self.spec.check()
        if self.warmup < 0:
            raise ValueError(f"warm-up prompts must be >= 0, got {self.warmup}")
        needs = {get(m).needs for m in self.methods}
        if DRAFT_MODEL_DIR in needs and not self.draft_model:
            raise ValueError("the draft-model methods need a draft model directory: --draft-model DIR (from tasc train-draft)")
        if HYBRID_DIR in needs and not self.hybrid_model:
            raise ValueError("method 'hybrid' needs a hybrid model directory: --hybrid-model DIR (from tasc train-hybrid)")
        if any(get(m).model == FT for m in self.methods) and not self.ft_model:
            raise ValueError("methods tasc-ft and tasc-ft+spec need the enriched fine-tuned model: --ft-model DIR")
        return self


def _strip_eos(tokens: list[int], eos: int | None) -> list[int]:
    """Answer tokens without the final EOS, so methods that stop differently compare equal."""
    return tokens[:-1] if tokens and tokens[-1] == eos else tokens


def time_split(runs: list[MethodRun], wall: float, passes: int) -> dict[str, dict[str, float]] | None:
    """Where our loop's wall time went, per phase (`PHASES`, then "rest": the loop's own Python and the
    generator around it): {phase: {"ms_per_pass", "share"}}; None for methods our loop does not run.

    Example:
        2 passes, 0.1 s wall, forward 0.08 s in all -> {"forward": {"ms_per_pass": 40.0, "share": 0.8}, ...}
    """
    if not passes or not wall or any(r.phases is None for r in runs):
        return None
    seconds = {p: sum((r.phases or {})[p] for r in runs) for p in PHASES}
    seconds["rest"] = max(wall - sum(seconds.values()), 0.0)
    return {p: {"ms_per_pass": round(1000 * s / passes, 3), "share": round(s / wall, 4)} for p, s in seconds.items()}


def summarise(runs: list[MethodRun], reference: list[list[int]], eos: int | None) -> dict[str, Any]:
    """Fold one method's per-prompt runs into the figures the report shows."""
    new_tokens = sum(len(r.tokens) for r in runs)
    wall = sum(r.wall_s for r in runs)
    passes = sum(r.forward_passes for r in runs)
    identical = sum(_strip_eos(r.tokens, eos) == _strip_eos(ref, eos) for r, ref in zip(runs, reference, strict=False))
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
        "time_split": time_split(runs, wall, passes),
        "step_lengths": [n for r in runs for n in r.step_lengths],
    }


def _resources(lm: LoadedModel, methods: Sequence[Method], corpus_outputs: Sequence[str],
               corpus_inputs: Sequence[str] | None, config: BenchConfig) -> dict[str, Resources]:
    """What the methods run on, per model kind: the target ("base") and the fine-tuned model ("ft")."""
    kinds = {m.model for m in methods}
    models = {kind: lm if kind != FT else load_model(config.ft_model or "", device=lm.device, dtype=lm.model.dtype) for kind in kinds}
    needs = {m.needs for m in methods}
    draft = hybrid = None
    if DRAFT_MODEL_DIR in needs:
        from tasc.compare.draft_model import load_draft_model

        draft = load_draft_model(config.draft_model or "", lm)
    if HYBRID_DIR in needs:
        from tasc.compare.hybrid import HybridModel

        hybrid = HybridModel.load(config.hybrid_model or "", lm)
    out = {}
    for kind, x in models.items():
        with_corpus = any(m.needs_corpus and m.model == kind for m in methods)
        index = build_corpus_index(x.tokenizer, corpus_outputs, corpus_inputs, x.prompt_format) if with_corpus else None
        drafts = any(m.uses_tasc and m.model == kind for m in methods)  # the keys decode the whole vocabulary once
        keys = normalised_keys(x.tokenizer) if drafts and config.spec.normalise_context else None
        out[kind] = Resources(x, index, draft, hybrid, config.spec, config.assist, keys,
                              _llamacpp_engine(kind, x, methods, config), config.engine, corpus_outputs)
    return out


def _llamacpp_engine(kind: str, lm: LoadedModel, methods: Sequence[Method], config: BenchConfig) -> Any:
    """The llama.cpp engine of one model kind when one of its methods runs there, else None."""
    if not any(runs_on_llamacpp(m, config.engine) and m.model == kind for m in methods):
        return None
    from tasc.spec.llamacpp_own import engine_for

    return engine_for(lm.name, config.gguf if kind == BASE else None, config.gguf_type)


def _cost_curves(methods: Sequence[Method], res: dict[str, Resources], config: BenchConfig,
                 prompt: str) -> dict[str, tuple[float, ...]]:
    """Each model's verify-cost curve, measured before timing starts (a few seconds, reported)."""
    if not config.cost_curve or config.spec.max_branches:  # tree drafts keep the token-cost rule
        return {}
    curves = {}
    for kind in sorted({m.model for m in methods if m.uses_tasc}):
        x = res[kind].lm
        ids = x.prompt_format.prompt_ids(x.tokenizer, prompt)
        if res[kind].loop_engine == LLAMACPP:  # our loop runs on llama.cpp: its own cost curve
            from tasc.spec.llamacpp import measure_llamacpp_costs

            curves[kind] = measure_llamacpp_costs(res[kind].llamacpp.context, ids)
        else:
            curves[kind] = measure_verify_costs(x.model, ids)
    return curves


def _time_methods(runners: dict[str, Any], prompt_ids: dict[str, list[list[int]]], warmup: int,
                  on_progress: ProgressFn | None, cancel: threading.Event | None) -> dict[str, list[MethodRun]]:
    """Every method on every prompt, after an untimed warm-up; the order of methods rotates per prompt."""
    methods = list(runners)
    n = len(next(iter(prompt_ids.values())))
    for i in range(min(warmup, n)):
        for method in methods:
            runners[method](prompt_ids[method][i])
    runs: dict[str, list[MethodRun]] = {m: [] for m in methods}
    t0 = time.perf_counter()
    for i in range(n):
        check_cancel(cancel)
        for method in methods[i % len(methods):] + methods[: i % len(methods)]:
            runs[method].append(runners[method](prompt_ids[method][i]))
        if on_progress:
            on_progress(Progress("bench", i + 1, n, time.perf_counter() - t0, message=f"prompt {i + 1}"))
    return runs


def _figures(runs: dict[str, list[MethodRun]], models: dict[str, LoadedModel], eos: int | None,
             references: Sequence[Sequence[str]] | None, greedy: str = "greedy",
             inputs: Sequence[str] | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Per method: summary figures (characters per second, quality, speed-ups against the greedy baselines) and answers.

    `greedy` names the method every answer is compared with (llama.cpp's own greedy on that engine).
    """
    # Token ids compare within one tokenizer: the TASC-ft methods against the fine-tuned model's greedy.
    reference = [r.tokens for r in runs[greedy]]
    ft_reference = [r.tokens for r in runs["tasc-ft"]] if "tasc-ft" in runs else reference
    figures = {m: summarise(runs[m], ft_reference if METHODS[m].model == FT else reference, eos) for m in runs}
    texts = {m: [models[m].tokenizer.decode(r.tokens, skip_special_tokens=True).strip() for r in runs[m]] for m in runs}
    for m in runs:  # characters per second compare methods whose tokenizers differ
        wall = figures[m]["wall_s"]
        figures[m]["chars_per_s"] = round(sum(map(len, texts[m])) / wall, 1) if wall else 0.0
        figures[m]["identical_text_to_greedy"] = round(sum(a == b for a, b in zip(texts[m], texts[greedy], strict=False)) / len(reference), 4)
    if "greedy-loop" in runs:  # against our own one-token loop: on a GPU in bf16 a wide pass may round otherwise
        loop = [r.tokens for r in runs["greedy-loop"]]
        for m in runs:
            if METHODS[m].model != FT:
                same = sum(_strip_eos(r.tokens, eos) == _strip_eos(ref, eos) for r, ref in zip(runs[m], loop, strict=True))
                figures[m]["identical_to_greedy_loop"] = round(same / len(loop), 4)
    if references is not None:  # quality of every method's answers (lossy methods differ from greedy's)
        from tasc.bench.evaluate import score_answers

        for m in runs:
            figures[m]["quality"] = score_answers(texts[m], references, inputs)  # faithfulness for data-to-text
    baseline = min(figures[m]["wall_s"] for m in runs if m in GREEDY_BASELINES)
    for fig in figures.values():
        fig["speedup"] = round(baseline / fig["wall_s"], 3) if fig["wall_s"] else 0.0
        if "pld" in figures:
            fig["speedup_vs_pld"] = round(figures["pld"]["wall_s"] / fig["wall_s"], 3) if fig["wall_s"] else 0.0
    return figures, texts


def _lineup(config: BenchConfig, prompts: Sequence[str], references: Sequence[Sequence[str]] | None) -> list[Method]:
    """The methods to time, greedy first (it is every method's reference); the inputs checked."""
    if not prompts:
        raise ValueError("no prompts to benchmark")
    if references is not None and len(references) != len(prompts):
        raise ValueError(f"got {len(references)} reference lists for {len(prompts)} prompts")
    return [METHODS[m] for m in dict.fromkeys([REFERENCE[config.engine], *config.methods])]


def _runner(method: Method, res: Resources, config: BenchConfig, curves: dict[str, tuple[float, ...]],
            prefix: PrefixCache | None) -> Any:
    """A method's runner; TASC drafts are cut by its model's verify-cost curve when one was measured."""
    if method.uses_tasc and method.model in curves:
        res = replace(res, spec=replace(res.spec, verify_costs=curves[method.model]))
    return method_runner(method, res, config.decode, config.hf, prefix)


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
    config = (config or BenchConfig()).check()
    methods = _lineup(config, prompts, references)
    t_index = time.perf_counter()
    res = _resources(lm, methods, corpus_outputs, corpus_inputs, config)
    index_s = time.perf_counter() - t_index
    t_curve = time.perf_counter()
    curves = _cost_curves(methods, res, config, prompts[0])
    curve_s = time.perf_counter() - t_curve
    prefixes = {kind: PrefixCache(r.lm.model, r.lm.prompt_format.shared_prefix_ids(r.lm.tokenizer))
                for kind, r in res.items()} if config.prefix_cache else {}
    runners = {m.name: _runner(m, res[m.model], config, curves, prefixes.get(m.model)) for m in methods}
    ids = {kind: [r.lm.prompt_format.prompt_ids(r.lm.tokenizer, p) for p in prompts] for kind, r in res.items()}
    runs = _time_methods(runners, {m.name: ids[m.model] for m in methods}, config.warmup, on_progress, cancel)
    figures, texts = _figures(runs, {m.name: res[m.model].lm for m in methods}, lm.eos_token_id, references,
                              REFERENCE[config.engine], prompts)
    llamacpp = res[BASE].llamacpp if BASE in res else None
    return {
        "model": lm.name,
        "device": lm.device,
        "engine": config.engine,  # where our loop's methods ran
        "llamacpp": llamacpp.describe() if llamacpp is not None else None,
        # the kernels of the model that ran, not of the machine: a GPU, bf16 or too-large model is not packed
        "machine": {**machine_info(), "cpu_linear": linear_kernels(lm.model)},
        "n_prompts": len(prompts),
        "max_new_tokens": config.decode.max_new_tokens,
        "static_cache": config.decode.static_cache,
        "lazy_head": config.decode.lazy_head and lazy_head_supported(lm.model),  # the output head only over rows acceptance reaches
        "cuda_graphs": config.decode.graphs is not False and lm.device.startswith("cuda"),  # our loop's KV cache: preallocated, or transformers' DynamicCache
        "corpus_outputs": len(corpus_outputs),
        "spec": asdict(config.spec),  # the TASC-spec drafting parameters of this run
        "neighbour_index": getattr(res[BASE].index, "neighbours", None) is not None,
        "index_build_s": round(index_s, 3),
        "verify_costs": {("model" if k == "base" else k): list(v) for k, v in curves.items()},  # pass of n tokens / pass of 1
        "cost_curve_s": round(curve_s, 2),
        # Per model: prompt tokens whose states were cached once (0 or absent: every prompt prefilled whole).
        "prefix_cache_tokens": {("model" if k == "base" else k): len(p.ids) for k, p in prefixes.items()},
        "baseline_wall_s": min(figures[m]["wall_s"] for m in runs if m in GREEDY_BASELINES),
        "methods": figures,
        "answers": {m.name: texts[m.name][:5] for m in methods},
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
    engine = f" engine={report['engine']} gguf={Path(report['llamacpp']['gguf']).name}" if report.get("llamacpp") else ""
    lines = [f"model={report['model']} device={report['device']}{engine} prompts={report['n_prompts']} max_new_tokens={report['max_new_tokens']}",
             header]
    for name, fig in report["methods"].items():
        lines.append(
            f"{name:<18}{fig['tokens_per_s']:>8.1f}{fig['speedup']:>8.2f}x"
            + (f"{fig['speedup_vs_pld']:>7.2f}x" if "speedup_vs_pld" in fig else f"{'-':>8}")  # no pld in this run
            + f"{fig['mean_accepted']:>10.2f}{fig['forward_passes']:>8}{fig['identical_to_greedy']:>11.2f}  {quality_text(fig.get('quality'), pair='{}={}', sep=' ')}"
        )
    split = {name: fig["time_split"] for name, fig in report["methods"].items() if fig.get("time_split")}
    if split:  # where our loop's time goes, ms per pass (share of wall time)
        phases = (*PHASES, "rest")
        lines += ["", "ms per pass (share)".ljust(18) + "".join(f"{p:>16}" for p in phases)]
        for name, s in split.items():
            lines.append(f"{name:<18}" + "".join(f"{s[p]['ms_per_pass']:>8.2f} ({s[p]['share']:>4.0%})" for p in phases))
    return "\n".join(lines)

