"""Read and validate task corpora: JSON Lines, CSV, TSV or plain text, from a path or uploaded bytes.

Every problem with a file the user gave us (empty, binary, wrong encoding, missing columns, over a
limit, malformed or hostile JSON) raises `CorpusError` with a message naming the problem, never a
traceback. Cell values are kept exactly as written: a CSV cell starting with `=` stays data, and
formula escaping (`escape_csv_cell`) happens only when the app exports CSV. Text is checked after
parsing too: JSON's `"\\ud800"` escape decodes to a lone surrogate, which no encoder (UTF-8, a
tokenizer, the server's JSON) accepts, so such a cell is refused here, where the message can name its
line (`check_text` does the same for any text the app receives).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tasc.core.errors import CorpusError, TascError

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
OUTPUT_COLUMNS = ("output", "ref", "target", "text", "completion", "response", "answer")
INPUT_COLUMNS = ("input", "mr", "source", "prompt", "question")
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".tab": "tsv", ".txt": "txt", ".text": "txt"}

# Byte signatures of files people upload by mistake; checked before decoding.
BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
MAGIC = ((b"PK\x03\x04", "a ZIP archive (.xlsx and .docx are ZIPs too: export as CSV)"),
         (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"),
         (b"%PDF-", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"\x7fELF", "an ELF executable"),
         (b"\xff\xd8\xff", "a JPEG image"), (b"BZh", "a bzip2 archive"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"))
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates: valid in a Python str, not encodable as UTF-8
# A JSON string (unrolled so it cannot backtrack badly) or one bracket; used to measure nesting.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


@dataclass(frozen=True)
class CorpusLimits:
    """Limits on what a corpus file may hold; over one, loading fails with a `CorpusError`."""

    max_bytes: int = 50 * 1024 * 1024  # whole file; checked before it is read
    max_rows: int = 200_000  # records (lines of JSONL/TXT, data rows of CSV/TSV)
    max_line_chars: int = 20_000  # one line or CSV record; far above any real output, bounds parsing work
    max_json_depth: int = 20  # nesting of one JSON record; deep nesting makes Python's json recurse


DEFAULT_LIMITS = CorpusLimits()


@dataclass(frozen=True)
class CorpusStats:
    """Model-free size statistics of a corpus (token counts are computed where a tokenizer is)."""

    rows: int
    distinct_inputs: int | None  # None for output-only corpora
    chars: int  # total characters of all outputs
    mean_output_chars: float
    max_output_chars: int


def compute_stats(outputs: list[str], inputs: list[str] | None) -> CorpusStats:
    """Statistics of these outputs (and inputs)."""
    lengths = [len(o) for o in outputs]
    return CorpusStats(len(outputs), None if inputs is None else len(set(inputs)), sum(lengths),
                       sum(lengths) / len(lengths) if lengths else 0.0, max(lengths, default=0))


@dataclass
class Corpus:
    """Task outputs, optionally with the input each one answers, and where they came from."""

    outputs: list[str]
    inputs: list[str] | None  # None for output-only corpora
    source: str  # file name without directories, or "assets/<name>"
    stats: CorpusStats

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.outputs)

    def pairs(self) -> list[tuple[str, str]]:
        """(input, output) rows; `CorpusError` for an output-only corpus."""
        if self.inputs is None:
            raise CorpusError(f"{self.source} has outputs only; this needs a corpus with inputs")
        return list(zip(self.inputs, self.outputs, strict=False))

    def plus(self, other: "Corpus") -> "Corpus":
        """This corpus's rows, then `other`'s (inputs kept only when both have them); named after both."""
        inputs = self.inputs + other.inputs if self.inputs is not None and other.inputs is not None else None
        outputs = self.outputs + other.outputs
        return Corpus(outputs, inputs, f"{self.source} + {other.source}", compute_stats(outputs, inputs))

    def subset(self, indices: Iterable[int]) -> "Corpus":
        """A corpus of the rows at these indices, in the order given."""
        idx = list(indices)
        outputs = [self.outputs[i] for i in idx]
        inputs = None if self.inputs is None else [self.inputs[i] for i in idx]
        return Corpus(outputs, inputs, self.source, compute_stats(outputs, inputs))


def escape_csv_cell(s: str) -> str:
    """Prefix `'` to a cell a spreadsheet would run as a formula (starts with = + - @ tab or CR)."""
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def safe_name(name: str) -> str:
    """The base name of a user-given file name: no directories, no control characters or lone surrogates
    (an undecodable byte of a file name becomes one), 200 chars at most."""
    base = re.split(r"[\\/]", str(name))[-1]
    return re.sub("[\x00-\x1f\x7f\ud800-\udfff]", "", base).strip()[:200] or "corpus"


def lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in `text` (the only characters UTF-8 cannot encode), or None."""
    m = _SURROGATE.search(text)
    return None if m is None else m.start()


