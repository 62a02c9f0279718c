"""Corpus reading: every format, splits, references, and hostile files getting a clear CorpusError."""

from __future__ import annotations

import builtins
import io
import json
import os
from pathlib import Path

import pytest

from tasc.core.corpus import (
    ASSETS_DIR,
    Corpus,
    CorpusLimits,
    candidate_columns,
    escape_csv_cell,
    load_corpus,
    load_example,
    parse_corpus_bytes,
    references_by_input,
    split_by_input,
    write_jsonl,
)
from tasc.core.errors import CorpusError

E2E_CSV = b'mr,ref\n"name[Aromi], eatType[cafe]","Aromi is a cafe."\n"name[Aromi], eatType[cafe]",Aromi: a cafe.\n'


def jsonl(*rows: dict) -> bytes:
    """Rows as JSON Lines bytes."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


# --- formats ---------------------------------------------------------------------------------------------------

def test_jsonl_input_output():
    c = parse_corpus_bytes(jsonl({"input": "a", "output": "x"}, {"input": "b", "output": "y"}), "t.jsonl")
    assert c.pairs() == [("a", "x"), ("b", "y")] and len(c) == 2 and c.source == "t.jsonl"
    assert c.stats.rows == 2 and c.stats.distinct_inputs == 2 and c.stats.chars == 2 and c.stats.max_output_chars == 1


def test_jsonl_output_only_and_crlf_bom_unicode():
    data = b"\xef\xbb\xbf" + '{"output": "caf\u00e9 \u2028 \u4e2d"}\r\n\r\n{"output": "b"}\r\n'.encode()
    c = parse_corpus_bytes(data, "o.jsonl")
    assert c.outputs == ["caf\u00e9 \u2028 \u4e2d", "b"] and c.inputs is None and c.stats.distinct_inputs is None
    with pytest.raises(CorpusError, match="outputs only"):
        c.pairs()


def test_jsonl_column_override_and_object_values():
    data = jsonl({"q": "hi", "a": {"intent": "greet", "slots": {}}, "output": "ignored"})
    c = parse_corpus_bytes(data, "x.jsonl", output_column="a", input_column="q")
    assert c.pairs() == [("hi", '{"intent": "greet", "slots": {}}')]


def test_jsonl_empty_outputs_skipped_and_all_empty_is_error():
    c = parse_corpus_bytes(jsonl({"output": ""}, {"output": "  "}, {"output": None}, {"output": "ok"}), "x.jsonl")
    assert c.outputs == ["ok"]
    with pytest.raises(CorpusError, match="no rows with a non-empty output"):
        parse_corpus_bytes(jsonl({"output": ""}, {"output": " "}), "x.jsonl")


def test_csv_auto_and_explicit_columns():
    data = b"id,question,answer,notes\n1,What?,That.,n1\n2,Who?,Them.,n2\n"
    assert parse_corpus_bytes(data, "qa.csv").pairs() == [("What?", "That."), ("Who?", "Them.")]
    c = parse_corpus_bytes(data, "qa.csv", output_column="notes", input_column="ID")
    assert c.pairs() == [("1", "n1"), ("2", "n2")]
    assert candidate_columns(data, "qa.csv") == ["id", "question", "answer", "notes"]


def test_e2e_style_mr_ref_csv():
    c = parse_corpus_bytes(E2E_CSV, "trainset.csv")
    assert c.inputs == ["name[Aromi], eatType[cafe]"] * 2 and c.outputs == ["Aromi is a cafe.", "Aromi: a cafe."]
    assert c.stats.distinct_inputs == 1


def test_csv_keeps_formula_cells_and_multiline_cells():
    c = parse_corpus_bytes(b'output\n=HYPERLINK("x")\n"two\nlines"\n@SUM(A1)\n', "f.csv")
    assert c.outputs == ['=HYPERLINK("x")', "two\nlines", "@SUM(A1)"]
    assert [escape_csv_cell(s) for s in ["=1+2", "+1", "-1", "@x", "\tx", "ok", ""]] == [
        "'=1+2", "'+1", "'-1", "'@x", "'\tx", "ok", ""]


def test_tsv_and_txt():
    c = parse_corpus_bytes(b"prompt\tresponse\nhello\tworld\nfoo\tbar, baz\n", "t.tsv")
    assert c.pairs() == [("hello", "world"), ("foo", "bar, baz")]
    c = parse_corpus_bytes(b"first line\n\n   \n<svg onload=alert(1)><script>x</script>\n", "t.txt")
    assert c.outputs == ["first line", "<svg onload=alert(1)><script>x</script>"] and c.inputs is None
    assert candidate_columns(b"a\nb\n", "t.txt") == []


def test_unknown_extension_is_sniffed():
    assert parse_corpus_bytes(jsonl({"input": "a", "output": "b"}), "data").pairs() == [("a", "b")]
    assert parse_corpus_bytes(E2E_CSV, "e2e.dat").inputs[0] == "name[Aromi], eatType[cafe]"
    assert parse_corpus_bytes(b"just a sentence, with a comma\n", "notes.md").outputs == ["just a sentence, with a comma"]
    with pytest.raises(CorpusError, match="does not look like a text file"):
        parse_corpus_bytes(bytes(range(1, 32)) * 10, "blob.bin")


def test_source_is_base_name_only(tmp_path):
    c = parse_corpus_bytes(jsonl({"output": "a"}), "../../etc/" + "x" * 300 + ".jsonl")
    assert "/" not in c.source and len(c.source) == 200
    assert parse_corpus_bytes(jsonl({"output": "a"}), "C:\\Users\\me\\x.jsonl").source == "x.jsonl"
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.jsonl").write_bytes(jsonl({"output": "a"}))
    assert load_corpus(tmp_path / "sub" / ".." / "x.jsonl").source == "x.jsonl"


def test_write_jsonl_roundtrip(tmp_path):
    c = parse_corpus_bytes(jsonl({"input": "a\u2028b", "output": "\u00e9\n"}, {"input": "a\u2028b", "output": "y"}), "x.jsonl")
    write_jsonl(c, tmp_path / "out" / "c.jsonl")
    back = load_corpus(tmp_path / "out" / "c.jsonl")
    assert back.pairs() == c.pairs() and back.source == "c.jsonl"
    write_jsonl(["one", "two"], tmp_path / "o.jsonl")
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8") == '{"output": "one"}\n{"output": "two"}\n'
    assert not list(tmp_path.glob("*.tmp"))


def test_subset():
    c = parse_corpus_bytes(jsonl(*({"input": str(i % 3), "output": "o" * (i + 1)} for i in range(6))), "x.jsonl")
    s = c.subset([5, 0])
    assert s.pairs() == [("2", "oooooo"), ("0", "o")] and s.stats.rows == 2 and s.stats.chars == 7


# --- split and references --------------------------------------------------------------------------------------

def multi_ref() -> Corpus:
    """40 inputs with 1-4 references each, interleaved."""
    rows = [{"input": f"in{i % 40}", "output": f"out{i}"} for i in range(100)]
    return parse_corpus_bytes(jsonl(*rows), "m.jsonl")


def test_split_by_input():
    c = multi_ref()
    train, held = split_by_input(c, heldout_fraction=0.25, seed=3)
    assert not set(train.inputs) & set(held.inputs)
    assert held.stats.distinct_inputs == 10 and len(train) + len(held) == len(c)
    assert sorted(train.pairs() + held.pairs()) == sorted(c.pairs())
    again = split_by_input(c, heldout_fraction=0.25, seed=3)
    assert again[0].pairs() == train.pairs() and again[1].pairs() == held.pairs()
    assert split_by_input(c, 0.25, seed=4)[1].pairs() != held.pairs()
    assert split_by_input(c, 0.5, max_heldout_inputs=2)[1].stats.distinct_inputs == 2


def test_split_output_only_and_too_small():
    c = parse_corpus_bytes(b"a\nb\na\nc\n", "x.txt")
    train, held = split_by_input(c, 0.5)
    assert not set(train.outputs) & set(held.outputs) and len(train) + len(held) == 4
    with pytest.raises(CorpusError, match="fewer than 2 distinct"):
        split_by_input(parse_corpus_bytes(b"a\n", "x.txt"))


def test_references_by_input():
    refs = references_by_input(parse_corpus_bytes(jsonl(
        {"input": "b", "output": "1"}, {"input": "a", "output": "2"}, {"input": "b", "output": "3"}), "x.jsonl"))
    assert refs == {"b": ["1", "3"], "a": ["2"]} and list(refs) == ["b", "a"]


# --- hostile files ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,match", [
    (b"", "is empty"),
    (b" \n\t\r\n  ", "only whitespace"),
    (b'{"output": "a\x00b"}\n', "NUL bytes"),
    (b"PK\x03\x04\x14\x00\x00\x00", "looks like a ZIP archive"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "looks like a PNG image"),
    (b"GIF89a\x01\x00", "looks like a GIF image"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "looks like a PDF document"),
    (b"\x1f\x8b\x08\x00\x00\x00", "looks like a gzip archive"),
    (b"\x7fELF\x02\x01\x01", "looks like an ELF executable"),
    ('{"output": "x"}\n'.encode("utf-16"), "UTF-16 is not supported, save it as UTF-8"),
    ('{"output": "x"}\n'.encode("utf-16-be"), "NUL bytes"),
    ('{"output": "x"}\n'.encode("utf-32"), "UTF-32 is not supported"),
    (b'{"output": "ok"}\n{"output": "caf\xe9"}\n', r"not valid UTF-8: bad byte at offset 32 \(line 2\)"),
])
def test_bad_bytes(data, match):
    with pytest.raises(CorpusError, match=match):
        parse_corpus_bytes(data, "x.jsonl")


@pytest.mark.parametrize("data,match", [
    (b'{"output": "a"}\n[1, 2]\n', r"line 2: expected a JSON object"),
    (b'{"output": "a"}\n"just a string"\n', r"line 2: expected a JSON object"),
    (b'{"output": "a"}\n{"output": \n', r"line 2 is not valid JSON"),
    (b'[{"output": "a"},\n {"output": "b"}]\n', "looks like one JSON array"),
    (b'{"output": 42}\n', r"'output' is int 42, expected a string"),
    (b'{"output": true}\n', "'output' is bool"),
    (b'{"input": "a", "output": "b"}\n{"output": "c"}\n', r"line 2 has no 'input' key; its keys are: output"),
    (b'{"text_out": "a", "id": "1"}\n', r"no output column found .* its columns are: text_out, id"),
    (b'{"output": "' + b"1" * 5000 + b'", "n": ' + b"1" * 5000 + b"}\n", "not valid JSON"),
])
def test_bad_jsonl(data, match):
    with pytest.raises(CorpusError, match=match):
        parse_corpus_bytes(data, "x.jsonl")


def test_explicit_missing_columns_list_what_exists():
    with pytest.raises(CorpusError, match=r"no output column 'reference'; its columns are: mr, ref"):
        parse_corpus_bytes(E2E_CSV, "e.csv", output_column="reference")
    with pytest.raises(CorpusError, match=r"no input column 'meaning'; its columns are: input, output"):
        parse_corpus_bytes(jsonl({"input": "a", "output": "b"}), "e.jsonl", input_column="meaning")
    with pytest.raises(CorpusError, match=r"no output column found .* columns are: a, b"):
        parse_corpus_bytes(b"a,b\n1,2\n", "e.csv")
    with pytest.raises(CorpusError, match="plain text .* no columns"):
        parse_corpus_bytes(b"x\n", "e.txt", output_column="output")


def test_bad_csv_rows():
    with pytest.raises(CorpusError, match=r"line 3 has 1 cells but the header has 2"):
        parse_corpus_bytes(b"mr,ref\na,b\nc\n", "e.csv")
    with pytest.raises(CorpusError, match="record longer than 50"):
        parse_corpus_bytes(b'output\n"' + b"a\n" * 40 + b'"\n', "e.csv", limits=CorpusLimits(max_line_chars=50))


def test_deep_json_is_rejected_without_recursion():
    deep = b'{"output": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    with pytest.raises(CorpusError, match=r"line 1: JSON nested deeper than 20 levels"):
        parse_corpus_bytes(deep, "x.jsonl", limits=CorpusLimits(max_line_chars=10**6))
    with pytest.raises(CorpusError, match="max_line_chars"):  # the default line limit catches it first
        parse_corpus_bytes(deep, "x.jsonl")
    brackets_in_strings = jsonl({"output": "[" * 500 + "{" * 500, "input": "]]]"})
    assert parse_corpus_bytes(brackets_in_strings, "x.jsonl").outputs[0].startswith("[[[")


def test_long_line_and_row_limits():
    small = CorpusLimits(max_bytes=1000, max_rows=3, max_line_chars=30)
    with pytest.raises(CorpusError, match=r"line 2 has 31 characters, more than the limit of 30 \(max_line_chars\)"):
        parse_corpus_bytes(b"short\n" + b"y" * 31 + b"\n", "x.txt", limits=small)
    with pytest.raises(CorpusError, match=r"more than 3 rows \(max_rows\)"):
        parse_corpus_bytes(b"a\nb\nc\nd\n", "x.txt", limits=small)
    with pytest.raises(CorpusError, match=r"more than 3 rows"):
        parse_corpus_bytes(jsonl(*[{"output": "a"}] * 4), "x.jsonl", limits=small)
    with pytest.raises(CorpusError, match=r"more than 3 rows"):
        parse_corpus_bytes(b"output\n1\n2\n3\n4\n", "x.csv", limits=small)
    with pytest.raises(CorpusError, match=r"larger than 1,000 bytes \(max_bytes\)"):
        parse_corpus_bytes(b"a\n" * 501, "x.txt", limits=small)


def test_oversize_file_refused_without_reading(tmp_path, monkeypatch):
    big = tmp_path / "huge.jsonl"
    with big.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GiB on paper, nothing on disk
    small = tmp_path / "small.jsonl"
    small.write_bytes(jsonl({"output": "a"}))
    opened = []  # every file opened by path while the corpus loads
    real_open, real_os_open = io.open, os.open

    def spy_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            opened.append(Path(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):
        opened.append(Path(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    with pytest.raises(CorpusError, match="huge.jsonl is larger than 52,428,800 bytes"):
        load_corpus(big)
    assert big not in opened  # refused from its size alone: not one byte of it was read
    assert load_corpus(small).outputs == ["a"] and small in opened  # the spy does see a file that is read


def test_load_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(tmp_path / "missing.jsonl")
    with pytest.raises(CorpusError, match="not a regular file"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="no example corpus"):
        load_example("../../etc/passwd")


# --- real data and our assets ----------------------------------------------------------------------------------

def test_real_e2e(data_dir):
    c = load_corpus(data_dir / "e2e" / "dev.jsonl")
    assert c.stats.rows == 4672 and c.stats.distinct_inputs == 547 and c.source == "dev.jsonl"
    train, held = split_by_input(c, 0.1, seed=0)
    assert not set(train.inputs) & set(held.inputs) and len(train) + len(held) == 4672
    assert sum(map(len, references_by_input(held).values())) == len(held)


def test_real_snips(data_dir):
    c = load_corpus(data_dir / "snips" / "train.jsonl")
    assert len(c) == 13084 and json.loads(c.outputs[0])["intent"]


@pytest.mark.parametrize("name", ["support_tickets.jsonl", "weather_reports.jsonl"])
def test_assets(name):
    c = load_example(name)
    assert c.source == f"assets/{name}" and 100 <= len(c) <= 300 and c.stats.distinct_inputs > 100
    assert load_corpus(ASSETS_DIR / name).source == f"assets/{name}"
    if name.startswith("support"):
        assert all(set(json.loads(o)) == {"intent", "priority", "product", "order_id"} for o in c.outputs)
