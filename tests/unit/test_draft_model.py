"""Draft model: building, training (resume after cancel), save/reload, and lossless assisted decoding."""

import copy
import json
import random
import threading

import pytest
import torch
from safetensors.torch import load_file

from tasc.cli import main
from tasc.compare.draft_model import DraftConfig, build_draft_model, load_draft_model, pca_embeddings, train_draft
from tasc.compare.model_drafts import DRAFT_MODEL, AssistConfig, DraftModelDrafter, MixedDrafter, expected_accepted
from tasc.core.corpus import load_corpus
from tasc.core.errors import Cancelled, ModelError
from tasc.core.models import load_model, read_meta
from tasc.spec.decode import DecodeConfig, generate
from tasc.spec.drafts import TascDrafter
from tasc.spec.ngram_index import CorpusIndex
from tests.tiny import make_tiny_model, save_tiny

VOCAB, EOS = 64, 0
TINY = dict(layers=1, hidden=32, heads=2, pretrain_texts=8, pretrain_new_tokens=8, distil_batch_size=4,
            pretrain_steps=4, steps=6, batch_size=4, save_every=2)


def hf_greedy(model, prompt, n, **kwargs):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, eos_token_id=EOS, pad_token_id=EOS, **kwargs)
    return out[0, len(prompt):].tolist()


class CacheChecked(DraftModelDrafter):
    """Asserts after every proposal that the cache holds exactly the tokens the drafter thinks it does."""

    def propose(self, max_len):
        draft = super().propose(max_len)
        assert self._cache.get_seq_length() == len(self._cached)
        assert self._cached == (self._ids + draft.tokens)[: len(self._cached)]
        return draft


@pytest.fixture(scope="module")
def models():
    """A target and drafts that are always right ("same"), often right ("noisy": ~35% of tokens) or never ("random").

    Untied heads: tiny random models with tied embeddings just repeat the last token, so any two agree.
    """
    target = make_tiny_model(VOCAB, seed=0, layers=2, hidden=32, tie=False)
    noisy = copy.deepcopy(target)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1 * p.std())
    return {"target": target, "same": target, "noisy": noisy, "random": make_tiny_model(VOCAB, seed=1, layers=1, hidden=32, tie=False)}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rows = [{"input": f"play {a} by {b}", "output": json.dumps({"intent": "PlayMusic", "slots": {"artist": b, "track": a}})}
            for a in ("jazz", "blues", "rock", "pop") for b in ("miles", "nina", "bob")]
    path = tmp_path_factory.mktemp("corpus") / "play.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_pca_embeddings_keep_the_leading_directions():
    torch.manual_seed(0)
    emb = torch.randn(500, 8) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05])
    proj, mean, basis = pca_embeddings(emb, 3)
    assert proj.shape == (500, 3)
    assert torch.allclose(basis.T @ basis, torch.eye(3), atol=1e-5)  # orthonormal
    assert torch.allclose(proj, (emb - mean) @ basis, atol=1e-5)
    var = proj.var(0)
    assert var[0] > var[1] > var[2] and var[0] > 20  # the largest-variance axes, largest first
    wide, _, _ = pca_embeddings(emb, 12)  # wider than the target: extra columns are zero
    assert wide.shape == (500, 12) and wide[:, 8:].abs().max() == 0


def test_draft_shares_the_target_vocabulary_and_starts_from_its_embeddings(models):
    target = models["target"]
    draft = build_draft_model(target, DraftConfig(layers=1, hidden=16, heads=2))
    assert draft.config.vocab_size == VOCAB and draft.config.num_hidden_layers == 1
    assert draft.config.eos_token_id == target.config.eos_token_id
    expected, _, _ = pca_embeddings(target.get_input_embeddings().weight, 16)
    assert torch.allclose(draft.get_input_embeddings().weight, expected)
    assert draft.get_output_embeddings().weight.data_ptr() == draft.get_input_embeddings().weight.data_ptr()  # tied


@pytest.mark.parametrize("draft_name", ["random", "noisy", "same"])
def test_draft_model_decoding_equals_greedy_and_transformers_assisted(models, draft_name):
    rng = random.Random(hash(draft_name) % 997)
    target, draft = models["target"], models[draft_name]
    saved_passes = 0
    for case in range(25):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 16))]
        budget = rng.choice([1, 2, 7, 30])
        config = AssistConfig(max_draft=rng.choice([1, 3, 8]), min_confidence=rng.choice([0.0, 0.4]))
        reference = hf_greedy(target, prompt, budget)
        drafter = CacheChecked(draft, config, EOS)
        result = generate(target, prompt, drafter, DecodeConfig(max_new_tokens=budget), eos_token_id=EOS)
        assert result.tokens == reference, (case, config)
        assert hf_greedy(target, prompt, budget, assistant_model=draft) == reference, case  # the reference implementation
        saved_passes += len(reference) - result.forward_passes
        for step in result.steps:
            assert set(step.sources[: step.n_accepted]) <= {DRAFT_MODEL}
    if draft_name != "random":
        assert saved_passes > 20  # right drafts save target passes


