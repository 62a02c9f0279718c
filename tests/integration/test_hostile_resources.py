"""Hostile use of the server's memory, disk and text handling, through the HTTP API of the running app.

- memory: a corpus of long outputs over TASC-spec's index budget is sampled (the Corpus tab and the
  Arena say so), its index stays within the budget, and a second session with the same corpus shares it;
- disk: loading corpora again and again keeps one export per session, which goes with its session;
- text: a lone surrogate (a JSON `\\ud800` escape) in a corpus, a `/tokenise` text or an Arena prompt,
  and a non-text column name, each get a clear message, nothing is installed in a session, and a normal
  Arena request works right after.

Loopback only, on the tiny model; every call waits at most `WAIT_S`.
"""

from __future__ import annotations

import gc
import json
import random
import uuid

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app
from studio import indexes
from tests.app_harness import running_app

WAIT_S = 120  # the longest any one call may take
PROMPT = "Hi, my order A1234567 never arrived."
BAD = "Something went wrong"  # what an unexpected exception says


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """The app on the tiny model (no limit on new sessions per address: every test client is 127.0.0.1)."""
    with running_app(tiny_model_dir, tmp_path_factory.mktemp("resources"), TASC_APP_NEW_SESSIONS_PER_MINUTE="0") as ra:
        yield ra


def call(client: Client, *args, api_name: str):
    """One API call, waited for at most WAIT_S."""
    return client.submit(*args, api_name=api_name).result(timeout=WAIT_S)


def refused(client: Client, *args, api_name: str) -> str:
    """The message of a call that must fail with a clear message (never the catch-all one)."""
    with pytest.raises(AppError) as err:
        call(client, *args, api_name=api_name)
    message = str(err.value)
    assert BAD not in message, message
    return message


def raw_call(url: str, api_name: str, data: list, session: str | None = None) -> tuple[str, str]:
    """Call an endpoint with a JSON body written here, escapes and all (`\\ud800` stays an escape: httpx
    and gradio_client would fail to encode a lone surrogate before sending it), under a Gradio session
    hash (default: a new one); returns (SSE event, its data)."""
    session = session or uuid.uuid4().hex
    body = json.dumps({"data": data, "session_hash": session}).encode("ascii")
    r = httpx.post(f"{url}gradio_api/call/{api_name}", content=body, headers={"Content-Type": "application/json"},
                   timeout=30)
    r.raise_for_status()
    event_id = r.json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=WAIT_S).text
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    datas = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("data: ")]
    return events[-1], datas[-1]


def raw_refused(url: str, api_name: str, data: list, session: str | None = None) -> str:
    """The message of a raw call that must fail with a clear message (never the catch-all one)."""
    event, message = raw_call(url, api_name, data, session)
    assert event == "error" and BAD not in message, (event, message)
    return message


def arena_works(client: Client) -> None:
    """A normal visitor right after: an example corpus, then a TASC-spec answer identical to greedy's."""
    summary, *_ = call(client, "support_tickets.jsonl", api_name="/use_example")
    assert "support_tickets.jsonl" in summary
    left, _, right, _, verdict, *_ = call(client, PROMPT, "tasc-spec", None, 16, 0, api_name="/arena")
    assert left and right and "identical output" in verdict


