"""Hybrid: the projector and decoder train on a frozen target, generate, save and reload, resume."""

import json
import random
import threading

import pytest
import torch
from safetensors.torch import load_file

from tasc.cli import main
from tasc.compare.draft_model import DraftConfig, build_draft_model, slice_target, spread_layers, train_draft
from tasc.compare.hybrid import HybridConfig, HybridModel, encode, make_projector, train_hybrid
from tasc.core.corpus import load_corpus
from tasc.core.errors import Cancelled, ModelError
from tasc.core.models import load_model, read_meta, write_meta
from tasc.core.run_dir import TrainRun
from tasc.core.train_loop import LoopConfig, train_loop
from tests.tiny import make_tiny_model, save_tiny

TINY = dict(layers=1, hidden=32, heads=2, steps=8, batch_size=4, save_every=2)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rows = [{"input": f"play {a} by {b}", "output": json.dumps({"intent": "PlayMusic", "slots": {"artist": b, "track": a}})}
            for a in ("jazz", "blues", "rock", "pop") for b in ("miles", "nina", "bob")]
    path = tmp_path_factory.mktemp("corpus") / "play.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_projector_carries_the_input_and_the_target_stays_frozen(tmp_path, tiny_model_dir):
    """With no token embeddings in the prefix, only the projected target states tell the decoder the input."""
    lm = load_model(str(tiny_model_dir), device="cpu")
    target_before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    lm.model.requires_grad_(False)
    decoder = build_draft_model(lm.model, DraftConfig(layers=1, hidden=32, heads=2))
    projector = make_projector("mlp", lm.model.config.hidden_size, 32)
    model = HybridModel(decoder, projector, HybridConfig(add_token_embeddings=False, copy=False))
    assert not any(p is q for p in model.module.parameters() for q in lm.model.parameters())
    # Two inputs that differ only in one word, with answers that depend on it: solvable only through the prefix.
    pairs = [("colour red", "stop"), ("colour green", "go")]
    prompts = [lm.prompt_format.prompt_ids(lm.tokenizer, text) for text, _ in pairs]
    answers = [lm.tokenizer(out)["input_ids"] + [lm.eos_token_id] for _, out in pairs]
    states = encode(lm.model, prompts)
    batch = [(states[i], prompts[i], answers[i]) for i in range(2)]
    with torch.no_grad():
        start = model.loss(batch).item()
    result = train_loop(model.module, lambda step: model.loss(batch), LoopConfig(steps=80, learning_rate=1e-2, save_every=100),
                        tmp_path / "ckpt", task="toy")
    assert result["final_loss"] < start * 0.1  # the loss falls far: both answers are learnt
    assert projector[-1].weight.abs().sum() > 0  # the zero-initialised projector moved
    for i in range(2):
        out = model.generate(lm.model, prompts[i], max_new_tokens=len(answers[i]) + 2, eos_token_id=lm.eos_token_id)
        assert out.tokens == answers[i]  # each input gets its own answer
        assert out.encode_s > 0 and out.decode_s > 0 and out.wall_s >= out.encode_s + out.decode_s - 1e-6
    for name, value in lm.model.state_dict().items():
        assert torch.equal(value, target_before[name]), name  # the target did not change


def test_train_hybrid_saves_reloads_and_generates_identically(tmp_path, tiny_model_dir, corpus_file, monkeypatch):
    loaded = []
    real_load = TrainRun.load  # how every trainer loads the model it starts from
    monkeypatch.setattr(TrainRun, "load", lambda self, spec: loaded.append(real_load(self, spec)) or loaded[-1])
    events = []
    result = train_hybrid(str(tiny_model_dir), load_corpus(corpus_file), tmp_path / "hybrid", HybridConfig(**TINY), device="cpu",
                          on_progress=events.append)
    assert not any(p.requires_grad for p in loaded[0].model.parameters())  # the target was frozen
    assert result["steps"] == 8 and result["inputs"] == 12 and result["examples"] == 12
    assert result["losses"][-1][1] < result["losses"][0][1]
    assert {e.task for e in events} == {"hybrid: encode", "hybrid: train"}
    saved = sorted(p.name for p in (tmp_path / "hybrid").iterdir())
    assert {"projector.safetensors", "copy_head.safetensors", "decoder"} <= set(saved) and "checkpoints" not in saved
    assert not list(tmp_path.glob("hybrid/**/*.bin"))
    meta = read_meta(tmp_path / "hybrid")
    assert meta["role"] == "hybrid" and meta["training"]["steps"] == 8 and meta["hybrid"]["projector"] == "mlp"

    lm = load_model(str(tiny_model_dir), device="cpu")
    first, second = HybridModel.load(tmp_path / "hybrid", lm), HybridModel.load(tmp_path / "hybrid", lm)
    for text in ("play jazz by nina", "play something else"):
        ids = lm.prompt_format.prompt_ids(lm.tokenizer, text)
        a = first.generate(lm.model, ids, 20, lm.eos_token_id)
        assert a.tokens == second.generate(lm.model, ids, 20, lm.eos_token_id).tokens
        assert 1 <= len(a.tokens) <= 20 and a.decoder_passes == len(a.tokens)


