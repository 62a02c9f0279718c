"""The llama.cpp engine on a tiny random Llama exported to GGUF: same tokens as transformers, lossless verify loop."""

import random

import pytest
import torch

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -r requirements-llamacpp.txt")

from tasc.core.gguf_export import export_gguf  # noqa: E402
from tasc.spec.decode import DecodeConfig, generate  # noqa: E402
from tasc.spec.drafts import Draft, NoDraft, TascDrafter  # noqa: E402
from tasc.spec.llamacpp import LlamaCppContext, llamacpp_generate, llamacpp_steps  # noqa: E402
from tasc.spec.llamacpp_lookup import CorpusLookup  # noqa: E402
from tasc.spec.llamacpp_own import LlamaCppEngine, OwnDecoding, prompt_lookup  # noqa: E402
from tasc.spec.ngram_index import CorpusIndex  # noqa: E402
from tests.tiny import TINY_TEXTS, make_tiny_model, make_tiny_tokenizer  # noqa: E402

ADDED = ' "slots": {"'  # an enriched-vocabulary token (TASC-ft adds such strings, not special)
PROMPTS = ["play some jazz by", '{"intent": "GetWeather", "slots": {"city": "', "book a table for 4 in"]


@pytest.fixture(scope="module")
def enriched(tmp_path_factory):
    """A tiny model whose vocabulary has an added token, saved as a directory and as an f32 GGUF."""
    from tasc.ft.vocab import added_token

    tokenizer = make_tiny_tokenizer()
    tokenizer.add_tokens([added_token(ADDED)])
    model = make_tiny_model(len(tokenizer), seed=3)
    with torch.no_grad():  # sharper logits than the random init's: argmax decisions far above float rounding
        model.model.embed_tokens.weight.mul_(8.0)
    directory = tmp_path_factory.mktemp("enriched") / "model"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    gguf = export_gguf(directory, directory.parent / "model-f32.gguf")
    return model, tokenizer, gguf


@pytest.fixture(scope="module")
def context(enriched):
    ctx = LlamaCppContext(enriched[2], n_ctx=512)
    yield ctx
    ctx.close()


def test_tokenization_is_identical_including_added_and_special_tokens(enriched, context):
    _, tokenizer, _ = enriched
    texts = [*dict.fromkeys(TINY_TEXTS), ADDED, f"x{ADDED}y<|endoftext|>z", "  two  spaces\nand a line", "café 123"]
    for text in texts:
        assert context.tokenize(text) == tokenizer.encode(text, add_special_tokens=False), text
    added_id = tokenizer.convert_tokens_to_ids(ADDED)
    assert added_id in context.tokenize(f"a{ADDED}b")
    assert context.piece(added_id) == ADDED.encode()


def test_logits_and_greedy_answer_equal_transformers(enriched, context):
    model, tokenizer, _ = enriched
    ids = tokenizer.encode(PROMPTS[0])
    context.truncate(0)
    ours = context.decode(ids, len(ids))  # (n, V): every prompt position
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0].numpy()
    assert abs(ours - theirs).max() < 1e-3 * max(1.0, abs(theirs).max())
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt)
        torch_answer = generate(model, ids, None, DecodeConfig(12), 0).tokens
        assert llamacpp_generate(context, ids, None, DecodeConfig(12), 0).tokens == torch_answer


class Scripted:
    """Drafts from a known answer: right, wrong or mixed, of random lengths (every branch of the loop)."""

    def __init__(self, answer, rng):
        self.answer, self.rng = answer, rng

    def start(self, prompt_ids):
        self.pos = 0

    def propose(self, max_len):
        truth = self.answer[self.pos: self.pos + self.rng.randrange(0, 12)]
        tokens = [t if self.rng.random() < 0.8 else (t + 1) % 50 for t in truth][:max_len]
        return Draft(tokens, ["corpus"] * len(tokens), [0.5] * len(tokens))

    def update(self, emitted, n_accepted):
        self.pos += len(emitted)


