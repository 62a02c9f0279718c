"""The real SmolLM2-135M: load, generate, a 5-step fine-tune, save, reload with plain transformers."""

import json

import pytest
import torch

from tasc.core.corpus import load_corpus
from tasc.core.models import load_model
from tasc.ft.finetune import FinetuneConfig, finetune
from tasc.spec.decode import DecodeConfig, generate
from tasc.spec.drafts import SpecConfig, tasc_drafter

pytestmark = pytest.mark.real_model


def test_five_step_finetune_saves_and_reloads(real_model_dir, data_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = load_corpus(data_dir / "snips" / "train.jsonl").subset(range(40))
    out = tmp_path / "snips-5"
    result = finetune(str(real_model_dir), rows, out, FinetuneConfig(steps=5, batch_size=4, log_every=1), device="cpu")
    assert result["steps"] == 5 and len(result["losses"]) == 5
    assert all(loss == loss and loss < 20 for _, loss in result["losses"])  # finite, sane

    # Plain transformers loads it; its greedy answer equals our loop's with TASC drafting.
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    lm = load_model(str(out), device="cpu")
    assert json.loads((out / "tasc.json").read_text())["prompt_format"]["style"] == "chat"
    ids = lm.prompt_format.prompt_ids(tokenizer, "play the latest album by daft punk")
    with torch.inference_mode():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False)[0, len(ids):].tolist()
    ours = generate(lm.model, ids, tasc_drafter(lm.tokenizer, None, SpecConfig(use_corpus=False)), DecodeConfig(24), lm.eos_token_id)
    assert ours.tokens == ref