def test_resume_after_cancel_gives_the_uninterrupted_weights(tmp_path, tiny_model_dir, corpus_file):
    corpus = load_corpus(corpus_file)
    train_hybrid(str(tiny_model_dir), corpus, tmp_path / "straight", HybridConfig(**TINY), device="cpu")
    cancel = threading.Event()
    with pytest.raises(Cancelled, match="step 5/8"):
        train_hybrid(str(tiny_model_dir), corpus, tmp_path / "resumed", HybridConfig(**TINY), device="cpu",
                     on_progress=lambda p: p.task == "hybrid: train" and p.done == 5 and cancel.set(), cancel=cancel)
    result = train_hybrid(str(tiny_model_dir), corpus, tmp_path / "resumed", HybridConfig(**TINY), device="cpu", resume=True)
    assert result["steps"] == 8
    for name in ("projector.safetensors", "decoder/model.safetensors"):
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_decoder_can_start_from_a_trained_draft_model(tmp_path, tiny_model_dir, corpus_file, tiny_lm):
    corpus = load_corpus(corpus_file)
    train_draft(str(tiny_model_dir), corpus, tmp_path / "draft",
                DraftConfig(layers=1, hidden=32, heads=2, pretrain_texts=4, pretrain_new_tokens=4, pretrain_steps=2, steps=4, batch_size=4),
                device="cpu")
    train_hybrid(str(tiny_model_dir), corpus, tmp_path / "hybrid",
                 HybridConfig(**{**TINY, "steps": 0, "decoder_init": str(tmp_path / "draft"), "copy": False}), device="cpu")
    # With zero steps the zero-initialised projector adds nothing: the hybrid answers as the draft model does
    # (a fresh copy head would mix in a third of copying, so it is off here).
    model = HybridModel.load(tmp_path / "hybrid", tiny_lm)
    draft = load_file(str(tmp_path / "draft" / "model.safetensors"))
    decoder = load_file(str(tmp_path / "hybrid" / "decoder" / "model.safetensors"))
    assert all(torch.equal(draft[k], decoder[k]) for k in draft)
    ids = tiny_lm.prompt_format.prompt_ids(tiny_lm.tokenizer, "play pop by bob")
    greedy_of_draft = model.decoder.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False, eos_token_id=tiny_lm.eos_token_id,
                                             pad_token_id=tiny_lm.eos_token_id)[0, len(ids):].tolist()
    assert model.generate(tiny_lm.model, ids, 10, tiny_lm.eos_token_id).tokens == greedy_of_draft


def test_load_rejects_other_targets_and_other_directories(tmp_path, tiny_model_dir, corpus_file):
    train_hybrid(str(tiny_model_dir), load_corpus(corpus_file), tmp_path / "hybrid", HybridConfig(**{**TINY, "steps": 1}), device="cpu")
    other_dir = save_tiny(tmp_path / "other", texts=["a different vocabulary entirely"] * 5)
    other = load_model(str(other_dir), device="cpu")
    with pytest.raises(ModelError, match="was trained on a target"):
        HybridModel.load(tmp_path / "hybrid", other)
    with pytest.raises(ModelError, match="not a hybrid model directory"):
        HybridModel.load(tiny_model_dir)
    with pytest.raises(ValueError, match="projector must be"):
        HybridConfig(projector="conv").check()
    with pytest.raises(ValueError, match="encoder_layer must be at least 1"):
        HybridConfig(encoder_layer=0).check()
    with pytest.raises(ValueError, match="past the target's 2 blocks"):
        train_hybrid(str(tiny_model_dir), load_corpus(corpus_file), tmp_path / "deep", HybridConfig(**TINY, encoder_layer=3), device="cpu")


