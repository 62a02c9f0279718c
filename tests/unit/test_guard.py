"""The gateway (`studio/guard.py`) driven as an ASGI app in-process: what it refuses, and what it hands on intact."""

from __future__ import annotations

import asyncio
import json
import tempfile
from types import SimpleNamespace
from typing import Any

import pytest

from studio import guard
from studio.guard import DEFAULT_LIMITS, Gateway, GatewayLimits

MB = 1024 * 1024
FNS = {0: SimpleNamespace(api_name="use_example"), 1: SimpleNamespace(api_name=None), 2: SimpleNamespace(api_name="arena")}


def multipart(*files: tuple[str, bytes], boundary: str = "B", end: bool = True) -> bytes:
    """A multipart body with these (filename, data) parts under the `files` field."""
    out = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{n}"\r\n\r\n'.encode()
                   + d + b"\r\n" for n, d in files)
    return out + (f"--{boundary}--\r\n".encode() if end else b"")


def call(path: str, data: bytes, headers: dict[str, str] | None = None, *, chunk: int = 7, declare: bool = True,
         disconnect_after: int | None = None, limits: GatewayLimits = DEFAULT_LIMITS, method: str = "POST") -> dict[str, Any]:
    """Send one request through the gateway to a recording app; returns status, JSON, and what the app received."""
    heads = {"content-type": "multipart/form-data; boundary=B", **(headers or {})}
    if declare:
        heads["content-length"] = str(len(data))
    scope = {"type": "http", "method": method, "path": path, "headers": [(k.encode(), v.encode()) for k, v in heads.items()]}
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                                      for i, p in enumerate(pieces)]
    if disconnect_after is not None:
        messages = messages[:disconnect_after]
    messages.append({"type": "http.disconnect"})
    got: dict[str, Any] = {"reads": 0, "app": None, "sent": []}

    async def receive() -> dict[str, Any]:
        got["reads"] += 1
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        got["sent"].append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received = b""
        while True:
            m = await receive()
            received += m.get("body", b"")
            if not m.get("more_body"):
                break
        got["app"] = received
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    asyncio.run(Gateway(app, lambda: FNS, limits)(scope, receive, send))
    if got["sent"]:
        got["status"] = got["sent"][0]["status"]
        got["json"] = json.loads(got["sent"][1]["body"]) if got["status"] != 200 else None
    return got


def refused(got: dict[str, Any], status: int, message: str) -> None:
    """Refused with this status and message, and the app never saw the request."""
    assert got["status"] == status and message in got["json"]["error"], got
    assert got["app"] is None


# ---- uploads -----------------------------------------------------------------------------------
@pytest.mark.parametrize("declare", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 64 * 1024])
def test_a_good_upload_reaches_gradio_byte_for_byte(declare, chunk):
    data = multipart(("a.csv", b"x,y\n1,2\n" * 100), ("b.txt", bytes(range(256)) * 10))
    got = call("/gradio_api/upload", data, chunk=chunk, declare=declare)
    assert got["status"] == 200 and got["app"] == data


def test_other_routes_and_methods_pass_straight_through():
    for path, method in [("/gradio_api/upload", "GET"), ("/gradio_api/info", "POST"), ("/", "POST")]:
        got = call(path, b"anything", method=method)
        assert got["status"] == 200 and got["app"] == b"anything"


def test_declared_size_over_the_cap_is_refused_before_reading():
    scope_len = str(DEFAULT_LIMITS.max_upload_bytes + 1)
    got = call("/gradio_api/upload", multipart(("a.txt", b"x")), {"content-length": scope_len}, declare=False)
    refused(got, 413, "over the maximum allowed size of 20 MB per request")
    assert got["reads"] == 0


def test_streamed_size_over_the_cap_is_cut_off():
    limits = GatewayLimits(max_upload_bytes=1000)
    got = call("/gradio_api/upload", multipart(("a.txt", b"x" * 5000)), declare=False, chunk=100, limits=limits)
    refused(got, 413, "maximum allowed size")
    assert got["reads"] <= 11  # stopped at the first chunk past the cap


