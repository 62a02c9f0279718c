"""A gateway in front of Gradio: bounded uploads and well-formed API calls, refused before Gradio sees them.

Gradio 6.31 (the newest release) stores every file part of an upload request as it streams in, with
no cap on the request's total size (1000 files of `max_file_size` each are accepted), and answers
some malformed requests with HTTP 500 instead of a 4xx: a multipart part without a file name, a
multipart boundary over python-multipart's 256 characters, a `queue/join` or `run` call whose
`fn_index` names no event, a `call`/`run` route whose API name does not exist. Parts sent under
another form field, and bodies cut short before their closing boundary, are written to disk and
never removed (until the hourly cache cleanup). `Gateway` is a plain ASGI middleware mounted inside
Gradio's FastAPI app (`middleware`) that checks these requests first:

- `POST …/gradio_api/upload`: at most `max_upload_bytes` in all (413, from Content-Length before a
  byte is read, else counted as the body streams), a boundary of 1 to 70 characters (RFC 2046), at
  most `max_upload_files` parts, each a file with a name under the form field `files`, a body that
  reaches its closing boundary (400). The body is held (in memory, then in an unlinked temporary
  file) until it has passed, then handed to Gradio: a refused or abandoned upload leaves nothing.
- `POST …/gradio_api/queue/join`, `run/<name>`, `api/<name>`, `call/<name>`, `call/v2/<name>`:
  a JSON body of at most `max_json_bytes` (413), an `fn_index` that is an integer naming one of the
  app's events (422), an API name the app has (404).

Every refusal is JSON `{"error": "<message>"}`.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KB = 1024
MB = 1024 * KB
API_PREFIX = "/gradio_api/"  # Gradio's API routes (gradio.route_utils.API_PREFIX)
UPLOAD_FIELD = b"files"  # the form field Gradio's upload route reads; parts under any other name stay on disk

Dependencies = Callable[[], Mapping[int, Any]]  # the app's events by fn_index (`lambda: demo.fns`), read per request


@dataclass(frozen=True)
class GatewayLimits:
    """What one request may be, checked before Gradio sees it."""

    # A whole upload request: the app's only upload box sends one corpus file of at most 20 MB (the
    # server's max_file_size), plus a little multipart framing. Gradio itself allows 1000 x 20 MB.
    max_upload_bytes: int = 20 * MB + 64 * KB
    # Files in one upload request: the app sends one; a few leave room for clients that batch small
    # files (the byte cap above bounds them together). Gradio itself allows 1000.
    max_upload_files: int = 4
    max_boundary_chars: int = 70  # RFC 2046 5.1.1: a multipart boundary is 1 to 70 characters
    max_part_header_bytes: int = 8 * KB  # the headers of one multipart part (Gradio's own per-part limit)
    # A queue/join, call or run body: the app's largest (a 4,000-character prompt) is tens of KB.
    max_json_bytes: int = 1 * MB
    spool_memory_bytes: int = 1 * MB  # an upload is held in memory up to this, then in an unlinked temporary file
    chunk_bytes: int = 64 * KB  # the size of the pieces a checked body is handed on to Gradio in


DEFAULT_LIMITS = GatewayLimits()


class Refused(Exception):
    """A request the gateway turns away: its HTTP status and the message the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Disconnected(Exception):
    """The client went away before its request body was complete."""


def _mb(n: int) -> str:
    """A byte count in MB for messages."""
    return f"{n / MB:,.1f} MB" if n < 100 * MB else f"{n / MB:,.0f} MB"


def _cap(n: int) -> str:
    """A limit in whole MB (or KB below 1 MB) for messages."""
    return f"{n // MB} MB" if n >= MB else f"{n // KB} KB"


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (names are lower-case in ASGI), or None."""
    return next((v for k, v in scope.get("headers", ()) if k == name), None)


def _route(scope: Scope) -> tuple[str, str] | None:
    """What the gateway checks on this request: ("upload" | "join" | "run" | "call", API name), or None."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    _, prefix, rest = str(scope.get("path", "")).partition(API_PREFIX)
    parts = [p for p in rest.split("/") if p] if prefix else []
    if parts == ["upload"]:
        return "upload", ""
    if parts == ["queue", "join"]:
        return "join", ""
    if len(parts) == 2 and parts[0] in ("run", "api"):
        return "run", parts[1]
    if len(parts) == 2 and parts[0] == "call" or len(parts) == 3 and parts[:2] == ["call", "v2"]:
        return "call", parts[-1]
    return None