def test_encode_takes_the_states_of_a_middle_block(tiny_lm):
    ids = tiny_lm.prompt_format.prompt_ids(tiny_lm.tokenizer, "play pop by bob")
    out = tiny_lm.model.base_model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    assert torch.equal(encode(tiny_lm.model, [ids], layer=1)[0], out.hidden_states[1][0].float())
    assert torch.equal(encode(tiny_lm.model, [ids])[0], out.last_hidden_state[0].float())


def test_a_hybrid_saved_before_the_copy_head_loads_without_one(tmp_path, tiny_model_dir, corpus_file, tiny_lm):
    train_hybrid(str(tiny_model_dir), load_corpus(corpus_file), tmp_path / "old", HybridConfig(**{**TINY, "steps": 1, "copy": False}), device="cpu")
    meta = read_meta(tmp_path / "old")
    del meta["hybrid"]["copy"]  # what tasc.json held before the field existed
    write_meta(tmp_path / "old", meta)
    model = HybridModel.load(tmp_path / "old", tiny_lm)
    assert model.copy_head is None and not model.config.copy
    assert model.generate(tiny_lm.model, tiny_lm.prompt_format.prompt_ids(tiny_lm.tokenizer, "play pop by bob"), 5).tokens


def test_cli_train_hybrid(tmp_path, tiny_model_dir, corpus_file, capsys):
    argv = ["train-hybrid", "--target", str(tiny_model_dir), "--corpus", str(corpus_file), "--out", str(tmp_path / "h"),
            "--layers", "1", "--hidden", "32", "--heads", "2", "--steps", "2", "--batch-size", "2", "--projector", "linear", "--no-copy",
            "--encoder-layer", "1",
            "--device", "cpu", "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "r.json").read_text())["steps"] == 2
    saved = read_meta(tmp_path / "h")["hybrid"]
    assert saved["projector"] == "linear" and not saved["copy"] and saved["encoder_layer"] == 1
    txt = tmp_path / "outputs.txt"
    txt.write_text("only outputs\nno inputs\n")
    assert main(["train-hybrid", "--target", str(tiny_model_dir), "--corpus", str(txt), "--out", str(tmp_path / "x")]) == 2
    assert "needs inputs" in capsys.readouterr().err


# --- the copy head -------------------------------------------------------------------------------

_rng = random.Random(0)
WORDS = ["".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5)) for _ in range(48)]  # 40 to train, 8 to test


@pytest.fixture(scope="module")
def copy_lm(tmp_path_factory):
    """A tiny target whose tokenizer spells every word as one token, with (' w') and without ('w') its space."""
    texts = [f'say {w} "{w}"' for w in WORDS] * 8
    return load_model(str(save_tiny(tmp_path_factory.mktemp("copy") / "target", texts=texts, vocab_size=900)), device="cpu")


def test_bare_token_ids_map_a_spaced_token_to_its_bare_twin(copy_lm):
    from tasc.compare.copy_head import NO_TOKEN, bare_token_ids

    tok = copy_lm.tokenizer
    bare = bare_token_ids(tok, len(tok))
    for w in WORDS:
        (spaced,), (plain,) = tok(" " + w, add_special_tokens=False)["input_ids"], tok(w, add_special_tokens=False)["input_ids"]
        assert bare[spaced] == plain and bare[plain] == NO_TOKEN


