"""Enriched tokenizers and models: exact round trips, embedding initialisation, save and reload."""

import json
import threading

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasc.cli import main
from tasc.core.errors import Cancelled
from tasc.core.models import load_model
from tasc.core.prompts import PromptFormat
from tasc.ft.ngrams import MiningConfig, mine
from tasc.ft.vocab import (
    TokenizerSegmenter,
    adoption,
    base_tokenizer,
    enrich,
    init_new_embeddings,
    load_enriched_info,
    round_trip_failures,
)
from tasc.spec.drafts import build_corpus_index
from tests.tiny import TINY_TEXTS, make_tiny_model, make_tiny_tokenizer

JSONISH = ['{"intent": "PlayMusic", "slots": {"playlist": "50 clásicos"}}', "Ġx ąb\tcafé — naïve 日本 🎷", "  two  spaces\n"]


@pytest.fixture(scope="module")
def tiny_tok():
    return make_tiny_tokenizer()


@pytest.fixture(scope="module")
def enriched_seg(tiny_tok):
    """A segmenter holding the strings mined from the tiny texts."""
    seg = TokenizerSegmenter(tiny_tok)
    mine(TINY_TEXTS, seg, MiningConfig(budget=15, rounds=3, min_count=2))
    assert len(seg.added) >= 10
    return seg


# --- the segmenter (enriched tokenizer without a model) ----------------------------------------

def test_acceptable_refuses_contents_a_byte_level_decoder_would_change(tiny_tok):
    seg = TokenizerSegmenter(tiny_tok)
    assert seg.acceptable('{"intent": "') and seg.acceptable('"}}') and seg.acceptable(" clásicos")
    assert not seg.acceptable("clásicos")  # á would be read as the byte 0xE1
    assert not seg.acceptable("Ġx")  # Ġ would be read as a space
    assert not seg.acceptable("")


def test_set_added_refuses_inexact_or_existing_tokens(tiny_tok):
    seg = TokenizerSegmenter(tiny_tok)
    existing = next(t for t, i in tiny_tok.get_vocab().items() if t.isalpha() and len(t) > 2)  # already a base token
    refused = seg.set_added(['": {"', existing, "clásicos", ", "])  # a real space: never a byte-level base token
    assert refused == [existing, "clásicos"]
    assert seg.added == ['": {"', ", "]
    assert seg.encode(['a": {", b']) == [[*seg.base.encode("a", add_special_tokens=False).ids, seg.base_size,
                                        seg.base_size + 1, *seg.base.encode("b", add_special_tokens=False).ids]]


def test_pieces_spell_the_text(enriched_seg):
    for text in TINY_TEXTS[:8] + JSONISH:
        ids = enriched_seg.encode([text])[0]
        assert b"".join(enriched_seg.piece(i) for i in ids) == text.encode()
    special = enriched_seg.base.token_to_id("<|endoftext|>")
    assert enriched_seg.piece(special) is None


def test_corpus_lines_round_trip(enriched_seg, tiny_tok):
    assert any(t >= enriched_seg.base_size for ids in enriched_seg.encode(TINY_TEXTS) for t in ids)
    assert round_trip_failures(enriched_seg.tokenizer, TINY_TEXTS + JSONISH) == []
    assert round_trip_failures(tiny_tok, TINY_TEXTS + JSONISH) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TINY_TEXTS[:8] + JSONISH) | st.text(max_size=40), max_size=4).map("".join))
def test_random_text_round_trips(enriched_seg, tiny_tok, text):
    enriched, base = enriched_seg.tokenizer, enriched_seg.base
    assert enriched.decode(enriched.encode(text, add_special_tokens=False).ids) == text
    assert base.decode(base.encode(text, add_special_tokens=False).ids) == text


def test_base_tokenizer_drops_added_strings(enriched_seg):
    base = base_tokenizer(enriched_seg.tokenizer, enriched_seg.base_size)
    for text in TINY_TEXTS[:8]:
        assert base.encode(text).ids == enriched_seg.base.encode(text).ids


