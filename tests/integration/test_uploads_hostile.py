"""Hostile uploads through the UI's handler and through the HTTP API of the running app.

Every one gets a clear message (gr.Error / AppError) or an HTTP 4xx, memory stays bounded (the big
ones are refused by size before a byte is read), nothing is written outside the app's cache and
Gradio's upload folder, and a normal request succeeds right after.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app
from studio import tab_corpus
from tests.app_harness import running_app

GOOD = b'{"input": "hi", "output": "hello"}\n{"input": "bye", "output": "goodbye"}\n'
MB = 1024 * 1024

# name, bytes, the message the user sees
HOSTILE = [
    ("empty.jsonl", b"", "is empty"),
    ("binary.csv", bytes(range(256)) * 8, "NUL bytes"),
    ("elf.csv", b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "ELF executable"),
    ("archive.csv", b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 100, "ZIP archive"),
    ("image.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 50, "PNG image"),
    ("page.txt", b"<!DOCTYPE html>\n<html><body><script>alert(1)</script></body></html>\n", "HTML, SVG or XML"),
    ("image.txt", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>\n', "HTML, SVG or XML"),
    ("latin1.txt", "café crème\n".encode("latin-1"), "not valid UTF-8"),
    ("utf16.txt", "hello\nworld\n".encode("utf-16"), "UTF-16"),
    ("nul.jsonl", b'{"output": "a\x00b"}\n', "NUL bytes"),
    ("longline.txt", b"a" * (2 * MB) + b"\n", "max_line_chars"),
    ("nested.jsonl", b'{"output": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "nested deeper"),
    ("columns.jsonl", b'{"a": "x", "b": "y"}\n{"a": "z", "b": "w"}\n', "no output column found"),
    ("array.jsonl", b'[{"output": "x"}]\n', "one JSON array"),
    ("numbers.jsonl", b'{"output": 12}\n', "expected a string"),
]


def rss_mb() -> float:
    """This process's resident memory in MB (the app runs in-process)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def snapshot(*roots: Path) -> set[str]:
    """Every file path under these folders."""
    return {str(p) for root in roots if root.exists() for p in root.rglob("*")}


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """The app on the tiny model; its cache and upload folder inside one temp folder."""
    with running_app(tiny_model_dir, tmp_path_factory.mktemp("hostile")) as ra:
        yield ra


HOSTILE_NAMES = {h[0] for h in HOSTILE} | {"x", "x.jsonl", "x.txt", "big.txt", "stored.jsonl"}


@pytest.fixture
def guard(served, tmp_path):
    """Check after a test: no file appeared outside the app's folders, memory stayed bounded."""
    workdir = served.cache.parent  # holds exactly the app cache and Gradio's upload folder
    # where a path-like name would land if it escaped: around the upload folder and the server's cwd
    around = [workdir.parent, Path.cwd(), Path.cwd().parent, Path(os.environ.get("TMPDIR", "/tmp"))]
    before, mem = snapshot(workdir), rss_mb()
    listed = {d: set(os.listdir(d)) for d in around}
    yield
    new = snapshot(workdir) - before
    assert all(p.startswith((str(served.cache), str(served.gradio_tmp))) for p in new), "written outside the cache"
    for d in around:
        assert not (set(os.listdir(d)) - listed[d]) & HOSTILE_NAMES, f"an upload escaped into {d}"
    assert rss_mb() - mem < 200, "memory grew by more than 200 MB"


def good_request_works(client: Client) -> None:
    """A normal request right after a hostile one."""
    summary, *_ = client.predict("weather_reports.jsonl", api_name="/use_example")
    assert "weather_reports.jsonl" in summary