def _check_declared_length(scope: Scope, cap: int, what: str) -> None:
    """`Refused` (413) when the Content-Length header already says the body is over `cap` (nothing is read)."""
    raw = _header(scope, b"content-length")
    if raw is None:
        return
    text = raw.decode("latin-1").strip()
    if not text.isdigit():
        raise Refused(400, f"invalid Content-Length header {text[:40]!r}")
    if int(text) > cap:
        raise Refused(413, f"{what} is {_mb(int(text))}, over the maximum allowed size of {_cap(cap)} per request")


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body's chunks as they arrive; `Disconnected` if the client leaves first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        if message["type"] != "http.request":
            continue
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _replay(body: IO[bytes], receive: Receive, chunk: int) -> Receive:
    """A `receive` that hands on a checked body in chunks, then passes the client's own messages (disconnect)."""
    body.seek(0)
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()
        data = body.read(chunk)
        done = len(data) < chunk
        return {"type": "http.request", "body": data, "more_body": not done}

    return replay


async def _answer(send: Send, status: int, message: str) -> None:
    """Send a JSON `{"error": message}` response and ask the client to close the connection."""
    payload = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


class PartChecker:
    """Follows the part headers of a multipart body as it streams (memory bounded); `Refused` at the first bad part."""

    def __init__(self, boundary: bytes, limits: GatewayLimits = DEFAULT_LIMITS) -> None:
        self.limits, self.files = limits, 0
        self._field, self._value, self._disposition, self._header_bytes = b"", b"", b"", 0
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished})  # python-multipart's header limits, as in Gradio

    def write(self, data: bytes) -> None:
        """Feed the next chunk of the body."""
        try:
            self.parser.write(data)
        except MultipartParseError as exc:
            raise Refused(400, f"malformed multipart body: {exc}") from None

    def finish(self) -> None:
        """`Refused` unless the body reached its closing boundary (Gradio keeps the parts of a cut-short one)."""
        if self.parser.state != MultipartState.END:
            raise Refused(400, "malformed multipart body: it ends before its closing boundary")

    def _part_begin(self) -> None:
        """A new part: count it, reset its headers."""
        self.files += 1
        if self.files > self.limits.max_upload_files:
            raise Refused(400, f"too many files: at most {self.limits.max_upload_files} per upload request")
        self._disposition, self._header_bytes = b"", 0

    def _grow(self, n: int) -> None:
        """Count header bytes of the current part against the limit."""
        self._header_bytes += n
        if self._header_bytes > self.limits.max_part_header_bytes:
            raise Refused(400, f"the headers of an upload part are over {self.limits.max_part_header_bytes // KB} KB")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        """Part of a header's name."""
        self._grow(end - start)
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        """Part of a header's value."""
        self._grow(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        """A header is complete: keep Content-Disposition."""
        if self._field.lower() == b"content-disposition":
            self._disposition = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        """The part's headers are complete: it must be a named file under the `files` field."""
        _, options = parse_options_header(self._disposition)  # as Gradio parses it
        field, filename = options.get(b"name"), options.get(b"filename")
        if field != UPLOAD_FIELD:
            shown = "no field name" if field is None else f"the field {field.decode('latin-1')[:60]!r}"
            raise Refused(400, f"an upload part has {shown}: send each file as a form-data part named 'files'")
        if not filename:
            raise Refused(400, "an upload part has no filename: send each file as a form-data part with "
                               "filename=\"...\" in its Content-Disposition")


class Gateway:
    """ASGI middleware that checks uploads and API calls before the wrapped Gradio app sees them."""

    def __init__(self, app: ASGIApp, dependencies: Dependencies, limits: GatewayLimits = DEFAULT_LIMITS) -> None:
        self.app, self.dependencies, self.limits = app, dependencies, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check a guarded request and hand it on with its buffered body; pass anything else straight through."""
        route = _route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        kind, name = route
        try:
            body = await (self._upload(scope, receive) if kind == "upload" else self._call(scope, receive, kind, name))
        except Refused as r:
            await _answer(send, r.status, r.message)
            return
        except Disconnected:
            return
        try:
            await self.app(scope, _replay(body, receive, self.limits.chunk_bytes), send)
        finally:
            body.close()

    async def _upload(self, scope: Scope, receive: Receive) -> IO[bytes]:
        """The body of an upload request once it passed every check (spooled: memory, then an unlinked temp file)."""
        lim = self.limits
        ctype, params = parse_options_header(_header(scope, b"content-type"))
        if ctype != b"multipart/form-data":
            raise Refused(400, "an upload must be a multipart/form-data request")
        boundary = params.get(b"boundary", b"")
        if not 1 <= len(boundary) <= lim.max_boundary_chars:
            raise Refused(400, f"the multipart boundary is {len(boundary):,} characters long; "
                               f"RFC 2046 allows 1 to {lim.max_boundary_chars}")
        _check_declared_length(scope, lim.max_upload_bytes, "the upload")
        checker = PartChecker(boundary, lim)
        spool = tempfile.SpooledTemporaryFile(max_size=lim.spool_memory_bytes)  # closed by the caller, or below on refusal
        try:
            size = 0
            async for chunk in _body(receive):
                size += len(chunk)
                if size > lim.max_upload_bytes:
                    raise Refused(413, f"the upload is over the maximum allowed size of {_cap(lim.max_upload_bytes)} "
                                       "per request")
                checker.write(chunk)
                spool.write(chunk)
            checker.finish()
        except BaseException:
            spool.close()
            raise
        return spool

    async def _call(self, scope: Scope, receive: Receive, kind: str, name: str) -> IO[bytes]:
        """The body of a queue/join, run or call request once its fn_index or API name names one of the app's events."""
        fns = self.dependencies()
        if kind == "call":
            self._check_api_name(fns, name)
        _check_declared_length(scope, self.limits.max_json_bytes, "the request body")
        data = bytearray()
        async for chunk in _body(receive):
            data += chunk
            if len(data) > self.limits.max_json_bytes:
                raise Refused(413, f"the request body is over the maximum allowed size of "
                                   f"{_cap(self.limits.max_json_bytes)}")
        try:
            payload = json.loads(data)
        except RecursionError:
            raise Refused(400, "the request body's JSON is nested too deeply") from None
        except ValueError:
            payload = None  # not JSON: Gradio answers it (422)
        fn_index = payload.get("fn_index") if isinstance(payload, dict) else None
        if fn_index is not None:
            self._check_fn_index(fns, fn_index)
        elif kind == "run":
            self._check_api_name(fns, name)
        return io.BytesIO(bytes(data))

    @staticmethod
    def _check_fn_index(fns: Mapping[int, Any], fn_index: object) -> None:
        """`Refused` (422) unless `fn_index` is an integer naming one of the app's events."""
        if type(fn_index) is not int:
            raise Refused(422, f"fn_index must be an integer, not {json.dumps(fn_index)[:40]}")
        if fn_index not in fns:
            span = f"{min(fns)} to {max(fns)}" if fns else "none"
            raise Refused(422, f"no event has fn_index {fn_index}: this app's events are numbered {span} (see /config)")

    @staticmethod
    def _check_api_name(fns: Mapping[int, Any], name: str) -> None:
        """`Refused` (404) unless one of the app's events has this API name."""
        if not any(getattr(fn, "api_name", None) == name for fn in fns.values()):
            raise Refused(404, f"no API endpoint named {name[:80]!r} (see /gradio_api/info)")


def middleware(dependencies: Dependencies, limits: GatewayLimits = DEFAULT_LIMITS) -> Middleware:
    """The gateway for `launch(app_kwargs={"middleware": [...]})`: Gradio passes it to its FastAPI app."""
    return Middleware(Gateway, dependencies=dependencies, limits=limits)