def shown(text: str) -> str:
    """`text` safe to put in a message: lone surrogates replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def check_text(value: object, what: str) -> str:
    """`value` if it is text every encoder takes; else `TascError` naming `what` (the text is never echoed).

    Refused: anything but a `str`, and a str holding a lone surrogate (U+D800..U+DFFF, e.g. from a JSON
    `"\\ud800"` escape): Python keeps it, but UTF-8, a tokenizer and the server's JSON all fail on it.
    """
    if not isinstance(value, str):
        raise TascError(f"{what} must be text, got {type(value).__name__}")
    at = lone_surrogate(value)
    if at is not None:
        raise TascError(f"{what} contains a lone surrogate (U+{ord(value[at]):04X}) at character {at + 1:,}: "
                        "it is not valid Unicode text (a broken emoji or a JSON \\ud800-style escape?)")
    return value


def _decode(data: bytes, source: str, limits: CorpusLimits) -> str:
    """Check that bytes are UTF-8 text within the size limit and return the text (BOM stripped)."""
    if len(data) > limits.max_bytes:
        raise CorpusError(f"{source} is larger than {limits.max_bytes:,} bytes (max_bytes)")
    if not data:
        raise CorpusError(f"{source} is empty")
    for bom, encoding in BOMS:
        if data.startswith(bom):
            raise CorpusError(f"{source} is {encoding} text: {encoding} is not supported, save it as UTF-8")
    for magic, what in MAGIC:
        if data.startswith(magic):
            raise CorpusError(f"{source} looks like {what}, not a text corpus")
    if b"\x00" in data:
        raise CorpusError(f"{source} contains NUL bytes: it is binary (or UTF-16 without a BOM), not UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(f"{source} is not valid UTF-8: bad byte at offset {exc.start} (line {line}); "
                          "save it as UTF-8") from None
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM is harmless
    if not text.strip():
        raise CorpusError(f"{source} contains only whitespace")
    head = text[:65536]
    if len(_CONTROL.findall(head)) > len(head) / 100:  # valid UTF-8 yet full of control bytes
        raise CorpusError(f"{source} does not look like a text file (many control characters)")
    return text


def _split_lines(text: str, source: str, limits: CorpusLimits) -> list[str]:
    """Lines split on \\n only (U+2028 may sit inside JSON strings), each within max_line_chars."""
    lines = text.split("\n")
    if max(map(len, lines)) > limits.max_line_chars:
        n = next(i for i, line in enumerate(lines) if len(line) > limits.max_line_chars)
        raise CorpusError(f"{source}: line {n + 1} has {len(lines[n]):,} characters, more than the "
                          f"limit of {limits.max_line_chars:,} (max_line_chars)")
    return [line.removesuffix("\r") for line in lines]


def _detect_format(text: str, source: str) -> str:
    """Format from the file extension, else sniffed from the first non-blank line."""
    fmt = FORMATS.get(os.path.splitext(source)[1].lower())
    if fmt:
        return fmt
    first = next(line for line in text.split("\n") if line.strip()).strip()
    if first[:1] in "{[":
        return "jsonl"
    known = set(OUTPUT_COLUMNS + INPUT_COLUMNS)
    for fmt, sep in (("tsv", "\t"), ("csv", ",")):
        cells = {cell.strip().strip('"').lower() for cell in first.split(sep)}
        if sep in first and cells & known:  # a header row naming a known column
            return fmt
    return "txt"


def _json_depth(line: str) -> int:
    """Deepest bracket nesting of one JSON text, ignoring brackets inside strings (no recursion)."""
    depth = deepest = 0
    for m in _JSON_TOKEN.finditer(line):
        tok = m.group()
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif tok in "]}":
            depth -= 1
    return deepest


def _cell(value: object, key: str, where: str) -> str:
    """A JSON value as text: strings as is, objects/lists as compact JSON, null as empty; lone surrogates refused."""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    elif value is None:
        return ""
    if not isinstance(value, str):
        raise CorpusError(f"{where}: {key!r} is {type(value).__name__} {value!r:.40}, expected a string")
    at = lone_surrogate(value)
    if at is not None:
        raise CorpusError(f"{where}: {key!r} holds a lone surrogate (U+{ord(value[at]):04X}, from a JSON "
                          f"\\u{ord(value[at]):04x} escape) at character {at + 1:,}: it is not valid Unicode text; "
                          "fix or remove that escape")
    return value


def _find_column(names: list[str], wanted: str | None, candidates: tuple[str, ...], role: str,
                 source: str, exclude: str | None = None) -> str | None:
    """The column to use for a role: the one asked for (exact, then any case), else the first candidate."""
    lower = {n.lower(): n for n in reversed(names)}
    if wanted is not None:
        if not isinstance(wanted, str):  # an API client may send anything
            raise CorpusError(f"the {role} column must be a column name (text), got {type(wanted).__name__} "
                              f"{wanted!r:.40}")
        found = wanted if wanted in names else lower.get(wanted.lower())
        if found is None:
            raise CorpusError(f"{source} has no {role} column {wanted!r}; its columns are: {shown(', '.join(names))}")
        return found
    return next((lower[c] for c in candidates if c in lower and lower[c] != exclude), None)


def _pick_columns(names: list[str], output_column: str | None, input_column: str | None,
                  source: str) -> tuple[str, str | None]:
    """(output column, input column or None) among these names."""
    out = _find_column(names, output_column, OUTPUT_COLUMNS, "output", source)
    if out is None and len(names) == 1:
        out = names[0]  # a one-column file: that column is the output
    if out is None:
        raise CorpusError(f"{source}: no output column found (looked for {', '.join(OUTPUT_COLUMNS)}); "
                          f"its columns are: {shown(', '.join(names)) or '(none)'}; choose one as the output column")
    inp = _find_column(names, input_column, INPUT_COLUMNS, "input", source, exclude=out)
    if inp == out:
        raise CorpusError(f"{source}: input and output column are both {out!r}")
    return out, inp


def _check_rows(n: int, source: str, limits: CorpusLimits) -> None:
    """Raise once a corpus has more rows than allowed."""
    if n > limits.max_rows:
        raise CorpusError(f"{source} has more than {limits.max_rows:,} rows (max_rows)")


def _parse_jsonl(text: str, source: str, output_column: str | None, input_column: str | None,
                 limits: CorpusLimits) -> tuple[list[str], list[str] | None]:
    """Rows of a JSON Lines file of objects."""
    lines = _split_lines(text, source, limits)
    if next(line for line in lines if line.strip()).lstrip().startswith("["):
        raise CorpusError(f"{source} looks like one JSON array; save one JSON object per line (JSON Lines)")
    outputs: list[str] = []
    inputs: list[str] = []
    out_key = in_key = None
    records = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        records += 1
        _check_rows(records, source, limits)
        where = f"{source} line {n}"
        if line.count("{") + line.count("[") > limits.max_json_depth and _json_depth(line) > limits.max_json_depth:
            raise CorpusError(f"{where}: JSON nested deeper than {limits.max_json_depth} levels (max_json_depth)")
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise CorpusError(f"{where} is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise CorpusError(f"{where}: expected a JSON object like {{\"input\": ..., \"output\": ...}}, "
                              f"got {type(obj).__name__}")
        if out_key is None:  # columns are chosen from the first record and required in all
            out_key, in_key = _pick_columns(list(obj), output_column, input_column, source)
        for key in (out_key, in_key):
            if key is not None and key not in obj:
                raise CorpusError(f"{where} has no {key!r} key; its keys are: {shown(', '.join(obj)) or '(none)'}")
        output = _cell(obj[out_key], out_key, where)
        if output.strip():
            outputs.append(output)
            if in_key is not None:
                inputs.append(_cell(obj[in_key], in_key, where))
    return outputs, inputs if in_key is not None else None


def _parse_table(text: str, source: str, delimiter: str, output_column: str | None, input_column: str | None,
                 limits: CorpusLimits) -> tuple[list[str], list[str] | None]:
    """Rows of a CSV/TSV file with a header row."""
    _split_lines(text, source, limits)  # only to bound the length of every physical line
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next((row for row in reader if any(c.strip() for c in row)), [])
        names = [c.strip() for c in header]
        out_col, in_col = _pick_columns(names, output_column, input_column, source)
        out_i, in_i = names.index(out_col), None if in_col is None else names.index(in_col)
        outputs: list[str] = []
        inputs: list[str] = []
        records = 0
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            records += 1
            _check_rows(records, source, limits)
            where = f"{source} line {reader.line_num}"
            if sum(map(len, row)) > limits.max_line_chars:
                raise CorpusError(f"{where}: record longer than {limits.max_line_chars:,} characters (max_line_chars)")
            if len(row) <= max(out_i, in_i or 0):
                raise CorpusError(f"{where} has {len(row)} cells but the header has {len(names)}")
            if row[out_i].strip():
                outputs.append(row[out_i])
                if in_i is not None:
                    inputs.append(row[in_i])
    except csv.Error as exc:
        raise CorpusError(f"{source} line {reader.line_num} is not valid CSV: {exc}") from None
    return outputs, inputs if in_i is not None else None


def _parse_txt(text: str, source: str, limits: CorpusLimits) -> tuple[list[str], None]:
    """One output per line; blank lines skipped."""
    outputs = [line for line in _split_lines(text, source, limits) if line.strip()]
    _check_rows(len(outputs), source, limits)
    return outputs, None


def _parse(data: bytes, source: str, output_column: str | None, input_column: str | None,
           limits: CorpusLimits) -> Corpus:
    """Decode, detect the format, parse and check a corpus whose display name is `source`."""
    text = _decode(data, source, limits)
    fmt = _detect_format(text, source)
    try:
        if fmt == "jsonl":
            outputs, inputs = _parse_jsonl(text, source, output_column, input_column, limits)
        elif fmt in ("csv", "tsv"):
            delimiter = "\t" if fmt == "tsv" else ","
            outputs, inputs = _parse_table(text, source, delimiter, output_column, input_column, limits)
        else:
            if output_column or input_column:
                raise CorpusError(f"{source} is plain text (one output per line): it has no columns to choose")
            outputs, inputs = _parse_txt(text, source, limits)
    except (ValueError, TypeError, RecursionError) as exc:  # last resort: still a message, not a traceback
        raise CorpusError(f"{source} could not be read: {exc}") from None
    if not outputs:
        raise CorpusError(f"{source} has no rows with a non-empty output")
    return Corpus(outputs, inputs, source, compute_stats(outputs, inputs))


def parse_corpus_bytes(data: bytes, name: str, output_column: str | None = None, input_column: str | None = None,
                       limits: CorpusLimits = DEFAULT_LIMITS) -> Corpus:
    """Parse a corpus already in memory (an upload); `name` gives its format by extension.

    JSONL values must be strings; an object or list value is kept as compact JSON
    (`json.dumps(..., ensure_ascii=False)`), null counts as empty, numbers are an error.
    Rows with an empty output are skipped. CSV cells are kept as written (no formula escaping).
    """
    return _parse(data, safe_name(name), output_column, input_column, limits)


def load_corpus(path: str | Path, output_column: str | None = None, input_column: str | None = None,
                limits: CorpusLimits = DEFAULT_LIMITS) -> Corpus:
    """Read and parse a corpus file (see `parse_corpus_bytes`); its size is checked before reading."""
    p = Path(path)
    source = safe_name(p.name)
    try:
        if p.resolve().parent == ASSETS_DIR:
            source = f"assets/{source}"
        if not p.is_file():
            raise CorpusError(f"{path}: {'not a regular file' if p.exists() else 'no such file'}")
        if p.stat().st_size > limits.max_bytes:
            raise CorpusError(f"{source} is larger than {limits.max_bytes:,} bytes (max_bytes)")
        with p.open("rb") as f:
            data = f.read(limits.max_bytes + 1)  # +1: a file growing while we read still trips the limit
    except (OSError, ValueError, RuntimeError) as exc:  # ValueError: NUL in the path; RuntimeError: symlink loop
        reason = exc.strerror if isinstance(exc, OSError) else None  # ValueError/RuntimeError have no strerror
        raise CorpusError(f"cannot read {path}: {reason or exc}") from None
    return _parse(data, source, output_column, input_column, limits)


def candidate_columns(data: bytes, name: str) -> list[str]:
    """Column names of a CSV/TSV header or the keys of the first JSONL objects; [] for plain text."""
    source = safe_name(name)
    text = _decode(data, source, DEFAULT_LIMITS)
    fmt = _detect_format(text, source)
    if fmt in ("csv", "tsv"):
        try:
            reader = csv.reader(io.StringIO(text[:1_000_000], newline=""), delimiter="\t" if fmt == "tsv" else ",")
            header = next((row for row in reader if any(c.strip() for c in row)), [])
        except csv.Error as exc:
            raise CorpusError(f"{source} header is not valid CSV: {exc}") from None
        return [c.strip() for c in header]
    if fmt == "txt":
        return []
    names: dict[str, None] = {}  # ordered set over the first 100 records
    for line in itertools.islice((line for line in text.split("\n") if line.strip()), 100):
        if len(line) > DEFAULT_LIMITS.max_line_chars or _json_depth(line) > DEFAULT_LIMITS.max_json_depth:
            raise CorpusError(f"{source}: a record is too long or too deeply nested")
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise CorpusError(f"{source} contains a line that is not valid JSON") from None
        names.update(dict.fromkeys(obj if isinstance(obj, dict) else []))
    if any(lone_surrogate(n) is not None for n in names):  # the column pickers would carry it to the browser
        raise CorpusError(f"{source}: a key holds a lone surrogate (a JSON \\ud800-style escape): it is not valid "
                          "Unicode text; fix or remove that escape")
    return list(names)


def load_example(name: str) -> Corpus:
    """One of the app's own example corpora in `assets/` by file name."""
    available = sorted(p.name for p in ASSETS_DIR.glob("*.jsonl"))
    if name not in available:
        raise CorpusError(f"no example corpus {name!r}; available: {', '.join(available)}")
    return load_corpus(ASSETS_DIR / name)


