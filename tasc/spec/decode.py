"""The verify loop: speculative decoding on a transformers causal LM with a KV cache.

One function, `speculative_steps`, streams one `Step` per forward pass. With an empty draft a step
is a plain decoding step, so plain greedy, prompt lookup style, TASC-spec and any later drafter
share this loop and its timings. Batch size 1 is the target (interactive use and the Arena).

Greedy mode is lossless: a draft token is kept only if it equals the model's argmax at its
position, so the emitted ids are those of plain greedy decoding. Sampling mode uses the
speculative-sampling rule for a deterministic draft (draft distribution q = one-hot): accept draft
token d with probability p(d); on rejection sample from p with d removed; so every emitted token is
distributed exactly as the model's (temperature / top-p warped) distribution.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Generator, Sequence

import torch

from tasc.spec.drafts import MODEL, Draft, DraftSource, NoDraft
from tasc.spec.graphs import StaticVerifier, compile_forward, graphs_available
from tasc.spec.kv_cache import SlabCache, slab_cache, slab_supported
from tasc.spec.lazy_head import FIRST_ROWS, LazyLogits, accept_greedy_lazy, body_forward, lazy_head_supported

CACHE_SLACK = 64  # KV positions past prompt + answer a static cache keeps for a pass's draft (a tree's side branches)


@dataclass
class Step:
    """One verify pass.

    Attributes:
        tokens: tokens emitted by this pass (accepted draft tokens, then one model token),
            cut at EOS and at the token budget.
        n_accepted: how many of `tokens` are accepted draft tokens.
        sources: per emitted token, "corpus" / "context" for accepted draft tokens, "model" otherwise.
        draft: the tokens that were proposed.
        draft_s: seconds in the drafter's `propose`.
        forward_s: seconds in the model call alone (device-synchronised on a GPU).
        elapsed_s: seconds since the request started, at the end of this step (setup and prefill included).
        finished: True when EOS was emitted or the token budget is spent.
        accept_s: seconds choosing the accepted tokens from the logits and rolling the KV cache back.
        update_s: seconds emitting (EOS and budget cut) and in the drafter's `update`.
        setup_s: per-answer setup before the first pass (KV cache or prefix fork, `drafter.start`); first step only.
    """

    tokens: list[int]
    n_accepted: int
    sources: list[str]
    draft: list[int]
    draft_s: float
    forward_s: float
    elapsed_s: float
    finished: bool = False
    accept_s: float = 0.0
    update_s: float = 0.0
    setup_s: float = 0.0

    @property
    def busy_s(self) -> float:
        """Seconds this step's own work took (setup, drafting, forward, acceptance, update)."""
        return self.setup_s + self.draft_s + self.forward_s + self.accept_s + self.update_s


MAX_NEW_TOKENS = 512  # the longest answer any surface (Arena, API, CLI, benchmark) asks for


@dataclass
class DecodeConfig:
    """Generation settings shared by all methods."""

    max_new_tokens: int = 128  # answer length cap, in tokens
    do_sample: bool = False  # False: greedy (lossless); True: speculative sampling
    temperature: float = 1.0  # sampling temperature (do_sample only)
    top_p: float = 1.0  # nucleus sampling mass (do_sample only)
    seed: int | None = None  # seed for sampling, for reproducible runs
    static_cache: bool = True  # preallocated KV cache (`tasc.spec.kv_cache`); False: transformers' DynamicCache
    lazy_head: bool = True  # greedy chains on a CPU: the output head only over the rows acceptance reaches (`tasc.spec.lazy_head`)
    # Bucketed passes over transformers' StaticCache, compiled as CUDA graphs (`tasc.spec.graphs`). None: on a
    # CUDA model; True forces the bucketed path (eager on a CPU: for tests); False never. Trees run their main chain.
    graphs: bool | None = None

    def check(self) -> "DecodeConfig":
        """Raise ValueError naming the first bad setting; return self, so a caller can check where it builds."""
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS:
            raise ValueError(f"max new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, got {n!r}")
        if self.do_sample and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a number above 0, got {self.temperature!r}")
        if self.do_sample and not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p!r}")
        return self