def test_verify_loop_is_lossless_and_rolls_the_cache_back(enriched, context):
    _, tokenizer, gguf = enriched
    own = OwnDecoding(gguf, n_ctx=512)
    rng = random.Random(0)
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt)
        plain = llamacpp_generate(context, ids, NoDraft(), DecodeConfig(24), 0)
        assert plain.forward_passes == len(plain.tokens)  # one token per pass
        own_tokens, own_passes, _ = own.generate(ids, 24, {0})
        assert own_tokens == plain.tokens  # our width-1 loop is llama.cpp's own greedy
        for _ in range(3):
            steps = list(llamacpp_steps(context, ids, Scripted(plain.tokens, rng), DecodeConfig(24), 0))
            assert [t for s in steps for t in s.tokens] == plain.tokens
            # the cache holds the prompt and the answer but its last token (the next pass's head)
            assert context.cached == ids + plain.tokens[:-1]
            assert sum(s.n_accepted for s in steps) + len(steps) == len(plain.tokens)
            assert all(s.forward_s > 0 and s.elapsed_s >= s.forward_s for s in steps)
        oracle = list(llamacpp_steps(context, ids, Scripted(plain.tokens, random.Random(1)), DecodeConfig(24), 0))
        assert len(oracle) < len(plain.tokens)


def test_tasc_drafter_and_llama_cpp_lookup_are_lossless(enriched, context):
    _, tokenizer, gguf = enriched
    index = CorpusIndex([tokenizer.encode(t) for t in TINY_TEXTS])
    lookup = OwnDecoding(gguf, n_ctx=512, draft=prompt_lookup())
    corpus_lookup = OwnDecoding(gguf, n_ctx=512, draft=CorpusLookup([tokenizer.encode(t) for t in TINY_TEXTS]))
    greedy = OwnDecoding(gguf, n_ctx=512)
    drafter = TascDrafter(index)
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt)
        reference, passes, _ = greedy.generate(ids, 32, {0})
        assert llamacpp_generate(context, ids, drafter, DecodeConfig(32), 0).tokens == reference
        tokens, lookup_passes, _ = lookup.generate(ids, 32, {0})
        assert tokens == reference and lookup_passes <= passes
        assert corpus_lookup.generate(ids, 32, {0})[0] == reference


def test_engine_makes_each_part_once_and_sampling_runs(enriched):
    _, tokenizer, gguf = enriched
    engine = LlamaCppEngine(gguf, n_ctx=256)
    assert engine.context is engine.context and engine.own("lookup", prompt_lookup) is engine.own("lookup")
    ids = tokenizer.encode(PROMPTS[1])
    config = DecodeConfig(10, do_sample=True, temperature=0.7, seed=1)
    first = llamacpp_generate(engine.context, ids, None, config, 0).tokens
    assert first == llamacpp_generate(engine.context, ids, None, config, 0).tokens  # seeded
    with pytest.raises(ValueError, match="context"):
        llamacpp_generate(engine.context, ids * 40, None, DecodeConfig(128), 0)


def test_cost_curve_is_measured_on_llama_cpp_and_leaves_the_cache_as_it_was(enriched, context):
    from tasc.spec.llamacpp import measure_llamacpp_costs

    _, tokenizer, _ = enriched
    ids = tokenizer.encode(PROMPTS[2])
    costs = measure_llamacpp_costs(context, ids, max_width=9, reps=3)
    assert len(costs) == 9 and costs[0] == 1.0 and all(c >= 0 for c in costs)  # times of a busy machine: shape only
    assert context.cached == ids


def test_evaluate_on_llama_cpp_scores_the_same_answers(tiny_lm, tmp_path):
    """`tasc evaluate --engine llamacpp`: the tiny model's answers on llama.cpp equal transformers' answers."""
    from tasc.bench.evaluate import evaluate
    from tasc.core.corpus import Corpus, compute_stats

    inputs, outputs = ["play jazz", "book a table", "play rock"], ['{"a": 1}', '{"b": 2}', '{"c": 3}']
    heldout = Corpus(outputs, inputs, "tiny", compute_stats(outputs, inputs))
    gguf = export_gguf(tiny_lm.name, tmp_path / "tiny-f32.gguf")
    on_torch = evaluate(tiny_lm, heldout, max_new_tokens=12, draft_corpus=heldout)
    on_llama = evaluate(tiny_lm, heldout, max_new_tokens=12, draft_corpus=heldout, llamacpp=LlamaCppEngine(gguf, n_ctx=256))
    assert [a["output"] for a in on_llama["answers"]] == [a["output"] for a in on_torch["answers"]]
    assert on_llama["engine"] == "llamacpp (tiny-f32.gguf)" and on_torch["engine"] == "torch"