def split_by_input(corpus: Corpus, heldout_fraction: float = 0.1, seed: int = 0,
                   max_heldout_inputs: int | None = None) -> tuple[Corpus, Corpus]:
    """(train, held-out) such that no distinct input is in both; deterministic for a seed.

    Rows keep their order within each part. An output-only corpus is grouped by output text,
    so duplicate outputs also stay on one side.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    keys = corpus.inputs if corpus.inputs is not None else corpus.outputs
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    order = list(groups)  # first-seen order, so the shuffle depends on the seed only
    if len(order) < 2:
        raise CorpusError(f"{corpus.source} has fewer than 2 distinct inputs: it cannot be split")
    random.Random(seed).shuffle(order)
    n_held = min(max(1, round(heldout_fraction * len(order))), len(order) - 1) if heldout_fraction > 0 else 0
    if max_heldout_inputs is not None:
        n_held = min(n_held, max_heldout_inputs)
    held = sorted(i for key in order[:n_held] for i in groups[key])
    train = sorted(i for key in order[n_held:] for i in groups[key])
    return corpus.subset(train), corpus.subset(held)


SPLIT_BY = ("input", "entity")  # what the held-out part must not share with training
_ATTRIBUTE = r"[A-Za-z][\w ]*?\s*\[[^\[\]]*\]"
_ATTRIBUTE_LIST = re.compile(rf"\s*{_ATTRIBUTE}(?:\s*,\s*{_ATTRIBUTE})*\s*,?\s*")
_ATTRIBUTE_PAIR = re.compile(r"([A-Za-z][\w ]*?)\s*\[([^\[\]]*)\]")


def parse_attributes(text: str) -> list[tuple[str, str]] | None:
    """The (attribute, value) pairs of an E2E-style input `name[X], area[Y]`, or None when it is not one."""
    if not _ATTRIBUTE_LIST.fullmatch(text):
        return None
    return [(a.strip(), v.strip()) for a, v in _ATTRIBUTE_PAIR.findall(text)]


def slot_values(output: str) -> list[str] | None:
    """The slot values of a JSON output `{"slots": {...}}` (casefolded; ` | ` splits a repeated slot), or None."""
    try:
        obj = json.loads(output)
    except (ValueError, RecursionError):
        return None
    slots = obj.get("slots") if isinstance(obj, dict) else None
    if not isinstance(slots, dict):
        return None
    values = (str(v) if not isinstance(v, str) else v for v in slots.values())
    return [" ".join(part.split()).casefold() for v in values for part in v.split(" | ") if part.strip()]


def entity_rule(corpus: Corpus) -> str:
    """"name" for inputs that are attribute lists with a name[...] (E2E), "slots" for JSON outputs with
    "slots"; `CorpusError` when neither holds for every row."""
    if corpus.inputs is not None and all(
        (attrs := parse_attributes(i)) is not None and any(a == "name" for a, _ in attrs) for i in corpus.inputs
    ):
        return "name"
    if all(slot_values(o) is not None for o in corpus.outputs):
        return "slots"
    raise CorpusError(f"{corpus.source} cannot be split by entity: its inputs are not attribute lists with a "
                      "name[...] (like E2E's `name[X], area[Y]`) and its outputs are not JSON objects with a "
                      "\"slots\" object; split it by input instead")


def _entity_groups(corpus: Corpus, rule: str) -> tuple[list[list[int]], str]:
    """Rows that must stay on one side together, and what one group is (for the label).

    "name": the rows of one restaurant name, joined with any row naming it as `near[...]`.
    "slots": rows linked by a shared slot value or a shared input (connected components), so that
    no value of a held-out row is a slot value of any train row.
    """
    parent = list(range(len(corpus)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}  # entity key -> first row holding it
    inputs = corpus.inputs if corpus.inputs is not None else [None] * len(corpus)
    keys = [[("e", v) for v in row] for row in _entities(corpus, rule, _names(corpus))]
    for i, (row_keys, inp) in enumerate(zip(keys, inputs, strict=True)):
        for key in row_keys + ([("i", inp)] if inp is not None else []):
            j = first.setdefault(key, i)
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(corpus)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values()), "names" if rule == "name" else "slot-value groups"


def _entity_parts(corpus: Corpus, heldout_fraction: float, seed: int) -> tuple[list[int], list[int], str]:
    """(train rows, held-out rows, "k of n <groups>") of the split by entity; see `split_by_entity`."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    groups, unit = _entity_groups(corpus, entity_rule(corpus))
    if len(groups) < 2:
        raise CorpusError(f"{corpus.source} has fewer than 2 separable {unit}: it cannot be split by entity")
    keys = corpus.inputs if corpus.inputs is not None else corpus.outputs
    sizes = [len({keys[i] for i in g}) for g in groups]  # distinct inputs, as split_by_input counts
    target = heldout_fraction * sum(sizes)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    held: list[int] = []
    n_held = 0
    for g in order[:-1]:  # the last group stays in train, so train is never empty
        # Take a group when it brings the held-out size closer to the target (group sizes vary widely).
        if heldout_fraction > 0 and (not held or n_held + sizes[g] / 2 < target):
            held.append(g)
            n_held += sizes[g]
    held_rows = sorted(i for g in held for i in groups[g])
    train_rows = sorted(set(range(len(corpus))) - set(held_rows))
    return train_rows, held_rows, f"{len(held)} of {len(groups)} {unit}"