def test_adoption(enriched_seg):
    texts = [TINY_TEXTS[0], "zzz"]
    a = adoption(enriched_seg.tokenizer, enriched_seg.base_size, texts)
    enc = enriched_seg.encode(texts)
    base = [len(enriched_seg.base.encode(t).ids) for t in texts]
    assert a["n"] == 2 and a["answers_using_new_tokens"] == 0.5
    assert a["tokens_saved"] == sum(base) - sum(map(len, enc)) > 0
    assert a["tokens_per_answer"] == sum(map(len, enc)) / 2 and a["base_tokens_per_answer"] == sum(base) / 2
    ids = [enriched_seg.base.encode(t).ids for t in texts]  # a model that spelt everything with base tokens
    b = adoption(enriched_seg.tokenizer, enriched_seg.base_size, texts, ids=ids)
    assert b["answers_using_new_tokens"] == 0 and b["tokens_saved"] == 0 and b["compression"] == 1.0
    with pytest.raises(ValueError, match="2 texts but 1"):
        adoption(enriched_seg.tokenizer, enriched_seg.base_size, texts, ids=ids[:1])


# --- embeddings --------------------------------------------------------------------------------

@pytest.mark.parametrize("tie", [True, False])
def test_new_rows_are_the_mean_of_their_sub_tokens(tie):
    model = make_tiny_model(50, tie=tie)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    subs = [[3, 4], [7, 8, 9], [10]]
    init_new_embeddings(model, subs, 50)
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == out.shape[0] == model.config.vocab_size == 53
    assert torch.equal(emb[:50], old_in) and torch.equal(out[:50], old_out)
    for i, ids in enumerate(subs):
        assert torch.equal(emb[50 + i], old_in[ids].mean(0))
        assert torch.equal(out[50 + i], old_out[ids].mean(0))
    assert (out.data_ptr() == emb.data_ptr()) == tie
    if not tie:
        assert not torch.equal(emb[50], out[50])


def test_output_bias_and_spare_rows():
    model = make_tiny_model(40, tie=False)
    model.config.vocab_size = 48
    model.resize_token_embeddings(48, mean_resizing=False)  # the matrix already has spare rows
    model.lm_head = torch.nn.Linear(64, 48, bias=True)
    bias = model.lm_head.bias.detach().clone()
    init_new_embeddings(model, [[1, 2]], 40)  # tokenizer size 40: the new id 40 is a spare row
    assert model.get_input_embeddings().weight.shape[0] == 48
    assert torch.equal(model.lm_head.bias[40], bias[[1, 2]].mean())
    with pytest.raises(ValueError, match="sub-token ids"):
        init_new_embeddings(model, [[45]], 41)


# --- enrich: save, reload, generate --------------------------------------------------------------

def greedy(model, ids, n=12):
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0].tolist()


