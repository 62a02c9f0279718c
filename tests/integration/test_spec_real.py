"""TASC-spec on the real SmolLM2-135M: lossless against transformers greedy, and drafts really land."""

import json
from dataclasses import replace

import pytest
import torch

from tasc.spec.decode import DecodeConfig, generate
from tasc.spec.drafts import build_corpus_index, tasc_drafter

pytestmark = pytest.mark.real_model


def test_tasc_spec_equals_greedy_on_snips(real_lm, data_dir):
    train = [json.loads(line) for line in (data_dir / "snips" / "train.jsonl").open()][:2000]
    valid = [json.loads(line) for line in (data_dir / "snips" / "valid.jsonl").open()][:4]
    shared_format = real_lm.prompt_format
    # This test's own LoadedModel (the same weights and tokenizer): the session-wide fixture stays as it is.
    lm = replace(real_lm, prompt_format=shared_format.with_shots([(r["input"], r["output"]) for r in train[:2]]))
    index = build_corpus_index(lm.tokenizer, [r["output"] for r in train])
    drafter = tasc_drafter(lm.tokenizer, index)
    tokens = passes = 0
    for row in valid:
        ids = lm.prompt_format.prompt_ids(lm.tokenizer, row["input"])
        with torch.inference_mode():
            ref = lm.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)[0, len(ids) :].tolist()
        result = generate(lm.model, ids, drafter, DecodeConfig(max_new_tokens=40), lm.eos_token_id)
        assert result.tokens == ref
        tokens += len(result.tokens)
        passes += result.forward_passes
    assert tokens / passes > 1.5  # JSON structure from the corpus is drafted and accepted
    assert real_lm.prompt_format is shared_format  # the shared fixture is untouched