@dataclass
class GenerationResult:
    """A finished generation: the answer's token ids and every step that produced them."""

    tokens: list[int]
    steps: list[Step] = field(default_factory=list)

    @property
    def forward_passes(self) -> int:
        """Forward passes, the prefill included."""
        return len(self.steps)

    @property
    def accepted(self) -> int:
        """Draft tokens accepted in all."""
        return sum(s.n_accepted for s in self.steps)

    @property
    def wall_s(self) -> float:
        """Wall time from request to last token."""
        return self.steps[-1].elapsed_s if self.steps else 0.0


def warp_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Softmax of temperature-scaled logits restricted to the top-p nucleus.

    Args:
        logits: (N, V) float logits.
    Returns:
        (N, V) probabilities, each row summing to 1.
    """
    probs = torch.softmax(logits.float() / max(temperature, 1e-5), dim=-1)  # (N, V)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def accept_greedy(draft: Sequence[int], logits: torch.Tensor) -> tuple[int, int]:
    """Length of the draft prefix equal to the argmax, and the model's token after it.

    Args:
        draft: k proposed tokens.
        logits: (k + 1, V) logits at the pending token and at each draft token.
    """
    preds = logits.argmax(-1).tolist()  # (k + 1,)
    n = 0
    while n < len(draft) and draft[n] == preds[n]:
        n += 1
    return n, preds[n]


def accept_sampling(
    draft: Sequence[int], logits: torch.Tensor, config: DecodeConfig, generator: torch.Generator | None
) -> tuple[int, int]:
    """Speculative-sampling acceptance for a deterministic draft; returns (n accepted, next token)."""
    probs = warp_probs(logits, config.temperature, config.top_p)  # (k + 1, V)
    for i, token in enumerate(draft):
        p = probs[i, token].item()
        if torch.rand((), generator=generator).item() < p:
            continue
        residual = probs[i].clone()
        residual[token] = 0.0  # q is one-hot on the draft token: max(0, p - q) removes it
        total = residual.sum()
        if total <= 0:  # p(d) was 1 within rounding; the draft token is the only choice
            return i + 1, int(torch.multinomial(probs[i + 1], 1, generator=generator))
        return i, int(torch.multinomial(residual / total, 1, generator=generator))
    return len(draft), int(torch.multinomial(probs[len(draft)], 1, generator=generator))


def accept_greedy_tree(draft: Draft, logits: torch.Tensor) -> tuple[list[int], int]:
    """The draft tokens on the longest path the model's argmax follows, and the model's token after it.

    Args:
        draft: a tree draft of n tokens.
        logits: (n + 1, V) logits at the pending token (row 0) and at each draft token (row i + 1).
    Returns:
        (indices of the accepted draft tokens from the root down, next token).
    """
    preds = logits.argmax(-1).tolist()  # (n + 1,): row node + 1 holds the model's token after node
    path = draft.walk(lambda node, depth: preds[node + 1])
    return path, preds[path[-1] + 1 if path else 0]


def accept_sampling_tree(
    draft: Draft, logits: torch.Tensor, config: DecodeConfig, generator: torch.Generator | None
) -> tuple[list[int], int]:
    """Speculative sampling over a tree of deterministic drafts.

    At each accepted node its children are tried in order: child c is accepted with probability
    p(c) under the current distribution p; on rejection c is removed from p and p renormalised.
    So P(c1) = p(c1), P(c2) = (1 - p(c1)) * p(c2) / (1 - p(c1)) = p(c2), ...: every emitted token
    is distributed exactly as the model's. When all children fail, the token is sampled from the
    remaining p.
    """
    probs = warp_probs(logits, config.temperature, config.top_p)  # (n + 1, V)
    children = draft.children()
    path, node = [], -1
    while True:
        p = probs[node + 1].clone()
        for child in children.get(node, []):
            token = draft.tokens[child]
            if torch.rand((), generator=generator).item() < p[token].item():
                path.append(child)
                node = child
                break
            p[token] = 0.0
            total = p.sum()
            if total <= 0:  # every remaining token was tried; rounding left no mass
                return path, token
            p = p / total
        else:
            return path, int(torch.multinomial(p, 1, generator=generator))


def tree_inputs(pending: int, draft: Draft, past_len: int, device: Any, mask_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, position ids and 4D attention mask of one tree verify pass.

    Row 0 is the pending token, row i + 1 draft token i; each row sees the cache, its ancestors
    and itself, and sits at position past_len + its depth, so every branch is computed exactly as
    if it were the only continuation.

    Args:
        mask_dtype: None for a boolean mask (True: attend; SDPA), else the float dtype of an additive
            mask (0 or the dtype's minimum; eager attention).
    Returns:
        ids (1, n + 1), positions (1, n + 1), mask (1, 1, n + 1, past_len + n + 1).
    """
    n = len(draft)
    visible = torch.zeros(n + 1, n + 1, dtype=torch.bool)  # (q, q): ancestors and self
    visible[0, 0] = True
    depth = [0]
    for i, parent in enumerate(draft.parent_list()):
        visible[i + 1] = visible[parent + 1]
        visible[i + 1, i + 1] = True
        depth.append(depth[parent + 1] + 1)
    mask = torch.cat([torch.ones(n + 1, past_len, dtype=torch.bool), visible], dim=1)[None, None]
    if mask_dtype is not None:
        mask = torch.zeros(mask.shape, dtype=mask_dtype).masked_fill(~mask, torch.finfo(mask_dtype).min)
    ids = torch.tensor([[pending] + draft.tokens], device=device)
    positions = torch.tensor([[past_len + d for d in depth]], device=device)
    return ids, positions, mask.to(device)