# ---- through the UI's handler (the function behind the upload box and the Load button) ----------
@pytest.mark.parametrize("name, data, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_ui_handler_refuses_with_a_clear_message(served, guard, tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(gr.Error, match=message.replace("(", r"\(")):
        tab_corpus.load_upload(str(path), tab_corpus.AUTO, tab_corpus.AUTO, None, None)
    summary = tab_corpus.use_example("weather_reports.jsonl", None, None)[1]
    assert "weather_reports.jsonl" in summary


def test_ui_handler_names_a_missing_column(served, guard, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(GOOD)
    with pytest.raises(gr.Error, match="no output column 'nope'; its columns are: input, output"):
        tab_corpus.load_upload(str(path), "nope", tab_corpus.AUTO, None, None)


@pytest.mark.parametrize("name, message", [("x" * 9000 + ".jsonl", "9,006 characters long"),
                                           ("../../x", "unsupported file type"),
                                           ("x.exe", "unsupported file type '.exe'")])
def test_ui_handler_refuses_bad_names(served, guard, tmp_path, name, message):
    path = tmp_path / "stored.jsonl"
    path.write_bytes(GOOD)
    from studio.uploads import load_upload
    from tasc.core.errors import CorpusError

    with pytest.raises(CorpusError, match=message):
        load_upload(path, name=name)
    if "/" in name:  # as Gradio stores it: directories stripped
        stored = tmp_path / "x"
        stored.write_bytes(GOOD)
        with pytest.raises(gr.Error, match="unsupported file type"):
            tab_corpus.load_upload(str(stored), tab_corpus.AUTO, tab_corpus.AUTO, None, None)


@pytest.mark.parametrize("size, name", [(2**30, "one_gb.txt"), (200 * MB, "one_line_200mb.txt")])
def test_ui_handler_refuses_huge_files_before_reading_them(served, guard, tmp_path, size, name):
    path = tmp_path / name
    with path.open("wb") as f:
        if name.startswith("one_line"):  # a real 200 MB single line, written in 1 MB chunks
            for _ in range(size // MB):
                f.write(b"a" * MB)
        else:
            f.truncate(size)  # sparse 1 GB: costs no disk
    mem = rss_mb()
    with pytest.raises(gr.Error, match=r"MB; the limit is 20 MB"):
        tab_corpus.load_upload(str(path), tab_corpus.AUTO, tab_corpus.AUTO, None, None)
    assert rss_mb() - mem < 30  # refused by its size on disk: nothing was read


# ---- through the HTTP API -----------------------------------------------------------------------
@pytest.mark.parametrize("name, data, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_api_refuses_with_a_clear_message(served, guard, tmp_path, name, data, message):
    client = Client(served.url, verbose=False)
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AppError, match=message.replace("(", r"\(")):
        client.predict(handle_file(str(path)), "(auto)", "(auto)", api_name="/load_corpus")
    good_request_works(client)


def streamed_multipart(name: str, total: int, line: bool):
    """A multipart upload body of `total` bytes, generated lazily (never held in memory or on disk)."""
    yield (f'--B\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
           "Content-Type: text/plain\r\n\r\n").encode()
    chunk = (b"a" * MB) if line else (b"row of text\n" * (MB // 12) + b"\n" * (MB % 12))
    for _ in range(total // MB):
        yield chunk
    yield b"\r\n--B--\r\n"


@pytest.mark.parametrize("total, line", [(2**30, False), (200 * MB, True)], ids=["1GB-file", "200MB-line"])
def test_api_refuses_huge_uploads_by_size_with_413(served, guard, total, line):
    mem = rss_mb()
    r = httpx.post(served.url + "gradio_api/upload", content=streamed_multipart("big.txt", total, line),
                   headers={"Content-Type": "multipart/form-data; boundary=B"}, timeout=120)
    assert r.status_code == 413 and "maximum allowed size" in r.text
    assert rss_mb() - mem < 100
    assert sum(p.stat().st_size for p in served.gradio_tmp.rglob("*") if p.is_file()) < 30 * MB  # nothing kept
    good_request_works(Client(served.url, verbose=False))


def test_api_refuses_a_9000_character_file_name(served, guard):
    r = httpx.post(served.url + "gradio_api/upload", files={"files": ("x" * 9000 + ".jsonl", GOOD)})
    assert 400 <= r.status_code < 500
    good_request_works(Client(served.url, verbose=False))


def raw_call(url: str, api_name: str, data: list) -> tuple[str, str]:
    """Call an endpoint with raw JSON (no client-side checks); returns (SSE event, its data)."""
    session = uuid.uuid4().hex
    r = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data, "session_hash": session}, timeout=30)
    r.raise_for_status()
    event_id = r.json()["event_id"]
    body = httpx.get(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=60).text
    events = [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")]
    datas = [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("data: ")]
    return events[-1], datas[-1]


@pytest.mark.parametrize("name", ["../../x", "..%2F..%2Fx.jsonl", "../../x.jsonl"])
def test_api_path_like_names_stay_inside_the_cache(served, guard, name):
    r = httpx.post(served.url + "gradio_api/upload", files={"files": (name, GOOD)})
    if r.status_code >= 400:  # refused outright is fine too
        assert r.status_code < 500
        return
    (stored,) = r.json()
    assert Path(stored).resolve().is_relative_to(served.gradio_tmp.resolve())
    file_data = {"path": stored, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
    event, data = raw_call(served.url, "load_corpus", [file_data, "(auto)", "(auto)"])
    if Path(stored).suffix == ".jsonl":
        assert event == "complete" and "rows" in data  # a valid corpus under a sanitised name
    else:
        # Gradio's own file_types check, or ours, names the problem
        assert event == "error" and ("unsupported file type" in data or "Invalid file type" in data)


def test_api_cannot_read_server_files_by_path(served, guard):
    for path in ("/etc/passwd", str(Path(app.__file__).resolve())):
        file_data = {"path": path, "meta": {"_type": "gradio.FileData"}}
        event, data = raw_call(served.url, "load_corpus", [file_data, "(auto)", "(auto)"])
        assert event == "error"
        assert "root:" not in data and "import" not in data
    good_request_works(Client(served.url, verbose=False))


def test_no_monitoring_dashboard(served):
    for path in ("monitoring", "monitoring/summary"):  # the summary would list every user's events
        assert httpx.get(served.url + path).status_code == 403
