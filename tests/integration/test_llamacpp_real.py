"""The llama.cpp engine on the real SmolLM2-135M: our GGUF export tokenizes and answers as transformers does,
and TASC-spec on llama.cpp is lossless against llama.cpp's own greedy (exported f32; the shipped Q4_1, whose
logits depend on a pass's width in llama.cpp, up to a near-tie)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -r requirements-llamacpp.txt")

from tasc.core.gguf_export import export_gguf  # noqa: E402
from tasc.core.models import gguf_file  # noqa: E402
from tasc.spec.decode import DecodeConfig, generate  # noqa: E402
from tasc.spec.drafts import build_corpus_index, tasc_drafter  # noqa: E402
from tasc.spec.llamacpp import LlamaCppContext, llamacpp_generate  # noqa: E402
from tasc.spec.llamacpp_own import OwnDecoding  # noqa: E402

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def snips(data_dir):
    train = [json.loads(line) for line in (data_dir / "snips" / "train.jsonl").open()][:2000]
    valid = [json.loads(line) for line in (data_dir / "snips" / "valid.jsonl").open()][:3]
    return train, valid


@pytest.fixture(scope="module")
def exported(real_model_dir, tmp_path_factory):
    return export_gguf(real_model_dir, tmp_path_factory.mktemp("gguf") / "smollm2-f32.gguf")


def test_export_tokenizes_and_answers_like_transformers(real_lm, exported, snips):
    _, valid = snips
    ctx = LlamaCppContext(exported, n_ctx=1024)
    try:
        tok = real_lm.tokenizer
        for row in valid:
            text = real_lm.prompt_format.render(tok, row["input"])  # chat template: <|im_start|> specials and all
            ids = real_lm.prompt_format.prompt_ids(tok, row["input"])
            assert ctx.tokenize(text) == tok.encode(text, add_special_tokens=False) == ids
            with torch.inference_mode():
                ref = real_lm.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids):].tolist()
            assert llamacpp_generate(ctx, ids, None, DecodeConfig(8), real_lm.eos_token_id).tokens == ref
        for text in ('{"intent": "PlayMusic", "slots": {"year": "1987"}}', "Café  naïve 2036 — ok\n"):
            assert ctx.tokenize(text) == tok.encode(text, add_special_tokens=False)
    finally:
        ctx.close()


NEAR_TIE = 0.5  # logits: Q4_1 passes of different widths round apart by far less than a real preference


def assert_split_at_a_near_tie(ctx, prompt_ids, tokens, reference):
    """Two greedy answers agree up to their first difference, and there llama.cpp's two choices nearly tie."""
    if tokens == reference:
        return
    # Same cap and stop token, so answers that differ differ at a position both have.
    k = next(i for i, (a, b) in enumerate(zip(tokens, reference, strict=False)) if a != b)
    ctx.truncate(0)
    logits = ctx.decode(list(prompt_ids) + reference[:k], 1)[0]
    top_two = set(np.argsort(logits)[-2:].tolist())
    gap = abs(float(logits[tokens[k]] - logits[reference[k]]))
    assert {tokens[k], reference[k]} == top_two and gap < NEAR_TIE, (
        f"answers split at token {k} where llama.cpp prefers one by {gap:.3f} logits (top two {top_two})")


@pytest.mark.parametrize("which", ["exported-f32", "shipped-q4_1"])
def test_tasc_spec_on_llama_cpp_is_lossless(real_lm, exported, snips, which):
    train, valid = snips
    path = exported if which == "exported-f32" else gguf_file("smollm2-135m")
    lm = replace(real_lm, prompt_format=real_lm.prompt_format.with_shots([(r["input"], r["output"]) for r in train[:2]]))
    drafter = tasc_drafter(lm.tokenizer, build_corpus_index(lm.tokenizer, [r["output"] for r in train]))
    ctx, own = LlamaCppContext(path, n_ctx=2048), OwnDecoding(path, n_ctx=2048)
    tokens = passes = 0
    try:
        for row in valid:
            ids = lm.prompt_format.prompt_ids(lm.tokenizer, row["input"])
            reference, _, _ = own.generate(ids, 40, {lm.eos_token_id})
            result = llamacpp_generate(ctx, ids, drafter, DecodeConfig(40), lm.eos_token_id)
            if which == "exported-f32":  # exact, and the same weights as the torch model: the same answer
                assert result.tokens == reference
                assert result.tokens == generate(lm.model, ids, None, DecodeConfig(40), lm.eos_token_id).tokens
            else:  # quantised weights: llama.cpp's logits depend on a pass's width, so near-ties may flip
                assert_split_at_a_near_tie(ctx, ids, result.tokens, reference)
            tokens, passes = tokens + len(result.tokens), passes + result.forward_passes
    finally:
        ctx.close()
    assert tokens / passes > 1.5  # corpus drafts land on llama.cpp as on torch
