"""Check an uploaded corpus file by its name, size and bytes before it is parsed.

`tasc.core.corpus` already rejects what cannot be a text corpus (binary, archives, images, wrong encoding,
NUL bytes, over-long lines, deep JSON). This module adds what only an upload has: a user-chosen file
name (over-long, path-like, wrong extension), a size checked on disk *before* reading, and markup
(HTML, SVG, XML) that is valid UTF-8 but is a web page renamed `.txt`, not a corpus. Browsers and
`file_types` check only the name, so everything here looks at the bytes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tasc.core.corpus import FORMATS, Corpus, CorpusLimits, parse_corpus_bytes, safe_name
from tasc.core.errors import CorpusError

# A document that opens with a markup tag: a web page, an SVG image, an XML file.
_MARKUP = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<(?:!doctype|html|head|body|svg|\?xml|script|iframe|!--|meta|div)\b",
                     re.IGNORECASE)
_SCRIPT = re.compile(rb"<script\b|<svg\b|javascript:", re.IGNORECASE)


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be."""

    max_bytes: int = 20 * 1024 * 1024  # same as the server's max_file_size; checked on disk before reading
    max_name_chars: int = 255  # longest file name accepted (most file systems' limit)
    extensions: tuple[str, ...] = tuple(FORMATS)  # the corpus formats tasc.core.corpus reads


DEFAULT_UPLOAD_LIMITS = UploadLimits()


def check_name(name: str, limits: UploadLimits = DEFAULT_UPLOAD_LIMITS) -> str:
    """The display name of an upload (no directories), or `CorpusError` for a name we refuse."""
    name = str(name)
    if len(name) > limits.max_name_chars:
        raise CorpusError(f"the file name is {len(name):,} characters long; rename the file "
                          f"(at most {limits.max_name_chars} characters)")
    base = safe_name(name)
    ext = os.path.splitext(base)[1].lower()
    if ext not in limits.extensions:
        raise CorpusError(f"{base}: unsupported file type {ext or '(no extension)'!r}; "
                          f"upload a .jsonl, .csv, .tsv or .txt file")
    return base


def sniff_markup(head: bytes, name: str) -> None:
    """`CorpusError` when the first bytes are an HTML page, an SVG image or an XML document."""
    if _MARKUP.match(head) or (head.lstrip()[:1] == b"<" and _SCRIPT.search(head)):
        raise CorpusError(f"{name} looks like an HTML, SVG or XML document, not a text corpus; "
                          "a corpus of markup snippets can be uploaded as JSON Lines")


def read_upload(path: str | Path, name: str | None = None, limits: UploadLimits = DEFAULT_UPLOAD_LIMITS) -> tuple[bytes, str]:
    """Read an uploaded file after checking its name, size (before reading) and first bytes.

    Args:
        path: where the server stored the upload.
        name: the name the user gave it (default: the stored file's name).
    Returns:
        (the file's bytes, its display name).
    """
    display = check_name(name if name is not None else Path(path).name, limits)
    p = Path(path)
    try:
        if not p.is_file():
            raise CorpusError(f"{display}: the upload is missing on the server; upload it again")
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise CorpusError(f"{display} is {size / 2**20:,.1f} MB; the limit is {limits.max_bytes / 2**20:,.0f} MB")
        if size == 0:
            raise CorpusError(f"{display} is empty")
        with p.open("rb") as f:
            data = f.read(limits.max_bytes + 1)  # +1: a file still growing trips the limit, never more
    except OSError as exc:
        raise CorpusError(f"cannot read the upload {display}: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:
        raise CorpusError(f"{display} is larger than {limits.max_bytes / 2**20:,.0f} MB")
    sniff_markup(data[:4096], display)
    return data, display


def load_upload(path: str | Path, name: str | None = None, output_column: str | None = None,
                input_column: str | None = None, limits: UploadLimits = DEFAULT_UPLOAD_LIMITS) -> Corpus:
    """Check and parse an uploaded corpus file; every problem is a `CorpusError` naming it."""
    data, display = read_upload(path, name, limits)
    return parse_corpus_bytes(data, display, output_column, input_column, CorpusLimits(max_bytes=limits.max_bytes))
