"""Upload checks by name, size on disk and bytes (markup renamed .txt), before parsing."""

from __future__ import annotations

import pytest

from studio.uploads import UploadLimits, check_name, load_upload, read_upload
from tasc.core.errors import CorpusError


def write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_a_good_upload_loads(tmp_path):
    p = write(tmp_path, "ok.jsonl", b'{"input": "a", "output": "b"}\n{"input": "c", "output": "d"}\n')
    corpus = load_upload(p)
    assert corpus.outputs == ["b", "d"] and corpus.source == "ok.jsonl"


@pytest.mark.parametrize("name, message", [
    ("x" * 9000 + ".txt", "9,004 characters long"),
    ("../../x", "unsupported file type '(no extension)'"),
    ("corpus.exe", "unsupported file type '.exe'"),
    ("archive.zip", "unsupported file type '.zip'"),
])
def test_names_we_refuse(name, message):
    with pytest.raises(CorpusError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_name(name)


def test_path_like_names_keep_only_the_base_name():
    assert check_name("../../etc/x.jsonl") == "x.jsonl"
    assert check_name("..\\..\\x.csv") == "x.csv"


@pytest.mark.parametrize("data", [
    b"<!DOCTYPE html><html><body>hi</body></html>",
    b"  <html><script>alert(1)</script></html>",
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>',
    b'<?xml version="1.0"?><svg></svg>',
    b"\xef\xbb\xbf<html></html>",
    b"<p>hello</p><script>alert(1)</script>",
])
def test_markup_renamed_txt_is_refused(tmp_path, data):
    with pytest.raises(CorpusError, match="HTML, SVG or XML"):
        read_upload(write(tmp_path, "page.txt", data))


def test_text_that_merely_mentions_tags_is_fine(tmp_path):
    data, name = read_upload(write(tmp_path, "c.txt", b"use the <b> tag for bold\nanother line\n"))
    assert name == "c.txt" and data.startswith(b"use")


def test_size_is_checked_on_disk_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    with big.open("wb") as f:  # sparse: 1 GB on paper, nothing on disk
        f.truncate(2**30)
    opened = []
    monkeypatch.setattr("pathlib.Path.open", lambda self, *a, **k: opened.append(self))
    with pytest.raises(CorpusError, match="1,024.0 MB; the limit is 20 MB"):
        read_upload(big)
    assert opened == []  # rejected by stat, never opened


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(CorpusError, match="is empty"):
        read_upload(write(tmp_path, "e.csv", b""))
    with pytest.raises(CorpusError, match="missing on the server"):
        read_upload(tmp_path / "gone.csv")


def test_limits_are_configurable_and_parse_uses_them(tmp_path):
    p = write(tmp_path, "c.txt", b"a" * 200 + b"\n")
    with pytest.raises(CorpusError, match="limit is 0 MB"):
        read_upload(p, limits=UploadLimits(max_bytes=100))


@pytest.mark.parametrize("data, message", [
    (b"PK\x03\x04rest-of-zip", "ZIP archive"),
    (b"\x89PNG\r\n\x1a\nrest", "PNG image"),
    (b"\xff\xfeh\x00i\x00", "UTF-16"),
    (b"a\x00b\n", "NUL bytes"),
    (b"caf\xe9\n", "not valid UTF-8"),
    (b'{"output": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "nested deeper"),
])
def test_binary_and_hostile_content_is_refused_by_bytes(tmp_path, data, message):
    with pytest.raises(CorpusError, match=message):
        load_upload(write(tmp_path, "c.jsonl", data))


def test_the_display_name_is_what_the_user_gave(tmp_path):
    p = write(tmp_path, "stored-name.txt", b"one\ntwo\n")
    assert load_upload(p, name="../../My corpus.txt").source == "My corpus.txt"
