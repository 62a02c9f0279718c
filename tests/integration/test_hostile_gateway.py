"""Hostile requests that Gradio 6.31 itself mishandles, refused by the gateway (`studio/guard.py`) over HTTP.

Each case gets a 4xx with a clear JSON message, nothing from a refused request stays in Gradio's
upload folder, and a normal Arena request is served right after (and, at the end of the module,
within its usual time). Without the gateway Gradio stores 950 MB from one request, answers 500, or
leaves orphaned temporary files. Loopback only; each test takes seconds.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from gradio_client import Client

from studio.guard import DEFAULT_LIMITS
from tests.app_harness import RunningApp, running_app

MB = 1024 * 1024
PROMPT = "city[Oslo], condition[snow], high[2], low[-4]"


def normal_request(url: str) -> float:
    """A normal visitor: load an example corpus, then a short TASC-spec Arena answer; returns the Arena's seconds."""
    client = Client(url, verbose=False)
    summary, *_ = client.predict("weather_reports.jsonl", api_name="/use_example")
    assert "weather_reports.jsonl" in summary
    start = time.perf_counter()
    left, _, right, _, verdict, *_ = client.predict(PROMPT, "tasc-spec", None, 8, 2, api_name="/arena")
    assert left and right and verdict
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """The app on the tiny model, with the time a normal Arena request takes before any hostile one."""
    with running_app(tiny_model_dir, tmp_path_factory.mktemp("gateway")) as ra:
        normal_request(ra.url)  # first call: warms the session store and the Arena
        yield ra, normal_request(ra.url)


@pytest.fixture
def app(served) -> RunningApp:
    """The running app."""
    return served[0]


def stored(app: RunningApp) -> dict[str, int]:
    """Every file in Gradio's upload folder, with its size."""
    return {str(p): p.stat().st_size for p in app.gradio_tmp.rglob("*") if p.is_file()}


@pytest.fixture
def nothing_stays(app):
    """After the test: no file appeared in Gradio's upload folder, and a normal request is served."""
    before = stored(app)
    yield
    assert stored(app).keys() <= before.keys(), "a refused request left files on disk"
    normal_request(app.url)


def part(name: str, data: bytes | int, field: str = "files", filename: str | None = None) -> list[bytes | int]:
    """One multipart part (boundary B): its headers, then its data (an int: that many bytes, generated lazily)."""
    disposition = f'form-data; name="{field}"' + (f'; filename="{filename or name}"' if filename != "" else "")
    return [f"--B\r\nContent-Disposition: {disposition}\r\nContent-Type: text/plain\r\n\r\n".encode(), data, b"\r\n"]


def body(*parts: list[bytes | int], end: bool = True):
    """A multipart body from parts, generated lazily in 1 MB chunks (never held in memory)."""
    for piece in [p for ps in parts for p in ps] + ([b"--B--\r\n"] if end else []):
        if isinstance(piece, int):
            for left in range(piece, 0, -MB):
                yield b"x" * min(MB, left)
        else:
            yield piece


def upload(app: RunningApp, *parts: list[bytes | int], declare: bool = True, end: bool = True,
           boundary: str = "B") -> httpx.Response:
    """POST parts to Gradio's upload route; `declare`: send a Content-Length (else the body is chunked)."""
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if declare:
        headers["Content-Length"] = str(sum(len(c) for c in body(*parts, end=end)))
    return httpx.post(app.url + "gradio_api/upload", content=body(*parts, end=end), headers=headers, timeout=60)