def long_json_corpus(path, rows: int, chars: int, seed: int = 0) -> None:
    """A JSONL corpus of long JSON outputs (the shape that cost ~3 GB per session), one input each."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            recs: list[dict] = []
            while len(json.dumps(recs)) < chars:
                recs.append({"id": f"R{rng.randrange(10**7):07d}", "city": rng.choice(["paris", "oslo", "rome"]),
                             "temp": round(rng.uniform(-10, 35), 1)})
            f.write(json.dumps({"input": f"report {i}", "output": json.dumps(recs)}) + "\n")


# ---- 3. memory: TASC-spec's index has a budget ---------------------------------------------------------------
def test_a_corpus_over_the_index_budget_is_sampled_and_its_index_stays_bounded(served, tmp_path, monkeypatch):
    budget, total = 6_000, 15_000  # scaled down from 400,000 / 1,200,000 tokens
    monkeypatch.setattr(indexes, "INDEX_MAX_TOKENS", budget)
    monkeypatch.setattr(indexes.INDEXES, "max_tokens", total)
    indexes.INDEXES.clear()
    path = tmp_path / "long_outputs.jsonl"
    long_json_corpus(path, rows=40, chars=4_000)  # ~160k characters: far over 6,000 tokens
    first, second = Client(served.url, verbose=False), Client(served.url, verbose=False)

    summary, *_ = call(first, handle_file(str(path)), "(auto)", "(auto)", api_name="/load_corpus")
    assert "**a sample**" in summary and f"at most {budget:,}" in summary
    verdict = call(first, "report 3", "tasc-spec", None, 16, 0, api_name="/arena")[4]
    assert "sample of the corpus" in verdict and "identical output" in verdict
    assert len(indexes.INDEXES) == 1 and indexes.INDEXES.tokens() <= budget

    # the same corpus in another session: the same index, not a second one
    call(second, handle_file(str(path)), "(auto)", "(auto)", api_name="/load_corpus")
    call(second, "report 5", "tasc-spec", None, 16, 0, api_name="/arena")
    assert len(indexes.INDEXES) == 1 and indexes.INDEXES.tokens() <= budget

    # other corpora: the cache stays within its total, least recently used out first
    for seed in (1, 2, 3):
        other = tmp_path / f"other{seed}.jsonl"
        long_json_corpus(other, rows=40, chars=4_000, seed=seed)
        call(second, handle_file(str(other)), "(auto)", "(auto)", api_name="/load_corpus")
        call(second, "report 1", "tasc-spec", None, 8, 0, api_name="/arena")
        assert indexes.INDEXES.tokens() <= total
    arena_works(first)


# ---- 4. disk: one export per session, gone with it -----------------------------------------------------------
def session_of(export_folder_name: str):
    """The live session whose export folder this is."""
    sessions = list(app.store()._sessions.values())  # noqa: SLF001  (the test looks inside the store)
    return next(s for s in sessions if s.workdir.name == export_folder_name)


def test_exports_replace_each_other_and_go_with_their_session(served, tmp_path):
    exports = served.cache / "exports"  # the folder the server may hand files out of (app.launch_options)
    before = set(exports.iterdir()) if exports.exists() else set()
    path = tmp_path / "corpus.jsonl"
    long_json_corpus(path, rows=60, chars=2_000)
    clients = [Client(served.url, verbose=False) for _ in range(3)]
    for n, client in enumerate(clients):
        for _ in range(5 if n == 0 else 2):
            call(client, handle_file(str(path)), "(auto)", "(auto)", api_name="/load_corpus")
            call(client, "support_tickets.jsonl", api_name="/use_example")
    mine = sorted(set(exports.iterdir()) - before)
    assert len(mine) == 3, [p.name for p in mine]  # one folder per session, not one per load
    for folder in mine:
        assert [p.name for p in folder.iterdir()] == ["support_tickets.csv"]  # the latest export only
    size = sum(p.stat().st_size for folder in mine for p in folder.rglob("*") if p.is_file())
    assert size < 3 * 100_000

    session = session_of(mine[0].name)
    token = session.token
    del session
    app.store().drop(token)
    gc.collect()
    assert not mine[0].exists()  # dropping the session removed its export
    assert all(folder.exists() for folder in mine[1:])
    arena_works(clients[1])


# ---- 7. lone surrogates, refused at each door ------------------------------------------------------------------
def test_a_lone_surrogate_in_a_corpus_is_refused_before_a_session_gets_it(served, tmp_path):
    path = tmp_path / "surrogate.jsonl"
    path.write_bytes(b'{"input": "a", "output": "fine"}\n{"input": "b", "output": "bad \\ud800 text"}\n')
    client = Client(served.url, verbose=False)
    sessions = len(app.store())
    message = refused(client, handle_file(str(path)), "(auto)", "(auto)", api_name="/load_corpus")
    assert "line 2" in message and "lone surrogate" in message
    assert len(app.store()) == sessions  # nothing was installed: not even a session was made
    arena_works(client)
    # a session that has a corpus keeps it
    refused(client, handle_file(str(path)), "(auto)", "(auto)", api_name="/load_corpus")
    verdict = call(client, PROMPT, "tasc-spec", None, 16, 0, api_name="/arena")[4]
    assert "identical output" in verdict


def test_a_lone_surrogate_in_a_tokenise_text_is_refused(served):
    message = raw_refused(served.url, "tokenise", ["order \ud800 never arrived"])
    assert "The text to tokenise contains a lone surrogate" in message
    arena_works(Client(served.url, verbose=False))


def test_a_lone_surrogate_in_an_arena_prompt_is_refused(served):
    session = uuid.uuid4().hex  # one Gradio session: a corpus first, as a visitor would
    event, summary = raw_call(served.url, "use_example", ["support_tickets.jsonl"], session)
    assert event == "complete" and "support_tickets.jsonl" in summary
    message = raw_refused(served.url, "arena", ["my order \udc00 never arrived", "tasc-spec", None, 16, 0, None], session)
    assert "The prompt contains a lone surrogate" in message
    event, _ = raw_call(served.url, "arena", [PROMPT, "tasc-spec", None, 16, 0, None], session)  # the session still works
    assert event == "complete"
    arena_works(Client(served.url, verbose=False))


# ---- 8. argument types checked where the API receives them ------------------------------------------------------
@pytest.mark.parametrize("output_column, input_column", [(5, "(auto)"), ("(auto)", 5), (["output"], "(auto)")])
def test_a_non_text_column_name_is_refused(served, tmp_path, output_column, input_column):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"input": "a", "output": "x"}\n{"input": "b", "output": "y"}\n')
    client = Client(served.url, verbose=False)
    message = refused(client, handle_file(str(path)), output_column, input_column, api_name="/load_corpus")
    assert "column must be a column name (text)" in message
    arena_works(client)


def test_a_non_text_model_name_is_refused(served):
    client = Client(served.url, verbose=False)
    call(client, "support_tickets.jsonl", api_name="/use_example")
    message = refused(client, PROMPT, "tasc-ft", ["x"], 16, 0, api_name="/arena")
    assert "model must be named by its label" in message
    arena_works(client)
