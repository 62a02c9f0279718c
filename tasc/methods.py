"""The one registry of decoding methods: what a method name means, for every surface.

The Arena, the app's Benchmark, `tasc bench`, `tasc generate` and `tasc evaluate` all look methods up
here; nothing else decides which model a name answers with, where its drafts come from or whether
its output must equal greedy's.

A method is a model (which one answers) and an engine (how it decodes):
    loop    our verify loop (`tasc.spec.decode`) with a drafter; no drafter = plain greedy
    hf      transformers `generate` (greedy, prompt lookup, assisted generation): the baselines
    hybrid  one target pass, then the hybrid's small decoder writes alone (lossy)
    llamacpp  llama.cpp's own decoding through llama-cpp-python's `Llama` (greedy, prompt lookup): the
            baselines of a llama.cpp user (`tasc.spec.llamacpp_own`)

Where our loop runs is a setting of the resources, not of the method: `Resources.loop_engine` TORCH
(transformers, `tasc.spec.decode`) or LLAMACPP (llama.cpp's low-level API, `tasc.spec.llamacpp`), so
`tasc bench --engine llamacpp` runs tasc-spec on llama.cpp beside llamacpp-greedy and llamacpp-lookup.

Example:
    >>> get("tasc-spec").needs_corpus
    True
    >>> [m.name for m in METHODS.values() if m.arena][:2]
    ['tasc-spec', 'tasc-context']
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generator, Sequence

from tasc.compare.model_drafts import AssistConfig, DraftModelDrafter, MixedDrafter
from tasc.core.models import LoadedModel
from tasc.spec.drafts import MODEL, DraftSource, NoDraft, SpecConfig, tasc_drafter
from tasc.spec.ngram_index import CorpusIndex

if TYPE_CHECKING:  # the decode loop imports torch: only when a method runs (the CLI's --help stays light)
    from tasc.spec.decode import DecodeConfig, PrefixCache, Step

BASE = "base"  # the target model answers
FT = "ft"  # a fine-tuned model answers (TASC-ft: the enriched one)
LOOP, HF, HYBRID, LLAMACPP = "loop", "hf", "hybrid", "llamacpp"  # engines, see the module docstring
TORCH = "torch"  # our loop on transformers (LLAMACPP: on llama.cpp); the CLI's --engine
LOOP_ENGINES = (TORCH, LLAMACPP)
DRAFT_MODEL_DIR, HYBRID_DIR = "draft model", "hybrid model"  # trained directories a method may need


@dataclass(frozen=True)
class Method:
    """One decoding method, as every surface sees it."""

    name: str  # the value the CLI, the API and the benchmark JSON use
    label: str  # how the UI names it
    model: str = BASE  # which model answers: BASE or FT
    engine: str = LOOP  # LOOP, HF, HYBRID or LLAMACPP
    drafts: str = "none"  # none | pld | lookup | lookup-corpus | tasc | tasc-corpus | tasc-context | draft-model | mixed
    lossless: bool = True  # greedy output equal to its own model's plain greedy
    needs_corpus: bool = False  # drafts from the task corpus's index
    needs: str | None = None  # a trained directory: DRAFT_MODEL_DIR or HYBRID_DIR
    arena: bool = False  # offered in the Arena's right pane
    # HF only: transformers' static KV cache; on a GPU `generate` then compiles the forward with torch.compile
    # (transformers' recommended low-latency setup).
    compiled: bool = False

    @property
    def uses_tasc(self) -> bool:
        """Whether a TASC drafter proposes its drafts (so a verify-cost curve can cut them)."""
        return self.drafts in ("tasc", "tasc-corpus", "tasc-context", "mixed")


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("greedy", "Plain greedy (transformers generate)", engine=HF),
    Method("greedy-loop", "Plain greedy (our loop)"),
    Method("greedy-static", "Plain greedy (transformers generate, static cache; compiled on a GPU)", engine=HF, compiled=True),
    Method("pld", "Prompt lookup decoding (transformers)", engine=HF, drafts="pld"),
    Method("tasc-spec", "TASC-spec (drafts from the corpus and the prompt)", drafts="tasc", needs_corpus=True, arena=True),
    Method("tasc-context", "Prompt lookup (drafts from the prompt only)", drafts="tasc-context", arena=True),
    Method("tasc-corpus", "TASC-spec, corpus drafts only", drafts="tasc-corpus", needs_corpus=True),
    Method("tasc-ft", "TASC-ft (fine-tuned model, plain decoding)", model=FT, arena=True),
    Method("tasc-ft+spec", "TASC-ft + spec (fine-tuned model with TASC-spec)", model=FT, drafts="tasc", needs_corpus=True,
           arena=True),
    Method("draft-model", "Trained draft model (a small model drafts)", drafts="draft-model", needs=DRAFT_MODEL_DIR,
           arena=True),
    Method("draft-model-hf", "Trained draft model (transformers assisted generation)", engine=HF, drafts="draft-model",
           needs=DRAFT_MODEL_DIR),
    Method("draft-model+tasc", "Draft model + TASC (n-gram drafts first, else the draft model)", drafts="mixed",
           needs_corpus=True, needs=DRAFT_MODEL_DIR, arena=True),
    Method("hybrid", "Hybrid (small decoder on the model's prompt states; not verified)", engine=HYBRID, lossless=False,
           needs=HYBRID_DIR, arena=True),
    Method("llamacpp-greedy", "Plain greedy (llama.cpp's own loop)", engine=LLAMACPP),
    Method("llamacpp-lookup", "Prompt lookup decoding (llama.cpp, llama-cpp-python's LlamaPromptLookupDecoding, draft 8)",
           engine=LLAMACPP, drafts="lookup"),
    Method("llamacpp-lookup-corpus", "llama.cpp lookup decoding with a corpus n-gram cache (its algorithm ported to Python, draft 8)",
           engine=LLAMACPP, drafts="lookup-corpus", needs_corpus=True),
)}
GREEDY_BASELINES = ("greedy", "greedy-loop", "greedy-static", "llamacpp-greedy")  # a speed-up divides by the fastest of these run
DEFAULT_BENCH_METHODS = ("greedy", "greedy-loop", "pld", "tasc-spec")  # what a benchmark runs unless told
LLAMACPP_BENCH_METHODS = ("llamacpp-greedy", "llamacpp-lookup", "llamacpp-lookup-corpus", "tasc-spec")  # ... with --engine llamacpp
REFERENCE = {TORCH: "greedy", LLAMACPP: "llamacpp-greedy"}  # every answer is compared with this method's


def runs_on_llamacpp(method: Method, loop_engine: str) -> bool:
    """Whether a method runs on llama.cpp: its own baselines always, our loop's methods with --engine llamacpp."""
    return method.engine == LLAMACPP or (method.engine == LOOP and loop_engine == LLAMACPP)