@pytest.mark.parametrize("tie", [True, False])
def test_enrich_saves_a_model_that_reloads_and_generates_identically(tmp_path, tie, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasc.core.models import write_meta

    base_dir = tmp_path / "base"
    tokenizer = make_tiny_tokenizer()
    make_tiny_model(len(tokenizer), seed=1, tie=tie).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    write_meta(base_dir, {"base_model": "tiny", "prompt_format": {"style": "plain"}})
    events = []
    result = enrich(str(base_dir), TINY_TEXTS, tmp_path / "out", MiningConfig(budget=12, rounds=3, min_count=2),
                    heldout=TINY_TEXTS[:4], on_progress=events.append)
    assert result["added"] == 12 and result["heldout_reduction"] > 0.2
    assert [e.done for e in events][:4] == [0, 1, 2, 3] and all(e.task == "enrich" and e.total == 3 for e in events)
    assert "compression" in events[1].metrics

    # tasc.json: the base's entries plus "enriched"
    meta = json.loads((tmp_path / "out" / "tasc.json").read_text())
    assert meta["base_model"] == "tiny"
    assert meta["prompt_format"] == {**PromptFormat(style="plain").to_dict(), "prompt_vocab_size": len(tokenizer)}
    info = load_enriched_info(tmp_path / "out")
    assert info == meta["enriched"] and info["base_vocab_size"] == len(tokenizer) and info["base_model"] == str(base_dir)
    assert [t["id"] for t in info["added_tokens"]] == list(range(len(tokenizer), len(tokenizer) + 12))
    assert info["rounds"] == result["rounds"]
    assert load_enriched_info(base_dir) is None and load_enriched_info(tmp_path / "missing") is None
    assert not list((tmp_path / "out").glob("*.bin"))

    # plain transformers reload; the weights are the base's plus sub-token means
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    expected = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    sub_ids = [tokenizer(t["text"], add_special_tokens=False)["input_ids"] for t in info["added_tokens"]]
    init_new_embeddings(expected, sub_ids, len(tokenizer))
    for a, b in zip(model.state_dict().values(), expected.state_dict().values(), strict=False):
        assert torch.equal(a, b)
    for text in TINY_TEXTS[:8]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert greedy(model, ids) == greedy(expected, ids)
    # new tokens are used, and survive skip_special_tokens
    batch = tok(TINY_TEXTS[:8], add_special_tokens=False)["input_ids"]
    assert any(i >= len(tokenizer) for ids in batch for i in ids)
    assert [tok.decode(ids, skip_special_tokens=True) for ids in batch] == TINY_TEXTS[:8]
    assert (model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()) == tie

    # prompts keep the base vocabulary (an added string inside a prompt stays in base tokens); answers use it
    lm = load_model(str(tmp_path / "out"), device="cpu")
    assert lm.prompt_format.prompt_vocab_size == len(tokenizer)
    for text in TINY_TEXTS[:8]:
        prompt = lm.prompt_format.prompt_ids(lm.tokenizer, text)
        assert max(prompt) < len(tokenizer)
        assert prompt == tokenizer(lm.prompt_format.render(tokenizer, text), add_special_tokens=False)["input_ids"]
    assert PromptFormat(style="plain").prompt_ids(tok, TINY_TEXTS[0]) != lm.prompt_format.prompt_ids(tok, TINY_TEXTS[0])
    # the neighbour index encodes corpus inputs as the prompts that query it are encoded
    seen = []
    monkeypatch.setattr("tasc.spec.drafts.NeighbourIndex", lambda inputs, outputs: seen.append(inputs))
    for prompt_format in (lm.prompt_format, None):
        build_corpus_index(lm.tokenizer, [f"answer {i}" for i in range(8)], TINY_TEXTS[:8], prompt_format)
    assert seen[0] == lm.prompt_format.encode(lm.tokenizer, TINY_TEXTS[:8]) and max(map(max, seen[0])) < len(tokenizer)
    assert max(map(max, seen[1])) >= len(tokenizer)  # the full enriched tokenizer would cut inputs differently


def test_enrich_refuses_its_own_base_dir_and_stops_on_cancel(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="base model's own directory"):
        enrich(str(tiny_model_dir), TINY_TEXTS, tiny_model_dir)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        enrich(str(tiny_model_dir), TINY_TEXTS, tmp_path / "out", cancel=cancel)
    assert not (tmp_path / "out").exists()


def test_mine_vocabulary_takes_a_corpus_and_reports_progress(tiny_model_dir):
    from tasc.core.corpus import Corpus
    from tasc.ft.vocab import mine_vocabulary

    events = []
    corpus = Corpus(list(TINY_TEXTS), None, "tiny", {})
    result = mine_vocabulary(str(tiny_model_dir), corpus, MiningConfig(budget=5, rounds=2, min_count=2),
                             on_progress=events.append)
    assert result["out_dir"] is None and result["added"] == 5 and result["heldout_reduction"] is None
    assert [e.done for e in events] == [r["round"] for r in result["rounds"]] and events[0].task == "mine"
    assert result["rounds"][-1]["added"] == 5 and result["compression"] > 1


# --- CLI ---------------------------------------------------------------------------------------

@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [{"input": f"q{i % 12}", "output": text} for i, text in enumerate(TINY_TEXTS * 2)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_mine_command(tiny_model_dir, corpus_file, tmp_path, capsys):
    out = tmp_path / "mine.json"
    assert main(["mine", str(corpus_file), "--model", str(tiny_model_dir), "--budget", "8", "--rounds", "2",
                 "--top", "5", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "saved" in printed and "round  2" in printed and "held-out" in printed
    assert len([line for line in printed.splitlines() if line[:4].strip().isdigit()]) == 5
    data = json.loads(out.read_text())
    assert data["added"] == len(data["tokens"]) == 8 and data["heldout_reduction"] is not None
    assert main(["mine", str(corpus_file), "--model", str(tiny_model_dir), "--heldout", "1.5"]) == 2


def test_enrich_command(tiny_model_dir, corpus_file, tmp_path, capsys):
    out = tmp_path / "enriched"
    assert main(["enrich", str(corpus_file), "--model", str(tiny_model_dir), "--budget", "6", "--rounds", "2",
                 "--out", str(out), "--heldout", "0", "--json", str(tmp_path / "e.json")]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "held-out" not in printed
    assert load_enriched_info(out)["base_vocab_size"] == 300
    assert json.loads((tmp_path / "e.json").read_text())["added"] == 6
    valid = tmp_path / "valid.txt"
    valid.write_text("play some jazz by miles davis\n")
    assert main(["mine", str(corpus_file), "--model", str(tiny_model_dir), "--budget", "3", "--valid", str(valid)]) == 0
    assert "held-out" in capsys.readouterr().out


# --- the real SmolLM2 tokenizer (no weights loaded) ------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_tokenizer(real_model_dir):
    from tasc.ft.vocab import load_tokenizer

    return load_tokenizer(str(real_model_dir))


def enriched_hf_tokenizer(tokenizer, texts):
    """A copy of a transformers tokenizer with the mined strings added, as `enrich` saves it."""
    import copy

    from tasc.ft.vocab import added_token

    tok = copy.deepcopy(tokenizer)
    assert tok.add_tokens([added_token(t) for t in texts]) == len(texts)
    return tok


@pytest.mark.real_model
@pytest.mark.parametrize("task", ["snips", "e2e"])
def test_smollm2_compression_targets_and_exact_round_trips(smollm2_tokenizer, data_dir, task):
    """Budget 300: SNIPS valid answers >= 58% fewer tokens, E2E held-out >= 38% fewer; every line exact."""
    from tasc.core.corpus import load_corpus, split_by_input

    if task == "snips":
        train, heldout = (load_corpus(data_dir / "snips" / f).outputs for f in ("train.jsonl", "valid.jsonl"))
        target = 0.58
    else:
        parts = split_by_input(load_corpus(data_dir / "e2e" / "dev.jsonl"), 0.1, seed=0)
        train, heldout = (p.outputs for p in parts)
        target = 0.38
    seg = TokenizerSegmenter(smollm2_tokenizer)
    result = mine(train, seg, MiningConfig(budget=300))
    assert len(result.texts) == 300
    tok = enriched_hf_tokenizer(smollm2_tokenizer, result.texts)
    base_size = len(smollm2_tokenizer)
    assert adoption(tok, base_size, heldout)["reduction"] >= target
    texts = train + heldout
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    assert ids == seg.encode(texts)  # the saved tokenizer cuts text exactly as the miner measured
    assert tok.batch_decode(ids, skip_special_tokens=True) == texts
    assert round_trip_failures(smollm2_tokenizer, texts) == []


# Bytes missing from the GGUF-converted SmolLM2 vocabulary: text holding them loses them even with the
# base tokenizer (lead bytes 0xF1/0xF2 are code points U+40000..U+BFFFF).
SMOLLM2_UNCOVERED = "\x04\x06\x13\x14\x16\x1d"


@pytest.mark.real_model
def test_smollm2_enriched_round_trips_random_text(smollm2_tokenizer):
    seg = TokenizerSegmenter(smollm2_tokenizer)
    mine(TINY_TEXTS, seg, MiningConfig(budget=20, rounds=2, min_count=2))
    tok = seg.tokenizer
    covered = st.text(st.characters(codec="utf-8", max_codepoint=0x3FFFF, exclude_characters=SMOLLM2_UNCOVERED), max_size=30)

    def exact(tokenizer, text):
        return tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids) == text

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(TINY_TEXTS[:8] + JSONISH + seg.added) | covered, max_size=5).map("".join),
           st.text(max_size=10))
    def check(text, anything):
        assert exact(tok, text) and exact(seg.base, text)
        assert exact(tok, text + anything) or not exact(seg.base, text + anything)  # never worse than the base

    check()
