"""Text the app refuses at the door (lone surrogates, non-text arguments) and the budgets that bound a
session's cost: TASC-spec's corpus index (tokens, bytes, the shared cache) and the corpus export on disk."""

from __future__ import annotations

import gc
import json
import random
import re
import tracemalloc
from types import SimpleNamespace

import pytest

from studio import indexes, tab_corpus
from tasc.core.corpus import Corpus, candidate_columns, check_text, compute_stats, lone_surrogate, parse_corpus_bytes, safe_name
from tasc.core.errors import CorpusError, TascError
from tasc.core.prompts import PromptFormat
from tasc.spec.drafts import MARKS_PER_ROW, build_corpus_index, rows_within_budget

SURROGATE_JSONL = b'{"input": "a", "output": "fine"}\n{"input": "b", "output": "x\\ud800y"}\n'


# --- text at the door --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    b'{"input": "b", "output": "x\\ud800y"}',  # high surrogate alone
    b'{"input": "b", "output": "x\\udc00"}',  # low surrogate alone
    b'{"input": "b", "output": "\\ude00\\ud83d"}',  # a pair in the wrong order
    b'{"input": "b\\ud800", "output": "x"}',  # in the input column
    b'{"input": "b", "output": {"k": "v\\ud800"}}',  # inside an object value (kept as JSON text)
])
def test_jsonl_lone_surrogates_are_refused_naming_the_line(line):
    with pytest.raises(CorpusError, match=r"line 2: '(input|output)' holds a lone surrogate \(U\+D[89A-F][0-9A-F]{2}") as err:
        parse_corpus_bytes(b'{"input": "a", "output": "fine"}\n' + line + b"\n", "c.jsonl")
    assert lone_surrogate(str(err.value)) is None  # the message itself can be sent


def test_a_surrogate_pair_escape_is_a_real_character():
    c = parse_corpus_bytes(b'{"output": "smile \\ud83d\\ude00"}\n', "c.jsonl")
    assert c.outputs == ["smile \U0001f600"]


def test_encoded_surrogate_bytes_are_not_utf8():
    with pytest.raises(CorpusError, match="not valid UTF-8"):
        parse_corpus_bytes(b"output\nx\xed\xa0\x80y\n", "c.csv")


def test_surrogate_keys_are_refused_before_reaching_the_column_pickers():
    with pytest.raises(CorpusError, match="a key holds a lone surrogate"):
        candidate_columns(b'{"\\ud800": "x", "output": "y"}\n', "c.jsonl")
    with pytest.raises(CorpusError, match="its columns are: \ufffd") as err:  # shown replaced, never raw
        parse_corpus_bytes(b'{"\\ud800": "x", "b": "y"}\n', "c.jsonl")
    assert lone_surrogate(str(err.value)) is None


def test_check_text():
    assert check_text("caf\u00e9 \U0001f600", "The prompt") == "caf\u00e9 \U0001f600"
    with pytest.raises(TascError, match=r"The prompt contains a lone surrogate \(U\+D800\) at character 3"):
        check_text("ab\ud800c", "The prompt")
    with pytest.raises(TascError, match="The text must be text, got list"):
        check_text(["a"], "The text")


@pytest.mark.parametrize("column", [5, 2.5, ["output"], {"a": 1}, True])
def test_non_text_column_names_are_refused(column):
    for data, name in ((SURROGATE_JSONL.split(b"\n")[0] + b"\n", "c.jsonl"), (b"input,output\na,b\n", "c.csv")):
        with pytest.raises(CorpusError, match="the output column must be a column name \\(text\\)"):
            parse_corpus_bytes(data, name, output_column=column)
        with pytest.raises(CorpusError, match="the input column must be a column name \\(text\\)"):
            parse_corpus_bytes(data, name, input_column=column)


def test_safe_name_drops_lone_surrogates():
    assert safe_name("caf\udce9.jsonl") == "caf.jsonl"  # an undecodable byte of a file name, as Python reads it


# --- the index budget ----------------------------------------------------------------------------------------