def keep_cache_positions(cache: Any, start: int, keep: Sequence[int]) -> None:
    """Keep the cache's first `start` positions and then only the positions `keep` (ascending)."""
    if isinstance(cache, (SlabCache, StaticVerifier)):
        cache.keep_positions(start, keep)
        return
    index = None
    for layer in cache.layers:
        if index is None:
            index = torch.tensor(list(keep), dtype=torch.long, device=layer.keys.device)
        layer.keys = torch.cat([layer.keys[..., :start, :], layer.keys.index_select(-2, index)], dim=-2)
        layer.values = torch.cat([layer.values[..., :start, :], layer.values.index_select(-2, index)], dim=-2)


def tree_mask_dtype(model: Any) -> torch.dtype | None | bool:
    """How this model takes a custom tree mask: None (boolean, SDPA), a float dtype (eager), or False (cannot)."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl == "sdpa":
        return None
    if impl == "eager":
        return model.dtype
    return False  # flash / flex kernels take no arbitrary mask: trees fall back to their main chain


_COMPILED: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()  # model -> its compiled forward
_COMPILE_LOCK = threading.Lock()


def use_graphs(model: Any, config: DecodeConfig) -> bool:
    """Whether this answer takes the bucketed static path (`tasc.spec.graphs`): by default on a CUDA model."""
    return graphs_available(model) if config.graphs is None else config.graphs


def compiled_forward(model: Any) -> Any:
    """The model's forward compiled for CUDA-graph replay, made once per model (a CPU model: the plain forward)."""
    with _COMPILE_LOCK:
        if model not in _COMPILED:
            _COMPILED[model] = compile_forward(model, enabled=model.device.type == "cuda")
        return _COMPILED[model]