@pytest.mark.parametrize("copy", [True, False])
def test_the_copy_head_copies_words_it_never_saw_in_an_answer(tmp_path, copy_lm, copy):
    """Answers quote a prompt word; trained on 40 words, tested on 8 others. Only the copy head can do it."""
    from tasc.compare.copy_head import CopyHead, bare_token_ids

    lm, tok = copy_lm, copy_lm.tokenizer
    lm.model.requires_grad_(False)
    torch.manual_seed(0)
    decoder = build_draft_model(lm.model, DraftConfig(layers=1, hidden=32, heads=2))
    projector = make_projector("mlp", lm.model.config.hidden_size, 32)
    head = CopyHead(32, bare_token_ids(tok, len(tok))) if copy else None
    model = HybridModel(decoder, projector, HybridConfig(copy=copy), copy_head=head)

    def example(word):
        prompt = lm.prompt_format.prompt_ids(tok, f"say {word}")
        return prompt, tok(f'"{word}"', add_special_tokens=False)["input_ids"] + [lm.eos_token_id]

    train = [example(w) for w in WORDS[:40]]
    states = encode(lm.model, [p for p, _ in train])
    batch = [(s, p, a) for s, (p, a) in zip(states, train, strict=False)]
    train_loop(model.module, lambda step: model.loss(batch), LoopConfig(steps=150, learning_rate=1e-2, save_every=1000),
               tmp_path / "ckpt", task="toy")
    right = sum(model.generate(lm.model, p, len(a) + 2, lm.eos_token_id).tokens == a for p, a in map(example, WORDS[40:]))
    if copy:
        assert right >= 6  # unseen words are copied, their leading space dropped (the bare channel)
    else:
        assert right <= 2  # the vocabulary head alone writes the training words it knows
    if copy:  # and the head survives save and reload
        model.meta = {"target_hidden_size": lm.model.config.hidden_size, "target_vocab_size": len(tok)}
        model.save(tmp_path / "saved", tok)
        again = HybridModel.load(tmp_path / "saved", lm)
        p, a = example(WORDS[0])
        assert again.generate(lm.model, p, 8, lm.eos_token_id).tokens == model.generate(lm.model, p, 8, lm.eos_token_id).tokens == a


@pytest.mark.parametrize("total,keep,expected", [(30, 6, [0, 6, 12, 17, 23, 29]), (30, 1, [29]), (4, 4, [0, 1, 2, 3]), (5, 2, [0, 4])])
def test_spread_layers_keeps_the_first_and_last_blocks(total, keep, expected):
    assert spread_layers(total, keep) == expected


def test_a_decoder_cut_from_the_target_runs_with_its_kv_cache():
    """Blocks are renumbered for the cache: greedy with the cache equals the full recomputation; all blocks = the target."""
    target = make_tiny_model(64, seed=4, layers=5, hidden=32)
    whole = slice_target(target, 5)
    ids = torch.tensor([[5, 9, 13, 2]])
    with torch.no_grad():
        assert torch.allclose(whole(ids).logits, target(ids).logits, atol=1e-6)
        cut = slice_target(target, 2)
        assert cut.config.num_hidden_layers == 2 and target.config.num_hidden_layers == 5
        assert [b.self_attn.layer_idx for b in cut.model.layers] == [0, 1]
        assert torch.equal(cut.model.layers[1].mlp.down_proj.weight, target.model.layers[4].mlp.down_proj.weight)
        cached = cut.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)[0, 4:].tolist()
        out = ids
        for _ in range(8):  # no cache: every pass recomputes the whole sequence
            out = torch.cat([out, cut(out, use_cache=False).logits[:, -1:].argmax(-1)], dim=1)
    assert cached == out[0, 4:].tolist()
    with pytest.raises(ValueError, match="between 1 and 5"):
        slice_target(target, 6)


def test_train_hybrid_with_target_blocks_freezes_the_embeddings(tmp_path, tiny_model_dir, corpus_file, tiny_lm):
    with pytest.raises(ValueError, match="more than the target's 2 blocks"):
        train_hybrid(str(tiny_model_dir), load_corpus(corpus_file), tmp_path / "hybrid", HybridConfig(**{**TINY, "target_blocks": 3}), device="cpu")
    assert not (tmp_path / "hybrid").exists()  # the refused run left nothing that would block the corrected one
    config = HybridConfig(**{**TINY, "target_blocks": 1})
    result = train_hybrid(str(tiny_model_dir), load_corpus(corpus_file), tmp_path / "hybrid", config, device="cpu")
    assert result["losses"][-1][1] < result["losses"][0][1]
    model = HybridModel.load(tmp_path / "hybrid", tiny_lm)
    assert model.decoder.config.num_hidden_layers == 1 and model.decoder.config.hidden_size == tiny_lm.model.config.hidden_size
    assert torch.equal(model.decoder.get_input_embeddings().weight, tiny_lm.model.get_input_embeddings().weight)  # frozen
    trainable = sum(p.numel() for p in model.module.parameters()) - model.decoder.get_input_embeddings().weight.numel()
    assert result["parameters"] == trainable  # the frozen embeddings are not counted as trained
    ids = tiny_lm.prompt_format.prompt_ids(tiny_lm.tokenizer, "play rock by bob")
    assert 1 <= len(model.generate(tiny_lm.model, ids, 12, tiny_lm.eos_token_id).tokens) <= 12
    with pytest.raises(ValueError, match="choose one decoder start"):
        HybridConfig(target_blocks=2, decoder_init="x").check()