def split_by_entity(corpus: Corpus, heldout_fraction: float = 0.1, seed: int = 0) -> tuple[Corpus, Corpus]:
    """(train, held-out) sharing no entity; deterministic for a seed.

    The entity comes from the data (`entity_rule`): for E2E-style attribute-list inputs, whole restaurant
    names are held out (every row of a held-out name is held out; no held-out name is in any train input);
    for JSON outputs with "slots", rows are held out whose slot values are none of any train output's.
    Groups of rows are taken in a seeded order while they bring the held-out share of distinct inputs
    nearer `heldout_fraction`; the share reached can differ, as groups are indivisible (a JSON corpus
    whose values link most rows into one group cannot hold out more than the rest).
    Train *outputs* may still mention a held-out name in free text (none do in E2E dev at 0.1, seed 0).
    """
    train, held, _ = _entity_parts(corpus, heldout_fraction, seed)
    return corpus.subset(train), corpus.subset(held)


def _names(*corpora: Corpus) -> set[str]:
    """The restaurant names (name[...] values) of these corpora's attribute-list inputs."""
    return {v for c in corpora for i in c.inputs or [] for a, v in parse_attributes(i) or [] if a == "name"}


def _entities(corpus: Corpus, rule: str, names: set[str]) -> list[set[str]]:
    """Each row's entities as `split_by_entity` sees them: its name[...] and any near[...] that is one of
    `names` (a restaurant's name, not a landmark), or its slot values."""
    if rule == "name":
        return [{v for a, v in parse_attributes(i) or [] if a == "name" or (a == "near" and v in names)}
                for i in corpus.inputs or []]
    return [set(slot_values(o) or []) for o in corpus.outputs]