def refused(r: httpx.Response, status: int, message: str) -> None:
    """The gateway's answer: this status and a JSON error naming the problem."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert message in r.json()["error"], r.text[:300]


# ---- 5. disk: one request's total size and number of files ---------------------------------------
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_50_parts_of_19_mb_in_one_request_are_refused(app, nothing_stays, declare):
    parts = [part(f"f{i}.txt", 19 * MB) for i in range(50 if declare else 2)]  # chunked: 38 MB already overflows
    start = time.perf_counter()
    r = upload(app, *parts, declare=declare)
    refused(r, 413, "maximum allowed size of 20 MB per request")
    assert time.perf_counter() - start < 20


def test_upload_filled_to_the_cap_is_stored_and_beyond_it_refused(app, nothing_stays):
    limits = DEFAULT_LIMITS
    each = (20 * MB) // limits.max_upload_files - 1024  # 4 files of ~5 MB: 20 MB, within the cap with their framing
    names = [f"full{i}.txt" for i in range(limits.max_upload_files)]
    r = upload(app, *[part(n, each) for n in names])
    assert r.status_code == 200, r.text[:300]
    paths = r.json()
    assert sorted(Path(p).name for p in paths) == names
    assert all(Path(p).stat().st_size == each for p in paths)
    for p in {Path(p).parent for p in paths}:  # the test's own accepted files go; refusals must add none
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    # one more file, or one more MB: refused, nothing stored
    refused(upload(app, *[part(f"more{i}.txt", 1024) for i in range(limits.max_upload_files + 1)]), 400,
            f"at most {limits.max_upload_files} per upload request")
    refused(upload(app, *[part(n, each + MB // 4) for n in names], declare=False), 413, "maximum allowed size")
    refused(upload(app, part("one.txt", 20 * MB + 64 * 1024)), 413, "maximum allowed size")


# ---- 9. a part without a file name (and parts Gradio would orphan on disk) ------------------------
def test_part_without_filename_is_refused(app, nothing_stays):
    r = upload(app, part("good.txt", b"a,b\n1,2\n"), part("x", b"no file name here", filename=""))
    refused(r, 400, "no filename")


def test_part_under_another_field_is_refused(app, nothing_stays):
    refused(upload(app, part("other.txt", b"hello", field="other")), 400, "named 'files'")


def test_body_cut_short_before_its_closing_boundary_is_refused(app, nothing_stays):
    refused(upload(app, part("cut.txt", 2 * MB), end=False), 400, "ends before its closing boundary")


def test_client_that_hangs_up_mid_upload_leaves_nothing(app, nothing_stays):
    url = urlsplit(app.url)
    head = b"".join(body(part("half.txt", b""), end=False))[:-2]  # headers of one file part, no data yet
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n"
                  b"Content-Type: multipart/form-data; boundary=B\r\n\r\n" + head + b"x" * (2 * MB))
        time.sleep(0.5)
    time.sleep(1.0)  # the server notices the hang-up


# ---- 10. over-long multipart boundaries -------------------------------------------------------------
@pytest.mark.parametrize("length", [71, 5000, 60000])
def test_long_multipart_boundary_is_refused(app, nothing_stays, length):
    b = "x" * length
    content = (f'--{b}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n'
               f"hello\r\n--{b}--\r\n").encode()
    r = httpx.post(app.url + "gradio_api/upload", content=content,
                   headers={"Content-Type": f"multipart/form-data; boundary={b}"}, timeout=30)
    refused(r, 400, f"boundary is {length:,} characters long; RFC 2046 allows 1 to 70")


# ---- 11. events that do not exist ----------------------------------------------------------------
@pytest.mark.parametrize("fn_index", [99, -1, "99", True])
def test_queue_join_with_an_unknown_fn_index_is_refused(app, nothing_stays, fn_index):
    r = httpx.post(app.url + "gradio_api/queue/join",
                   json={"data": [], "fn_index": fn_index, "session_hash": "hostile0gateway", "trigger_id": None})
    refused(r, 422, "fn_index")


def test_run_with_an_unknown_fn_index_or_api_name_is_refused(app, nothing_stays):
    refused(httpx.post(app.url + "gradio_api/run/predict", json={"data": [], "fn_index": 99}), 422, "no event has fn_index 99")
    refused(httpx.post(app.url + "gradio_api/run/nope", json={"data": []}), 404, "no API endpoint named 'nope'")
    refused(httpx.post(app.url + "gradio_api/call/nope", json={"data": []}), 404, "no API endpoint named 'nope'")


# ---- afterwards -----------------------------------------------------------------------------------
def test_normal_arena_request_within_its_usual_time_after_all_of_them(served):
    app, usual = served
    took = normal_request(app.url)
    assert took < 3 * usual + 10, f"the Arena took {took:.1f} s after the hostile requests, {usual:.1f} s before"