def test_the_spool_is_closed_whatever_happens(monkeypatch):
    spools: list[Any] = []

    class Spy(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            spools.append(self)

    monkeypatch.setattr(guard.tempfile, "SpooledTemporaryFile", Spy)
    small = GatewayLimits(spool_memory_bytes=100)
    call("/gradio_api/upload", multipart(("a.txt", b"x" * 1000)), limits=small)  # accepted, rolled over to a file
    call("/gradio_api/upload", multipart(("a.txt", b"x" * 1000), ("b", b"")), limits=GatewayLimits(max_upload_files=1))
    call("/gradio_api/upload", multipart(("a.txt", b"x" * 1000)), disconnect_after=3)
    assert len(spools) == 3 and all(s.closed for s in spools)


@pytest.mark.parametrize("boundary, ok", [("B", True), ("b" * 70, True), ("b" * 71, False), ("", False)])
def test_boundary_length(boundary, ok):
    data = multipart(("a.txt", b"x"), boundary=boundary or "B")
    got = call("/gradio_api/upload", data, {"content-type": f"multipart/form-data; boundary={boundary}"})
    if ok:
        assert got["status"] == 200 and got["app"] == data
    else:
        refused(got, 400, "RFC 2046 allows 1 to 70")


def test_not_multipart_is_refused():
    refused(call("/gradio_api/upload", b"{}", {"content-type": "application/json"}), 400, "multipart/form-data")


def test_file_count():
    four = [(f"{i}.txt", b"x") for i in range(4)]
    assert call("/gradio_api/upload", multipart(*four))["status"] == 200
    refused(call("/gradio_api/upload", multipart(*four, ("5.txt", b"x"))), 400, "at most 4 per upload request")


@pytest.mark.parametrize("disposition, message", [
    ('form-data; name="files"', "no filename"),
    ('form-data; name="files"; filename=""', "no filename"),
    ('form-data; name="other"; filename="a.txt"', "the field 'other'"),
    ("form-data", "no field name"),
])
def test_parts_gradio_mishandles_are_refused(disposition, message):
    data = multipart(("ok.txt", b"fine"), end=False) + f"--B\r\nContent-Disposition: {disposition}\r\n\r\nx\r\n--B--\r\n".encode()
    refused(call("/gradio_api/upload", data), 400, message)


def test_malformed_bodies_are_refused():
    refused(call("/gradio_api/upload", multipart(("a.txt", b"x" * 100), end=False)), 400, "ends before its closing boundary")
    refused(call("/gradio_api/upload", b"garbage without a boundary"), 400, "malformed multipart body")
    huge = f'--B\r\nContent-Disposition: form-data; name="files"; filename="{"x" * 9000}.txt"\r\n\r\nx\r\n--B--\r\n'
    refused(call("/gradio_api/upload", huge.encode()), 400, "header size exceeded")


def test_a_client_that_hangs_up_gets_nothing_and_gradio_sees_nothing():
    got = call("/gradio_api/upload", multipart(("a.txt", b"x" * 100)), disconnect_after=3)
    assert got["sent"] == [] and got["app"] is None


# ---- API calls ---------------------------------------------------------------------------------
def join(body: Any, path: str = "/gradio_api/queue/join", **kw: Any) -> dict[str, Any]:
    """A JSON request through the gateway."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(path, data, {"content-type": "application/json"}, **kw)


@pytest.mark.parametrize("fn_index", [0, 2, None])
def test_known_fn_index_passes_intact(fn_index):
    body = {"data": ["x"], "fn_index": fn_index, "session_hash": "s"}
    got = join(body)
    assert got["status"] == 200 and json.loads(got["app"]) == body


@pytest.mark.parametrize("fn_index, message", [(99, "no event has fn_index 99"), (-1, "no event has fn_index -1"),
                                                ("1", "must be an integer"), (True, "must be an integer"),
                                                (1.0, "must be an integer"), ([1], "must be an integer")])
def test_unknown_fn_index_is_refused(fn_index, message):
    refused(join({"data": [], "fn_index": fn_index, "session_hash": "s"}), 422, message)
    refused(join({"data": [], "fn_index": fn_index}, "/gradio_api/run/predict"), 422, message)


def test_api_names():
    assert join({"data": []}, "/gradio_api/run/arena")["status"] == 200
    assert join({"data": []}, "/gradio_api/call/use_example/")["status"] == 200
    assert join({"data": []}, "/gradio_api/call/v2/arena")["status"] == 200
    for path in ("/gradio_api/run/nope", "/gradio_api/api/nope", "/gradio_api/call/nope", "/gradio_api/call/v2/nope"):
        refused(join({"data": []}, path), 404, "no API endpoint named 'nope'")
    assert join({"data": [], "fn_index": 0}, "/gradio_api/run/predict")["status"] == 200  # fn_index wins, as in Gradio


def test_json_bodies_are_bounded():
    refused(join({"data": ["x" * MB]}), 413, "maximum allowed size of 1 MB")
    refused(join({"data": ["x" * MB]}, declare=False, chunk=64 * 1024), 413, "maximum allowed size of 1 MB")
    refused(join(b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 400, "nested too deeply")
    got = join(b"not json")  # Gradio answers it (422)
    assert got["status"] == 200 and got["app"] == b"not json"


def test_default_upload_cap_fits_the_apps_largest_file():
    from studio import app_state

    assert app_state.MAX_UPLOAD_BYTES < DEFAULT_LIMITS.max_upload_bytes < app_state.MAX_UPLOAD_BYTES + MB