MAX_ENTITY_NAMES = 10_000  # bounds what mining checks candidates against (a hostile upload may hold many)


def entity_names(corpus: Corpus) -> list[str]:
    """The open-class names an attribute-list corpus's outputs copy from its inputs (E2E's name[...] and
    near[...] values), most frequent first; [] for other corpora (a JSON task's values are guarded apart)."""
    if corpus.inputs is None or entity_rule_or_none(corpus) != "name":
        return []
    counts: dict[str, int] = {}
    for i in corpus.inputs:
        for a, v in parse_attributes(i) or []:
            if a in ("name", "near") and v:
                counts[v] = counts.get(v, 0) + 1
    return sorted(counts, key=lambda v: -counts[v])[:MAX_ENTITY_NAMES]


def entity_rule_or_none(corpus: Corpus) -> str | None:
    """`entity_rule`, or None where the corpus has no entities to split by."""
    try:
        return entity_rule(corpus)
    except CorpusError:
        return None


def unseen_rows(heldout: Corpus, train: Corpus) -> Corpus:
    """The held-out rows none of whose entities occurs in `train` (a separate file, e.g. SNIPS valid against
    train): for E2E-style inputs, no name[...] that any train input names; for JSON outputs, no slot value of
    any train output. `CorpusError` when no row is left."""
    rule = entity_rule(heldout)
    if entity_rule(train) != rule:
        raise CorpusError(f"{train.source} and {heldout.source} do not hold the same kind of entities")
    names = _names(train, heldout)
    seen = set().union(*_entities(train, rule, names))
    keep = [i for i, row in enumerate(_entities(heldout, rule, names)) if row and not row & seen]
    if not keep:
        raise CorpusError(f"every row of {heldout.source} shares an entity with {train.source}")
    part = heldout.subset(keep)
    part.source = f"{heldout.source} (entities unseen in {train.source}: {len(keep)} of {len(heldout)} rows)"
    return part