def _new_cache(model: Any) -> Any:
    """An empty dynamic KV cache for this model."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


class PrefixCache:
    """The KV cache of a token prefix every prompt starts with (system message, template, shots), run once.

    Prefill is the largest single pass of a short answer: on 2 CPU cores a 32-token SNIPS prompt costs
    about 2.7 single-token passes, a quarter of a TASC-ft+spec answer's time, and 20 of those tokens are
    the chat template's system turn, the same for every prompt. Forking this cache (a copy of a few KB
    per layer) and prefilling only the rest gives the same states up to float rounding, as any prompt
    cache in a serving engine does (vLLM's automatic prefix caching).
    """

    def __init__(self, model: Any, prefix_ids: Sequence[int]) -> None:
        self.ids = list(prefix_ids)
        self.cache = _new_cache(model)
        if self.ids:
            with torch.inference_mode():
                model(torch.tensor([self.ids], device=model.device), past_key_values=self.cache, use_cache=True, logits_to_keep=1)

    def covers(self, prompt_ids: Sequence[int]) -> int:
        """How many leading prompt tokens the cache holds: all of the prefix, or 0 when the prompt does not start with it.

        At least one prompt token is left to prefill: its logits give the first answer token.
        """
        n = len(self.ids)
        return n if 0 < n < len(prompt_ids) and list(prompt_ids[:n]) == self.ids else 0

    def fork(self) -> Any:
        """A copy of the cache that a generation may extend without touching this one."""
        import copy

        return copy.deepcopy(self.cache)


_SHARED_PREFIXES: "weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], PrefixCache]]" = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()
MAX_PREFIXES_PER_MODEL = 8  # prompt formats (system turns, shot counts) kept per model


def shared_prefix_cache(model: Any, prefix_ids: Sequence[int]) -> PrefixCache:
    """This model's cache of `prefix_ids`, built at first use and kept while the model lives (for servers, the Arena)."""
    key = tuple(prefix_ids)
    with _SHARED_LOCK:
        caches = _SHARED_PREFIXES.setdefault(model, {})
        if key not in caches:
            if len(caches) >= MAX_PREFIXES_PER_MODEL:
                caches.pop(next(iter(caches)))  # the oldest format goes first
            caches[key] = PrefixCache(model, key)
        return caches[key]


def _sampler(config: DecodeConfig) -> torch.Generator | None:
    """The seeded random generator of a sampling run; None for greedy."""
    if not config.do_sample:
        return None
    generator = torch.Generator(device="cpu")
    generator.manual_seed(config.seed if config.seed is not None else torch.seed())
    return generator


def _start_cache(model: Any, prompt_ids: Sequence[int], prefix: PrefixCache | None, config: DecodeConfig) -> tuple[Any, list[int]]:
    """The KV cache to start from (a copy of `prefix` when the prompt starts with it) and the prompt tokens left to feed.

    The first pass runs those (uncached) prompt tokens and already verifies a draft of the answer's
    start (corpus answers mostly begin alike), so a good draft saves a whole pass.
    """
    cached = prefix.covers(prompt_ids) if prefix is not None else 0
    start = prefix if cached else None
    if use_graphs(model, config):
        verifier = StaticVerifier(model, len(prompt_ids) + config.max_new_tokens + CACHE_SLACK, 0, compiled_forward(model))
        if start is not None:
            verifier.load(start.cache)
        return verifier, list(prompt_ids[cached:])
    if config.static_cache and slab_supported(model):  # room for the prompt, the answer and a pass's largest draft
        cache = slab_cache(model, len(prompt_ids) + config.max_new_tokens + CACHE_SLACK, start.cache if start else None)
    else:
        cache = start.fork() if start else _new_cache(model)
    return cache, list(prompt_ids[cached:])


def _forward(model: Any, cache: Any, head: list[int], draft: Draft, device: Any, mask_dtype: torch.dtype | None | bool,
             lazy_head: bool = False) -> torch.Tensor | LazyLogits:
    """One pass over the head and the draft; logits only where a token is judged: (k + 1, V).

    A chain is fed after the head; a tree's branches each see only their own ancestors (one-token head).
    With `lazy_head` (greedy, a plain-head model) a chain wider than the head's first batch returns
    `LazyLogits`: the output head then runs only over the rows acceptance reaches (`tasc.spec.lazy_head`).
    """
    if isinstance(cache, StaticVerifier):  # bucketed widths over a static cache (a chain: trees were cut)
        return cache.forward(head + draft.tokens, len(draft) + 1)
    if draft.parents is None:
        inputs = torch.tensor([head + draft.tokens], device=device)  # (1, len(head) + k)
        if lazy_head and len(draft) + 1 > FIRST_ROWS:
            logits = body_forward(model, inputs, cache, len(draft) + 1)
            logits.extend()  # the first rows belong to the pass: most passes need no more
            return logits
        out = model(inputs, past_key_values=cache, use_cache=True, logits_to_keep=len(draft) + 1)
    else:
        assert not isinstance(mask_dtype, bool), "a tree reaches the model only where it takes a mask"
        ids, positions, mask = tree_inputs(head[0], draft, cache.get_seq_length(), device, mask_dtype)
        out = model(ids, past_key_values=cache, use_cache=True, position_ids=positions, attention_mask=mask)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels run asynchronously: the forward's time ends when they do
    return out.logits[0]


def _accept(draft: Draft, logits: torch.Tensor | LazyLogits, config: DecodeConfig, generator: torch.Generator | None) -> tuple[list[int], int]:
    """The accepted draft tokens (indices, from the root down) and the model's token after them."""
    if isinstance(logits, LazyLogits):  # `_forward` returns one only for a greedy chain
        n_acc, next_token = accept_greedy_lazy(draft.tokens, logits)
        return list(range(n_acc)), next_token
    logits = logits.float()
    if draft.parents is not None:
        if config.do_sample:
            return accept_sampling_tree(draft, logits, config, generator)
        return accept_greedy_tree(draft, logits)
    if config.do_sample:
        n_acc, next_token = accept_sampling(draft.tokens, logits, config, generator)
    else:
        n_acc, next_token = accept_greedy(draft.tokens, logits)
    return list(range(n_acc)), next_token


def _roll_back(cache: Any, n_draft: int, path: list[int]) -> None:
    """Keep in the cache the pending token and the accepted draft tokens `path` of an `n_draft`-token draft."""
    if path == list(range(len(path))):  # a prefix of the main chain: drop the tail
        rejected = n_draft - len(path)
        if rejected:
            cache.crop(-rejected)  # transformers 5: a negative count removes that many positions
    else:  # a side branch: gather its positions
        start = cache.get_seq_length() - n_draft
        keep_cache_positions(cache, start, [start + i for i in path])


def _emit(draft: Draft, path: list[int], next_token: int, eos: set[int], room: int) -> tuple[list[int], list[str], bool]:
    """A pass's tokens (accepted draft tokens, then the model's) and their sources, cut at EOS and after `room`
    tokens; and whether the answer is finished."""
    emitted = [draft.tokens[i] for i in path] + [next_token]
    sources = [draft.sources[i] for i in path] + [MODEL]
    finished = False
    for i, token in enumerate(emitted):
        if token in eos:
            emitted, sources, finished = emitted[: i + 1], sources[: i + 1], True
            break
    if len(emitted) >= room:
        emitted, sources, finished = emitted[:room], sources[:room], True
    return emitted, sources, finished


# Over 60 lines on purpose: the verify loop's five numbered steps read top to bottom in one function.
@torch.inference_mode()
def speculative_steps(
    model: Any,
    prompt_ids: Sequence[int],
    drafter: DraftSource | None = None,
    config: DecodeConfig | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    prefix: PrefixCache | None = None,
) -> Generator[Step, None, None]:
    """Generate an answer, yielding one `Step` per forward pass.

    Args:
        model: a transformers causal LM (eval mode), on its device.
        prompt_ids: the prompt's token ids.
        drafter: where drafts come from; None decodes plainly.
        config: length and sampling settings.
        eos_token_id: id(s) that end the answer.
        prefix: the cached states of a prefix of this model's prompts; the prefill then runs only the rest.
    """
    config = config or DecodeConfig()
    drafter = drafter or NoDraft()
    mask_dtype = tree_mask_dtype(model)
    lazy_head = config.lazy_head and not config.do_sample and lazy_head_supported(model)
    eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
    device = model.device
    generator = _sampler(config)
    t0 = time.perf_counter()

    # The head is what a pass feeds before its draft: first the uncached prompt (see `_start_cache`),
    # then the pending token: the model's last emitted token, not yet in the cache.
    cache, head = _start_cache(model, prompt_ids, prefix, config)
    drafter.start(prompt_ids)
    produced = 0
    setup_s = time.perf_counter() - t0

    while True:
        # 1. Draft: at most the tokens still allowed before the model's own next token.
        t_draft = time.perf_counter()
        room = config.max_new_tokens - produced - 1
        draft: Draft = drafter.propose(room).limit_depth(room) if room > 0 else Draft()
        if draft.parents is not None and (mask_dtype is False or len(head) > 1 or isinstance(cache, StaticVerifier)):
            draft = draft.main_chain()  # tree masks are built for a one-token head

        # 2. Forward the head and the draft in one pass.
        t_forward = time.perf_counter()
        logits = _forward(model, cache, head, draft, device, mask_dtype, lazy_head)  # (k + 1, V)

        # 3. Accept the longest valid prefix (or tree path); 4. roll the cache back to what was accepted.
        t_accept = time.perf_counter()
        path, next_token = _accept(draft, logits, config, generator)
        _roll_back(cache, len(draft), path)

        # 5. Emit, stopping at EOS or the budget; tell the drafter what happened.
        step = finish_pass(draft, path, next_token, eos, config.max_new_tokens - produced, drafter,
                           (t0, t_draft, t_forward, t_accept), setup_s)
        produced, head, setup_s = produced + len(step.tokens), [next_token], 0.0
        yield step
        if step.finished:
            return


def finish_pass(draft: Draft, path: Sequence[int], next_token: int, eos: set[int], budget: int, drafter: DraftSource,
                times: tuple[float, float, float, float], setup_s: float) -> Step:
    """A verify pass's last part, shared by every loop: emit the accepted draft tokens (`path`) and the model's
    next token, cut at EOS or the `budget`; tell the drafter; time the pass as a Step.

    Args:
        times: perf_counter readings (request start, drafting start, forward start, acceptance start).
    """
    t0, t_draft, t_forward, t_accept = times
    t_update = time.perf_counter()
    emitted, sources, finished = _emit(draft, list(path), next_token, eos, budget)
    n_acc = min(len(path), len(emitted))
    drafter.update(emitted, n_acc)
    now = time.perf_counter()
    return Step(emitted, n_acc, sources, draft.tokens, t_forward - t_draft, t_accept - t_forward, now - t0, finished,
                t_update - t_accept, now - t_update, setup_s)


def generate(model: Any, prompt_ids: Sequence[int], drafter: DraftSource | None = None, config: DecodeConfig | None = None,
             eos_token_id: int | Sequence[int] | None = None, prefix: PrefixCache | None = None) -> GenerationResult:
    """Run `speculative_steps` (same arguments) to the end and collect the answer."""
    steps = list(speculative_steps(model, prompt_ids, drafter, config, eos_token_id, prefix))
    return GenerationResult([t for s in steps for t in s.tokens], steps)


COST_WIDTHS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32)  # pass widths timed; the others are interpolated