class WordTokenizer:
    """A stand-in for a BPE tokenizer: pieces of about 2.5 characters, ids above the small-int cache."""

    PIECE = re.compile(r" ?[A-Za-z]{1,4}|\d{1,3}|\s+|[^\sA-Za-z\d]")
    eos_token, eos_token_id, chat_template = "<eos>", 0, None

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.calls = 0
        self.tokenised = 0  # tokens produced over all calls

    def __len__(self) -> int:
        return 50_000

    def __call__(self, texts, add_special_tokens=False):
        self.calls += 1
        ids = [[self.vocab.setdefault(p, 1000 + len(self.vocab)) for p in self.PIECE.findall(t)] for t in texts]
        self.tokenised += sum(map(len, ids))
        return {"input_ids": ids}


def long_outputs(n: int, chars: int = 12_000, seed: int = 0) -> list[str]:
    """JSON answers of about `chars` characters each (the shape that cost 3 GB per session)."""
    rng = random.Random(seed)
    outs = []
    for _ in range(n):
        recs: list[dict] = []
        while sum(len(json.dumps(r)) for r in recs) < chars:
            recs.append({"id": f"R{rng.randrange(10**7):07d}", "city": rng.choice(["paris", "berlin", "rome"]),
                         "temp": round(rng.uniform(-10, 35), 1),
                         "note": " ".join(rng.choice("alpha beta gamma delta wind rain sun".split()) for _ in range(6))})
        outs.append(json.dumps(recs))
    return outs