def test_continue_from_trains_a_saved_hybrid_further_with_its_shape(tmp_path, tiny_model_dir, corpus_file):
    corpus = load_corpus(corpus_file)
    first = train_hybrid(str(tiny_model_dir), corpus, tmp_path / "first", HybridConfig(**{**TINY, "target_blocks": 1}), device="cpu")
    # The shape comes from the saved hybrid: layers/hidden given here are replaced, not applied.
    config = HybridConfig(**{**TINY, "layers": 3, "hidden": 64, "steps": 4, "continue_from": str(tmp_path / "first")})
    second = train_hybrid(str(tiny_model_dir), corpus, tmp_path / "second", config, device="cpu")
    assert second["losses"][0][1] < first["losses"][0][1]  # it starts where the first run ended, not from scratch
    saved = read_meta(tmp_path / "second")["hybrid"]
    assert saved["target_blocks"] == 1 and saved["continue_from"] == str(tmp_path / "first")
    assert HybridModel.load(tmp_path / "second", load_model(str(tiny_model_dir), device="cpu")).decoder.config.num_hidden_layers == 1
    meta = read_meta(tmp_path / "first")
    assert meta["hybrid"]["block_special_copies"]
    lm = load_model(str(tiny_model_dir), device="cpu")
    assert HybridModel.load(tmp_path / "first", lm).copy_head.blocked_ids.tolist() == sorted(lm.tokenizer.all_special_ids)
    assert HybridModel.load(tmp_path / "first").copy_head.blocked_ids.numel() > 0  # without a target: the saved tokenizer's
    del meta["hybrid"]["block_special_copies"]  # as hybrids saved before it were: trained with specials copyable
    write_meta(tmp_path / "first", meta)
    assert HybridModel.load(tmp_path / "first", lm).copy_head.blocked_ids.numel() == 0
    with pytest.raises(ValueError, match="target_blocks 2 differs"):
        train_hybrid(str(tiny_model_dir), corpus, tmp_path / "third", HybridConfig(**{**TINY, "target_blocks": 2,
                     "continue_from": str(tmp_path / "first")}), device="cpu")
    with pytest.raises(ValueError, match="choose one start"):
        HybridConfig(continue_from="a", decoder_init="b").check()


def test_the_copy_head_never_copies_special_tokens(tiny_lm):
    from tasc.compare.copy_head import CopyHead, bare_token_ids

    vocab = tiny_lm.model.get_input_embeddings().weight.shape[0]
    head = CopyHead(8, bare_token_ids(tiny_lm.tokenizer, min(vocab, len(tiny_lm.tokenizer)))).eval()
    words = tiny_lm.tokenizer("play jazz", add_special_tokens=False)["input_ids"]
    eos = tiny_lm.eos_token_id
    assert eos in tiny_lm.tokenizer.all_special_ids
    ids = torch.tensor(words + [eos] + words)  # a chat template's end-of-turn token (also EOS) inside the prompt
    hidden = torch.randn(len(ids), 8)

    logits = torch.full((vocab,), -1e4)
    logits[words[0]] = 0.0  # the vocabulary channel writes one other token: any mass on EOS is copied

    def copy_mass(head: CopyHead) -> torch.Tensor:
        with torch.no_grad():
            probs = head.probs(hidden[-1], logits, head.prompt(hidden, ids), int(ids[-1]))
        return probs[eos]

    def train_log_prob(head: CopyHead) -> float:
        prompt = head.prompt(hidden[None], ids[None]).rows(torch.tensor([0]))
        with torch.no_grad():
            return head.log_prob(hidden[-1:], logits[None], torch.tensor([eos]), prompt, torch.ones(1, len(ids), dtype=torch.bool),
                                 ids[-1:]).item()

    assert copy_mass(head) > 0 and train_log_prob(head) > -10  # unblocked, the head copies the special token
    head.block(tiny_lm.tokenizer.all_special_ids)
    assert copy_mass(head) == 0 and train_log_prob(head) < -20  # blocked (log of the 1e-9 floor), in decoding and in the training loss
