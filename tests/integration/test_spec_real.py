"""TASC-spec on the real SmolLM2-135M: lossless against transformers greedy, and drafts really land."""

import json

import pytest
import torch

from tasc.decode import DecodeConfig, generate
from tasc.drafts import build_corpus_index, make_drafter

pytestmark = pytest.mark.real_model


def test_tasc_spec_equals_greedy_on_snips(real_lm, data_dir):
    train = [json.loads(line) for line in (data_dir / "snips" / "train.jsonl").open()][:2000]
    valid = [json.loads(line) for line in (data_dir / "snips" / "valid.jsonl").open()][:4]
    real_lm.prompt_format = real_lm.prompt_format.with_shots([(r["input"], r["output"]) for r in train[:2]])
    index = build_corpus_index(real_lm.tokenizer, [r["output"] for r in train])
    drafter = make_drafter("tasc-spec", real_lm.tokenizer, index)
    tokens = passes = 0
    for row in valid:
        ids = real_lm.prompt_format.prompt_ids(real_lm.tokenizer, row["input"])
        with torch.inference_mode():
            ref = real_lm.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)[0, len(ids) :].tolist()
        result = generate(real_lm.model, ids, drafter, DecodeConfig(max_new_tokens=40), real_lm.eos_token_id)
        assert result.tokens == ref
        tokens += len(result.tokens)
        passes += result.forward_passes
    assert tokens / passes > 1.5  # JSON structure from the corpus is drafted and accepted