def test_rows_within_budget_fills_the_budget_from_a_seeded_sample():
    tok = WordTokenizer()
    outs = long_outputs(40, 3000)
    need = sum(len(ids) + MARKS_PER_ROW for ids in tok(outs)["input_ids"])
    rows, seqs = rows_within_budget(tok, outs, need // 3)
    assert rows == sorted(rows) and 0 < len(rows) < len(outs)
    used = sum(len(s) + MARKS_PER_ROW for s in seqs)
    assert need // 3 - 2 * max(map(len, seqs)) < used <= need // 3  # full up to about one row
    assert seqs == [tok([outs[i]])["input_ids"][0] for i in rows]
    assert rows_within_budget(tok, outs, need // 3)[0] == rows  # the same corpus, the same sample
    assert rows[-1] > len(outs) // 2  # spread over the corpus, not its first rows
    all_rows, _ = rows_within_budget(tok, outs, need)
    assert all_rows == list(range(len(outs)))


def test_rows_within_budget_bounds_its_work_on_a_huge_corpus():
    tok = WordTokenizer()
    outs = long_outputs(300, 2000)
    rows, seqs = rows_within_budget(tok, outs, 5_000)
    assert sum(len(s) + MARKS_PER_ROW for s in seqs) <= 5_000
    assert tok.tokenised < 4 * 5_000  # the whole corpus is ~200k tokens: never tokenised
    assert rows_within_budget(tok, ["x" * 500] * 3, 10) == ([], [])  # nothing fits: an empty index, no error


def test_build_corpus_index_samples_rows_within_the_budget():
    tok = WordTokenizer()
    outs = long_outputs(30, 3000)
    ins = [f"request {i}" for i in range(30)]
    index = build_corpus_index(tok, outs, ins, PromptFormat(style="plain"), max_tokens=8_000)
    assert index.stream_tokens <= 8_000 and index.rows is not None and index.rows_total == 30
    assert index.n_sequences == len(index.rows) < 30
    assert len(index.neighbours) == len(index.rows)  # neighbours see the same rows
    whole = build_corpus_index(tok, outs, ins, PromptFormat(style="plain"), max_tokens=10**9)
    assert whole.rows is None and whole.rows_total == 30 and whole.n_sequences == 30


def test_index_memory_stays_under_the_stated_bound_per_token(tiny_lm):
    """The README's per-session figure: an index's memory (build peak included) per token it holds,
    for long JSON outputs with inputs, with the tiny BPE tokenizer (its figure is the highest measured:
    ~540 B/token steady, ~660 at the peak; SmolLM2's ~510 / ~630) and with word-like pieces."""
    outs = long_outputs(40, 12_000)
    ins = [f"report {i} for paris" for i in range(40)]
    budget = 60_000
    for tok in (tiny_lm.tokenizer, WordTokenizer()):
        gc.collect()
        tracemalloc.start()
        try:
            index = build_corpus_index(tok, outs, ins, PromptFormat(style="plain"), max_tokens=budget)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert index.rows is not None and index.stream_tokens <= budget
        assert index.stream_tokens > budget * 0.8
        assert peak <= budget * indexes.INDEX_BYTES_PER_TOKEN, f"{peak / index.stream_tokens:.0f} B/token"
        assert current <= peak
        del index
    # the stated per-index figure follows: at most INDEX_MAX_TOKENS tokens at that many bytes each
    assert indexes.INDEX_MAX_TOKENS * indexes.INDEX_BYTES_PER_TOKEN <= 300 * 2**20


def test_index_cache_shares_equal_corpora_and_bounds_its_total():
    cache = indexes.IndexCache(max_tokens=10_000)
    built = []

    def build(tokens):
        def make():
            built.append(tokens)
            return SimpleNamespace(stream_tokens=tokens)
        return make

    a = cache.get("a", build(4_000))
    assert cache.get("a", build(4_000)) is a and built == [4_000]  # the same content: built once
    cache.get("b", build(4_000))
    cache.get("a", build(4_000))  # a is now the most recently used
    cache.get("c", build(4_000))  # over 10,000: the least recently used (b) goes
    assert len(cache) == 2 and cache.tokens() <= 10_000
    cache.get("b", build(4_000))
    assert built == [4_000, 4_000, 4_000, 4_000]  # b was rebuilt
    big = cache.get("big", build(50_000))  # alone over the bound: kept (it is in use), everything else goes
    assert len(cache) == 1 and cache.get("big", build(1)) is big
    tiny = [cache.get(f"t{i}", build(1)) for i in range(30)]  # tiny indexes are charged MIN_CHARGE each
    assert len(cache) <= 10_000 // indexes.IndexCache.MIN_CHARGE and tiny


def test_equal_corpora_have_equal_keys_and_any_change_another():
    lm = SimpleNamespace(name="m", prompt_format=PromptFormat())
    c = Corpus(["x", "y"], ["a", "b"], "one.jsonl", compute_stats(["x", "y"], ["a", "b"]))
    same = Corpus(["x", "y"], ["a", "b"], "two.jsonl", compute_stats(["x", "y"], ["a", "b"]))
    key = indexes.corpus_key(lm, c, 100)
    assert indexes.corpus_key(lm, same, 100) == key  # the file name does not matter
    others = [Corpus(["x", "y"], None, "o", c.stats), Corpus(["xy", ""], ["a", "b"], "o", c.stats),
              Corpus(["x", "y"], ["b", "a"], "o", c.stats)]
    assert len({key} | {indexes.corpus_key(lm, o, 100) for o in others}) == 4
    assert indexes.corpus_key(lm, c, 99) != key
    assert indexes.corpus_key(SimpleNamespace(name="n", prompt_format=PromptFormat()), c, 100) != key


# --- the export on disk ----------------------------------------------------------------------------------------

def test_a_session_keeps_one_export_which_goes_with_it(tmp_path, monkeypatch):
    from studio.sessions import SessionStore

    monkeypatch.setenv("TASC_APP_CACHE", str(tmp_path / "cache"))
    store = SessionStore(tmp_path / "cache" / "sessions")
    exports = tmp_path / "cache" / tab_corpus.EXPORTS
    a, b = store.new(), store.new()
    for i in range(5):
        corpus = Corpus([f"=out {i}"], [f"in {i}"], f"file{i % 2}.jsonl", compute_stats([f"=out {i}"], None))
        path = tab_corpus.export_corpus_csv(a, corpus)
        assert path.read_text(encoding="utf-8") == f"input,output\nin {i},'=out {i}\n"
    tab_corpus.export_corpus_csv(b, corpus)
    files = sorted(p.relative_to(exports).as_posix() for p in exports.rglob("*") if p.is_file())
    assert files == sorted([f"{a.workdir.name}/file0.csv", f"{b.workdir.name}/file0.csv"])  # one per session
    token_a = a.token
    del a
    store.drop(token_a)
    gc.collect()
    assert sorted(p.name for p in exports.iterdir()) == [b.workdir.name]


def test_stale_export_folders_of_no_live_session_are_swept(tmp_path):
    import os

    root = tmp_path / "exports"
    old, fresh = root / "old" / "x1", root / "fresh"
    old.mkdir(parents=True)
    (old / "c.csv").write_text("x")
    fresh.mkdir()
    os.utime(root / "old", (0, 0))
    assert tab_corpus.sweep_exports(root) == 1
    assert [p.name for p in root.iterdir()] == ["fresh"]