@torch.inference_mode()
def measure_verify_costs(model: Any, prompt_ids: Sequence[int], max_width: int = 33, reps: int = 5) -> tuple[float, ...]:
    """Measured cost of a forward pass of n = 1..max_width tokens after a prompt, relative to one token.

    On a CPU the curve is far from flat and not even monotonic: 2- and 3-token passes can cost more
    than 4- or 5-token ones (BLAS picks poor kernels for 2-3-row products), so a drafter that knows
    the curve chooses better draft lengths (`SpecConfig.verify_costs`). Each width's time is the
    median of `reps` passes over the same cached prompt, which is cut back after every pass.
    """
    cache = _new_cache(model)
    model(torch.tensor([list(prompt_ids)], device=model.device), past_key_values=cache, use_cache=True, logits_to_keep=1)
    start = cache.get_seq_length()
    filler = (list(prompt_ids) * (max_width // max(len(prompt_ids), 1) + 1))[:max_width]
    timed: dict[int, float] = {}
    for width in [w for w in COST_WIDTHS if w <= max_width] + ([max_width] if max_width not in COST_WIDTHS else []):
        times = []
        for _ in range(reps + 1):  # the first pass of each width warms its kernels up and is dropped
            t0 = time.perf_counter()
            model(torch.tensor([filler[:width]], device=model.device), past_key_values=cache, use_cache=True)
            if model.device.type == "cuda":
                torch.cuda.synchronize()  # kernels run asynchronously: wait before reading the clock
            times.append(time.perf_counter() - t0)
            keep_cache_positions(cache, start, [])
        timed[width] = sorted(times[1:])[len(times[1:]) // 2]
    return relative_costs(timed, max_width)


def relative_costs(timed: dict[int, float], max_width: int) -> tuple[float, ...]:
    """Cost of a pass of n = 1..max_width tokens relative to one token, interpolated between the timed widths."""
    widths = sorted(timed)
    costs = []
    for n in range(1, max_width + 1):
        lo = max(w for w in widths if w <= n)
        hi = min(w for w in widths if w >= n)
        t = timed[lo] if lo == hi else timed[lo] + (timed[hi] - timed[lo]) * (n - lo) / (hi - lo)
        costs.append(round(t / timed[1], 3))
    return tuple(costs)