SPLITS = ("all", "train", "heldout")


def select_split(corpus: Corpus, split: str = "all", heldout_fraction: float = 0.1, seed: int = 0,
                 by: str = "input") -> Corpus:
    """The whole corpus, or its train or held-out part split `by` input (`split_by_input`) or entity
    (`split_by_entity`); same seed, same parts. The part's `source` names the split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if by not in SPLIT_BY:
        raise ValueError(f"unknown split rule {by!r}; choose from {', '.join(SPLIT_BY)}")
    if split == "all":
        return corpus
    name = "train" if split == "train" else "held-out"
    if by == "input":
        train, heldout = split_by_input(corpus, heldout_fraction, seed)
        part = train if split == "train" else heldout
        share = 1 - heldout_fraction if split == "train" else heldout_fraction
        part.source = f"{corpus.source} ({name} by input: {share:.0%} of inputs, seed {seed})"
        return part
    train_rows, held_rows, what = _entity_parts(corpus, heldout_fraction, seed)
    part = corpus.subset(train_rows if split == "train" else held_rows)
    keys = corpus.inputs if corpus.inputs is not None else corpus.outputs
    held = len({keys[i] for i in held_rows}) / len(set(keys))  # groups are indivisible: say what was reached
    share = 1 - held if split == "train" else held
    part.source = (f"{corpus.source} ({name} by entity: {share:.1%} of inputs, {what} held out "
                   f"(asked {heldout_fraction:.0%}), seed {seed})")
    return part


def references_by_input(corpus: Corpus) -> dict[str, list[str]]:
    """Each distinct input with all its outputs, in first-seen order (for multi-reference BLEU)."""
    refs: dict[str, list[str]] = {}
    for inp, out in corpus.pairs():
        refs.setdefault(inp, []).append(out)
    return refs


def write_jsonl(corpus_or_rows: Corpus | Iterable[object], path: str | Path) -> None:
    """Write a corpus, dict rows, (input, output) pairs or output strings as UTF-8 JSON Lines."""
    if isinstance(corpus_or_rows, Corpus):
        rows: Iterable[object] = (corpus_or_rows.pairs() if corpus_or_rows.inputs is not None
                                  else corpus_or_rows.outputs)
    else:
        rows = corpus_or_rows
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as f:  # via a temp file: readers never see half a file
            for row in rows:
                if isinstance(row, str):
                    row = {"output": row}
                elif isinstance(row, (tuple, list)):
                    row = {"input": row[0], "output": row[1]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