def get(name: str) -> Method:
    """The method called `name`; a ValueError lists the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def same_answer_expected(method: Method) -> tuple[bool, str]:
    """Whether its answer must equal the target's plain greedy answer; if not, why (for a verdict line)."""
    if method.engine == HYBRID:
        return False, "The **hybrid** writes with its own small decoder and nothing verifies it"
    if method.model == FT:
        return False, "The right pane runs the **fine-tuned** model, a different model"
    return method.lossless, ""


@dataclass
class Resources:
    """What a method runs on, loaded by the caller (each surface loads and shares its own).

    Attributes:
        lm: the model that answers (for FT methods, the fine-tuned one), with its prompt format.
        index: TASC-spec's index of the task corpus in `lm`'s tokens (methods that need a corpus).
        draft_model: a loaded trained draft model (draft-model methods).
        hybrid: a loaded `HybridModel` (the hybrid method).
        spec: TASC-spec drafting settings.
        assist: draft-model drafting and mixing settings.
        context_keys: `normalised_keys` of `lm`'s tokenizer, computed once per model by the caller (None:
            the drafter computes them).
        llamacpp: `lm` on llama.cpp (`tasc.spec.llamacpp_own.LlamaCppEngine`), for LLAMACPP methods and for
            our loop when `loop_engine` is LLAMACPP.
        loop_engine: where our loop's methods run: TORCH or LLAMACPP.
        corpus_outputs: the task corpus's outputs, for llamacpp-lookup-corpus's static n-gram cache.
    """

    lm: LoadedModel
    index: CorpusIndex | None = None
    draft_model: Any = None
    hybrid: Any = None
    spec: SpecConfig = field(default_factory=SpecConfig)
    assist: AssistConfig = field(default_factory=AssistConfig)
    context_keys: Sequence[int] | None = None
    llamacpp: Any = None
    loop_engine: str = TORCH
    corpus_outputs: Sequence[str] | None = None

    def own_llamacpp(self, method: Method) -> Any:
        """llama.cpp's own decoding for a LLAMACPP method (`tasc.spec.llamacpp_own.OwnDecoding`)."""
        from tasc.spec.llamacpp_own import own_decoding

        self.check(method)
        outputs = self.corpus_outputs
        if method.drafts == "lookup-corpus" and not outputs:
            raise ValueError(f"method {method.name!r} drafts from a task corpus: give one")
        return own_decoding(self.llamacpp, method.drafts, lambda: self.lm.tokenizer(list(outputs or []), add_special_tokens=False)["input_ids"])

    def check(self, method: Method) -> None:
        """Raise ValueError naming what `method` needs and these resources lack."""
        if runs_on_llamacpp(method, self.loop_engine) and self.llamacpp is None:
            raise ValueError(f"method {method.name!r} runs on llama.cpp: load its GGUF (--engine llamacpp)")
        if method.needs_corpus and self.index is None:
            raise ValueError(f"method {method.name!r} drafts from a task corpus: give one")
        if method.needs == DRAFT_MODEL_DIR and self.draft_model is None:
            raise ValueError(f"method {method.name!r} needs a trained draft model (tasc train-draft)")
        if method.needs == HYBRID_DIR and self.hybrid is None:
            raise ValueError(f"method {method.name!r} needs a trained hybrid (tasc train-hybrid)")