@pytest.mark.parametrize("draft_name", ["random", "noisy", "same"])
def test_mixed_drafter_is_lossless_and_uses_both_sources(models, draft_name):
    rng = random.Random(3)
    target = models["target"]
    prompts = [[rng.randrange(1, VOCAB) for _ in range(rng.randrange(2, 12))] for _ in range(16)]
    corpus = [hf_greedy(target, p, 20) for p in prompts[::2]] + [[rng.randrange(VOCAB) for _ in range(15)] for _ in range(5)]
    sources = set()
    for ngram_first in (0.5, 2.0, 99.0):
        # One mixer for all prompts, as in the benchmark: the draft model's calibration keeps learning.
        mixer = MixedDrafter(TascDrafter(CorpusIndex(corpus, eos_id=EOS)),
                             CacheChecked(models[draft_name], AssistConfig(min_confidence=0.0), EOS), AssistConfig(ngram_first=ngram_first))
        for case, prompt in enumerate(prompts):
            budget = rng.choice([3, 20, 40])
            result = generate(target, prompt, mixer, DecodeConfig(max_new_tokens=budget), eos_token_id=EOS)
            assert result.tokens == hf_greedy(target, prompt, budget), (ngram_first, case)
            sources |= {s for step in result.steps for s in step.sources[: step.n_accepted]}
    assert sources & {"corpus", "context"}
    if draft_name != "random":  # a draft model that is right earns a high calibrated estimate and gets picked
        assert DRAFT_MODEL in sources


def test_draft_length_follows_the_learnt_acceptance(models):
    rng = random.Random(5)
    prompts = [[rng.randrange(1, VOCAB) for _ in range(rng.randrange(2, 12))] for _ in range(12)]
    lengths = {}
    for name in ("same", "random"):
        drafter = DraftModelDrafter(models[name], AssistConfig(max_draft=8, min_confidence=0.0, stop_cost=0.15), EOS)
        drafts = []
        for prompt in prompts:
            result = generate(models["target"], prompt, drafter, DecodeConfig(max_new_tokens=40), eos_token_id=EOS)
            drafts += [len(s.draft) for s in result.steps[1:]]
        lengths[name] = sum(drafts[-20:]) / 20
    assert lengths["same"] > 4  # always accepted: the calibration rises, drafts grow to max_draft
    assert lengths["random"] < 1.5  # mostly rejected: one token per pass, no wasted draft passes


def test_expected_accepted_is_the_sum_of_survival_chances():
    assert expected_accepted([]) == 0
    assert expected_accepted([0.9, 0.5]) == pytest.approx(1.35)
    assert expected_accepted([1.0] * 4) == 4


def test_train_draft_saves_a_loadable_draft_that_decodes_losslessly(tmp_path, tiny_model_dir, corpus_file, tiny_lm):
    events = []
    result = train_draft(str(tiny_model_dir), load_corpus(corpus_file), tmp_path / "draft", DraftConfig(**TINY),
                         device="cpu", on_progress=events.append)
    assert result["distil"]["rows"] == 8 and result["distil"]["answers"] == 6
    assert result["pretrain"]["steps"] == 4 and result["finetune"]["steps"] == 6
    assert {e.task for e in events} == {"draft: distil", "draft: pretrain", "draft: finetune"}
    assert not (tmp_path / "draft" / "checkpoints").exists()
    meta = read_meta(tmp_path / "draft")
    assert meta["role"] == "draft" and meta["target"] == str(tiny_model_dir) and meta["training"]["finetune"]["steps"] == 6
    assert list(tmp_path.glob("draft/*.safetensors")) and not list(tmp_path.glob("draft/*.bin"))

    draft = load_draft_model(tmp_path / "draft", tiny_lm)
    prompt = tiny_lm.prompt_format.prompt_ids(tiny_lm.tokenizer, "play rock by bob")
    plain = generate(tiny_lm.model, prompt, None, DecodeConfig(20), tiny_lm.eos_token_id)
    drafted = generate(tiny_lm.model, prompt, DraftModelDrafter(draft, eos_token_id=tiny_lm.eos_token_id), DecodeConfig(20), tiny_lm.eos_token_id)
    assert drafted.tokens == plain.tokens
    # Reloading gives the same drafts.
    again = load_draft_model(tmp_path / "draft", tiny_lm)
    a, b = DraftModelDrafter(draft, AssistConfig(min_confidence=0)), DraftModelDrafter(again, AssistConfig(min_confidence=0))
    a.start(prompt), b.start(prompt)
    assert a.propose(6).tokens == b.propose(6).tokens


