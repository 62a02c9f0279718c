"""Draft-model drafting and the hybrid on the real SmolLM2-135M: lossless against transformers, shapes fit."""

import json

import pytest
import torch

from tasc.compare.draft_model import DraftConfig, build_draft_model
from tasc.compare.hybrid import HybridConfig, HybridModel, make_projector
from tasc.compare.model_drafts import DRAFT_MODEL, AssistConfig, DraftModelDrafter, MixedDrafter
from tasc.spec.decode import DecodeConfig, generate
from tasc.spec.drafts import build_corpus_index, tasc_drafter

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def snips(data_dir):
    train = [json.loads(line) for line in (data_dir / "snips" / "train.jsonl").open()][:2000]
    valid = [json.loads(line) for line in (data_dir / "snips" / "valid.jsonl").open()][:2]
    return train, valid


def test_draft_model_decoding_is_lossless_on_the_real_target(real_lm, snips):
    train, valid = snips
    lm = real_lm
    small = build_draft_model(lm.model, DraftConfig()).eval()  # untrained 2 x 256: drafts mostly rejected
    assert small.config.vocab_size == lm.model.config.vocab_size
    index = build_corpus_index(lm.tokenizer, [r["output"] for r in train])
    drafters = {
        "small": DraftModelDrafter(small, eos_token_id=lm.eos_token_id),
        "self": DraftModelDrafter(lm.model, AssistConfig(max_draft=6), lm.eos_token_id),  # always right: long drafts, crops at the end
        "mixed": MixedDrafter(tasc_drafter(lm.tokenizer, index), DraftModelDrafter(lm.model, AssistConfig(max_draft=6), lm.eos_token_id)),
    }
    for row in valid:
        ids = lm.prompt_format.prompt_ids(lm.tokenizer, row["input"])
        with torch.inference_mode():
            ref = lm.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False)[0, len(ids):].tolist()
            assisted = lm.model.generate(torch.tensor([ids]), assistant_model=small, max_new_tokens=24, do_sample=False)[0, len(ids):].tolist()
        assert assisted == ref
        for name, drafter in drafters.items():
            result = generate(lm.model, ids, drafter, DecodeConfig(max_new_tokens=24), lm.eos_token_id)
            assert result.tokens == ref, name
            if name == "self":
                assert result.forward_passes < len(ref) / 2
                assert sum(s.sources.count(DRAFT_MODEL) for s in result.steps) > len(ref) / 2


def test_hybrid_runs_on_the_real_target(real_lm, snips):
    _, valid = snips
    lm = real_lm
    from tasc.compare.copy_head import CopyHead, bare_token_ids

    decoder = build_draft_model(lm.model, DraftConfig()).eval()
    bare = bare_token_ids(lm.tokenizer, len(lm.tokenizer))
    assert bare[lm.tokenizer.convert_tokens_to_ids("Ġplaylist")] == lm.tokenizer.convert_tokens_to_ids("playlist")
    hybrid = HybridModel(decoder, make_projector("mlp", lm.model.config.hidden_size, 256).eval(), HybridConfig(),
                         copy_head=CopyHead(256, bare).eval())
    ids = lm.prompt_format.prompt_ids(lm.tokenizer, valid[0]["input"])
    result = hybrid.generate(lm.model, ids, max_new_tokens=16, eos_token_id=lm.eos_token_id)
    assert 1 <= len(result.tokens) <= 16 and result.decoder_passes == len(result.tokens)
    assert result.encode_s > 0 and result.decode_s > 0