def spec_config(method: Method, spec: SpecConfig) -> SpecConfig:
    """TASC-spec settings for a method: the corpus-only and context-only variants switch a source off."""
    if method.drafts == "tasc-corpus":
        return replace(spec, use_context=False)
    if method.drafts == "tasc-context":
        return replace(spec, use_corpus=False)
    return spec


def build_drafter(method: Method, res: Resources) -> DraftSource:
    """The drafter of a LOOP method (NoDraft for plain decoding).

    One drafter may answer many prompts in turn (its acceptance statistics keep learning), never two at once.
    """
    if method.engine != LOOP:
        raise ValueError(f"method {method.name!r} does not run in our verify loop (engine {method.engine})")
    res.check(method)
    if method.drafts == "none":
        return NoDraft()
    if method.drafts == "draft-model":
        return DraftModelDrafter(res.draft_model, res.assist, res.lm.eos_token_id)
    tasc = tasc_drafter(res.lm.tokenizer, res.index if method.drafts != "tasc-context" else None,
                        spec_config(method, res.spec), res.context_keys)
    if method.drafts == "mixed":
        return MixedDrafter(tasc, DraftModelDrafter(res.draft_model, res.assist, res.lm.eos_token_id), res.assist)
    return tasc


def hybrid_steps(res: Resources, prompt_ids: Sequence[int], config: DecodeConfig) -> Generator[Step, None, None]:
    """The hybrid's answer as one Step: it is not a verify loop (one target pass, then its own decoder)."""
    from tasc.spec.decode import Step

    r = res.hybrid.generate(res.lm.model, prompt_ids, config.max_new_tokens, res.lm.eos_token_id)
    yield Step(r.tokens, 0, [MODEL] * len(r.tokens), [], 0.0, r.wall_s, r.wall_s, True)


def own_llamacpp_steps(method: Method, res: Resources, prompt_ids: Sequence[int], config: DecodeConfig) -> Generator[Step, None, None]:
    """llama.cpp's own decoding (a LLAMACPP baseline) as one Step: its passes are inside llama-cpp-python."""
    from tasc.spec.decode import Step

    if config.do_sample:
        raise ValueError(f"method {method.name!r} is llama.cpp's greedy decoding: sampling needs one of our loop's methods")
    eos = {res.lm.eos_token_id} if res.lm.eos_token_id is not None else set()
    tokens, _, wall = res.own_llamacpp(method).generate(prompt_ids, config.max_new_tokens, eos)
    yield Step(tokens, 0, [MODEL] * len(tokens), [], 0.0, wall, wall, True)


def step_stream(method: Method, res: Resources, prompt_ids: Sequence[int], config: DecodeConfig,
                prefix: PrefixCache | None = None, drafter: DraftSource | None = None) -> Generator[Step, None, None]:
    """A method's answer as a stream of Steps (one per verify pass); not for HF methods.

    On llama.cpp (`runs_on_llamacpp`) our loop runs over its context; `prefix` is for the torch loop only
    (a llama.cpp context keeps the shared prompt prefix in its own KV cache). `drafter`: one of
    `build_drafter(method, res)` that answered earlier prompts (its acceptance statistics carry over, as
    in the benchmark); default: a new one.
    """
    from tasc.spec.decode import speculative_steps

    config.check()
    if method.engine in (HYBRID, LLAMACPP):
        res.check(method)
        return hybrid_steps(res, prompt_ids, config) if method.engine == HYBRID else own_llamacpp_steps(method, res, prompt_ids, config)
    if res.loop_engine == LLAMACPP:
        from tasc.spec.llamacpp import llamacpp_steps

        drafter = drafter or build_drafter(method, res)
        return llamacpp_steps(res.llamacpp.context, prompt_ids, drafter, config, res.lm.eos_token_id)
    return speculative_steps(res.lm.model, prompt_ids, drafter or build_drafter(method, res), config, res.lm.eos_token_id, prefix)


def arena_methods(has_finetuned: bool, has_draft_model: bool, has_hybrid: bool) -> list[Method]:
    """The Arena's right-pane methods that the models at hand allow, in registry order."""
    available = {None: True, DRAFT_MODEL_DIR: has_draft_model, HYBRID_DIR: has_hybrid}
    return [m for m in METHODS.values() if m.arena and available[m.needs] and (m.model != FT or has_finetuned)]