def test_resume_after_cancel_gives_the_uninterrupted_weights(tmp_path, tiny_model_dir, corpus_file):
    corpus = load_corpus(corpus_file)
    train_draft(str(tiny_model_dir), corpus, tmp_path / "straight", DraftConfig(**TINY), device="cpu")
    cancel = threading.Event()

    def stop_mid_finetune(p):
        if p.task == "draft: finetune" and p.done == 3:
            cancel.set()

    with pytest.raises(Cancelled, match="step 3/6"):
        train_draft(str(tiny_model_dir), corpus, tmp_path / "resumed", DraftConfig(**TINY), device="cpu",
                    on_progress=stop_mid_finetune, cancel=cancel)
    assert (tmp_path / "resumed" / "checkpoints" / "finetune" / "latest" / "weights.safetensors").is_file()
    with pytest.raises(ValueError, match="--resume"):  # a fresh run refuses to overwrite the checkpoints
        train_draft(str(tiny_model_dir), corpus, tmp_path / "resumed", DraftConfig(**TINY), device="cpu")
    result = train_draft(str(tiny_model_dir), corpus, tmp_path / "resumed", DraftConfig(**TINY), device="cpu", resume=True)
    assert result["finetune"]["steps"] == 6
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_enriched_target_vocabulary_is_carried_over(tmp_path, corpus_file):
    target_dir = save_tiny(tmp_path / "enriched")
    lm = load_model(str(target_dir), device="cpu")
    base = len(lm.tokenizer)
    lm.tokenizer.add_tokens(['{"intent": "', '", "slots": {'])
    lm.model.resize_token_embeddings(len(lm.tokenizer))
    lm.model.save_pretrained(target_dir)
    lm.tokenizer.save_pretrained(target_dir)
    (target_dir / "tasc.json").write_text(json.dumps({"enriched": {"base_vocab_size": base, "added": 2}}))
    train_draft(str(target_dir), load_corpus(corpus_file), tmp_path / "draft", DraftConfig(**{**TINY, "pretrain_steps": 0, "steps": 2}), device="cpu")
    meta = read_meta(tmp_path / "draft")
    assert meta["target_vocab_size"] == base + 2 and meta["enriched"]["base_vocab_size"] == base
    enriched_lm = load_model(str(target_dir), device="cpu")
    assert load_draft_model(tmp_path / "draft", enriched_lm).config.vocab_size == base + 2


def test_load_draft_model_rejects_a_foreign_vocabulary(tmp_path, tiny_lm):
    other = make_tiny_model(VOCAB)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ModelError, match="vocabulary of 64 tokens"):
        load_draft_model(tmp_path / "other", tiny_lm)
    with pytest.raises(ModelError, match="no config.json"):
        load_draft_model(tmp_path / "missing", tiny_lm)


def test_cli_train_draft(tmp_path, tiny_model_dir, corpus_file, capsys):
    out = tmp_path / "cli-draft"
    argv = ["train-draft", "--target", str(tiny_model_dir), "--corpus", str(corpus_file), "--out", str(out), "--layers", "1",
            "--hidden", "32", "--heads", "2", "--pretrain-texts", "4", "--pretrain-steps", "2", "--steps", "2", "--batch-size", "2",
            "--device", "cpu", "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "r.json").read_text())["finetune"]["steps"] == 2
    assert (out / "model.safetensors").is_file()
    assert main(["train-draft", "--target", str(tiny_model_dir), "--corpus", str(corpus_file), "--out", str(out), "--hidden", "30", "--heads", "4"]) == 2
    assert "hidden (30) must be a multiple of heads (4)" in capsys.readouterr().err


def test_an_outputs_only_corpus_trains_on_continuations_and_outputs(tmp_path, tiny_model_dir):
    path = tmp_path / "outputs.txt"
    path.write_text("The Eagle is a coffee shop near Burger King.\nBlue Spice is a cheap Italian restaurant.\n", encoding="utf-8")
    result = train_draft(str(tiny_model_dir), load_corpus(path), tmp_path / "draft", DraftConfig(**TINY), device="cpu")
    assert result["distil"]["rows"] == 8 and result["distil"]["answers"] == 0  # no inputs: continuations only
    assert result["finetune"]["final_loss"] is not None
