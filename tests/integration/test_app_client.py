"""The app end to end through gradio_client, launched in-process on the tiny model: each tab's main action."""

from __future__ import annotations

import csv
import json
import time

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app
from studio import compare_training, tab_arena, tab_corpus
from tasc.methods import DEFAULT_BENCH_METHODS
from tests.app_harness import running_app, slow_training
from tests.panes import pane_sources, pane_text

# The Arena's methods by registry name (`tasc.methods`): the API takes names, the picker shows labels.
SPEC, LOOKUP, FT, FT_SPEC = "tasc-spec", "tasc-context", "tasc-ft", "tasc-ft+spec"
DRAFT, DRAFT_TASC, HYBRID = "draft-model", "draft-model+tasc", "hybrid"


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """The app served on the tiny model for this module."""
    with running_app(tiny_model_dir, tmp_path_factory.mktemp("app")) as ra:
        yield ra


@pytest.fixture
def client(served):
    """A fresh client (its own Gradio session)."""
    return Client(served.url, verbose=False)


def value(output):
    """A component's value from a client result (a gr.update arrives as a dict)."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def arena(client, prompt, method=SPEC, max_new=32, shots=2, model=None):
    """Run the Arena to the end; return (all streamed outputs, final outputs)."""
    job = client.submit(prompt, method, model, max_new, shots, api_name="/arena")
    updates = list(job)
    return updates, job.result()


def test_corpus_example_loads_with_stats_preview_and_heldout_prompts(client):
    # the session token (gr.State) never leaves the server: the client gets the five visible outputs
    summary, preview, export, heldout, prompt = client.predict("support_tickets.jsonl", api_name="/use_example")
    assert "support_tickets.jsonl" in summary and "150 rows" in summary and "held out" in summary
    assert "base tokens per output" in summary
    assert preview["headers"] == ["input", "output"] and len(preview["data"]) == tab_corpus.PREVIEW_ROWS
    assert prompt and prompt in [c[1] for c in heldout["choices"]]
    assert value(export).endswith("support_tickets.csv")


def test_corpus_upload_picks_columns_and_exports_escaped_csv(client, tmp_path):
    path = tmp_path / "formulas.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["request", "reply"])
        for i in range(12):
            w.writerow([f"question {i}", f"=SUM(A{i})" if i % 2 else f"answer {i}"])
    with pytest.raises(AppError, match="no output column found"):  # neither column has a known name
        client.predict(handle_file(str(path)), "(auto)", "(auto)", api_name="/load_corpus")
    summary, preview, export, _, _ = client.predict(handle_file(str(path)), "reply", "request",
                                                       api_name="/load_corpus")
    assert "formulas.csv" in summary and "12 rows" in summary
    assert "=SUM(A1)" in [row[1] for row in preview["data"]]  # kept as data for training
    with open(value(export), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["input", "output"]
    assert "'=SUM(A1)" in [r[1] for r in rows] and "=SUM(A1)" not in [r[1] for r in rows]


def test_bad_upload_gets_a_clear_message_and_the_next_request_works(client, tmp_path):
    bad = tmp_path / "data.csv"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(AppError, match="ZIP archive"):
        client.predict(handle_file(str(bad)), "(auto)", "(auto)", api_name="/load_corpus")
    summary, *_ = client.predict("weather_reports.jsonl", api_name="/use_example")
    assert "weather_reports.jsonl" in summary


def test_arena_streams_both_panes_and_shows_identical_output(client):
    *_, prompt = client.predict("support_tickets.jsonl", api_name="/use_example")
    updates, final = arena(client, prompt, max_new=48)
    left, left_stats, right, right_stats, verdict, plot_tokens, plot_latency, plot_hist = final
    assert len(updates) >= 2  # streamed, not one answer at the end
    left_text, right_text = pane_text(left), pane_text(right)
    assert left_text == right_text and left_text
    assert "identical output ✓" in verdict
    labels = pane_sources(right)
    assert labels & {"corpus", "context"}, "no accepted draft token was highlighted"
    assert pane_sources(left) == {None}  # plain greedy never drafts
    assert "48 tokens" in left_stats and "tokens/s" in right_stats and "forward passes" in right_stats
    for plot in (plot_tokens, plot_latency, plot_hist):
        fig = json.loads(plot["plot"])
        assert len(fig["data"]) == 2  # one trace per pane


def test_arena_prompt_lookup_method_and_typed_prompt(client):
    client.predict("weather_reports.jsonl", api_name="/use_example")
    _, final = arena(client, "city[Oslo], condition[snow], high[2], low[-4]", method=LOOKUP, max_new=24)
    assert "identical output ✓" in final[4]
    assert "corpus" not in pane_sources(final[2])  # prompt lookup never drafts from the corpus


@pytest.mark.parametrize("prompt, method, message", [
    ("", SPEC, "Type a prompt"),
    ("x" * 5000, SPEC, "at most 4,000"),
    ("hello", "magic", "Unknown method"),
    ("hello", FT, "No fine-tuned model"),
])
def test_arena_bad_requests_get_clear_messages(client, prompt, method, message):
    client.predict("weather_reports.jsonl", api_name="/use_example")
    with pytest.raises(AppError, match=message):
        arena(client, prompt, method=method)


def test_sessions_are_isolated(served):
    a, b = Client(served.url, verbose=False), Client(served.url, verbose=False)
    a.predict("weather_reports.jsonl", api_name="/use_example")
    with pytest.raises(AppError, match="No corpus loaded"):  # b never loaded one; a's is not visible
        arena(b, "city[Oslo], condition[snow], high[2], low[-4]")
    sessions = list(app.store()._sessions.values())
    assert len({s.token for s in sessions}) == len(sessions)


def test_benchmark_runs_on_heldout_prompts(client):
    client.predict("weather_reports.jsonl", api_name="/use_example")
    status, table, plot = client.predict(2, 16, 1, api_name="/benchmark")
    assert status.startswith("Done: 2 held-out prompts")
    methods = [row[0] for row in table["data"]]
    assert methods == list(DEFAULT_BENCH_METHODS)
    assert all(row[-1] == "100%" for row in table["data"])  # every method is lossless
    assert json.loads(plot["plot"])["data"]


def test_stopping_a_stream_frees_its_generation(served):
    c = Client(served.url, verbose=False)
    c.predict("weather_reports.jsonl", api_name="/use_example")
    job = c.submit("city[Oslo], condition[snow], high[2], low[-4]", LOOKUP, None, 256, 0, api_name="/arena")
    for _ in job:
        break  # first streamed update
    job.cancel()
    for _ in range(100):
        if not tab_arena.ACTIVE_GENERATIONS:
            break
        time.sleep(0.05)
    assert tab_arena.ACTIVE_GENERATIONS == {}


def follow(job, until: str | None = None):
    """Read a streaming job's updates; stop early at the first status containing `until`."""
    last = None
    for update in job:
        last = update
        if until and until in update[0]:
            return update
    return job.result() if until is None else last


def test_finetune_lists_the_model_and_the_arena_races_it(served, tiny_model_dir):
    c = Client(served.url, verbose=False)
    c.predict("weather_reports.jsonl", api_name="/use_example")
    status, loss, models_md, ft_model, methods = c.predict(str(tiny_model_dir), "LoRA (fast)", 4, None,
                                                           api_name="/finetune")
    assert status.startswith("✓ Done: 4 steps") and "Pick **fine-tuned #1" in status
    assert loss["columns"] == ["step", "loss"] and len(loss["data"]) >= 2  # the live loss curve's points
    assert "fine-tuned #1 (LoRA, 4 steps" in models_md
    label = value(ft_model)
    assert label.startswith("fine-tuned #1")
    assert FT_SPEC in [c[1] for c in methods["choices"]]  # (label, name)
    _, final = arena(c, "city[Oslo], condition[snow], high[2], low[-4]", FT_SPEC, 24, 0, model=label)
    assert "fine-tuned" in final[4] and "tokens/s" in final[3]
    (model,) = [m for s in app.store()._sessions.values() for m in s.models.values()]
    assert (model.path / "model.safetensors").is_file() and (model.path / "tasc.json").is_file()


def test_finetune_stop_then_resume_from_the_checkpoint(served, tiny_model_dir, monkeypatch):
    slow_training(monkeypatch)  # both stops must land while a job runs, however fast the machine
    c = Client(served.url, verbose=False)
    c.predict("weather_reports.jsonl", api_name="/use_example")
    job = c.submit(str(tiny_model_dir), "Full fine-tune", 400, None, api_name="/finetune")
    assert "Step" in follow(job, until="Step")[0]
    stopped = c.predict(api_name="/finetune_stop")
    stopped = stopped[0] if isinstance(stopped, (list, tuple)) else stopped
    assert "Stopped at step" in stopped and "checkpoint is saved" in stopped
    step = int(stopped.split("Stopped at step ")[1].split(";")[0])
    job = c.submit(api_name="/finetune_resume")
    update = follow(job, until="Step")
    resumed_at = int(update[0].split("Step **")[1].split("/")[0])
    assert resumed_at > step  # continued from the checkpoint, not from step 0
    c.predict(api_name="/finetune_stop")
    with pytest.raises(AppError, match="only a stopped fine-tune"):
        Client(served.url, verbose=False).predict(api_name="/finetune_resume")


def test_vocabulary_mine_tokenise_enrich_then_finetune_the_enriched_model(served, tiny_model_dir):
    c = Client(served.url, verbose=False)
    c.predict("support_tickets.jsonl", api_name="/use_example")
    table, bars, rounds, status, text, before, after, counts = c.predict(40, 3, api_name="/mine")
    assert status.startswith("Mined **") and "fewer tokens" in status
    assert table["headers"][:2] == ["string", "kind"] and 0 < len(table["data"]) <= 40
    savings = [row[4] for row in table["data"]]
    assert all(s > 0 for s in savings)
    assert json.loads(bars["plot"])["data"][0]["type"] == "bar"
    xs = json.loads(rounds["plot"])["data"][0]["x"]
    assert xs[:4] == [0, 1, 2, 3]  # round 0 is the base tokenizer (refill rounds may follow)
    # the sample output, cut into tokens before and after: the same text, fewer tokens, some mined
    assert "".join(s["token"] for s in before) == text == "".join(s["token"] for s in after)
    assert len(after) < len(before) and "mined" in {s["class_or_confidence"] for s in after}
    assert "→" in counts
    before2, after2, counts2 = c.predict('{"intent": "refund_request", "priority": "normal"}', api_name="/tokenise")
    assert len(after2) < len(before2)

    job = c.submit(40, 3, api_name="/enrich")
    updates = list(job)
    status, rounds, ft_base = job.result()
    assert status.startswith("✓ Added **") and len(updates) >= 2
    label = value(ft_base)
    assert label.startswith("enriched #1 (+")
    assert json.loads(rounds["plot"])["data"]
    status, *_ = c.predict(label, "LoRA (fast)", 2, None, api_name="/finetune")
    assert status.startswith("✓ Done: 2 steps") and "teacher" not in status  # no fine-tuned base model yet
    # With a fine-tune of the base model in the session, the enriched model learns from its answers too.
    status, *_ = c.predict(str(tiny_model_dir), "LoRA (fast)", 2, None, api_name="/finetune")
    assert status.startswith("✓ Done: 2 steps")
    status, *_ = c.predict(label, "LoRA (fast)", 2, None, api_name="/finetune")
    assert status.startswith("✓ Done: 2 steps") and "the teacher's answers" in status
    ft, _ = [m for s in app.store()._sessions.values() for m in s.models.values() if m.kind == "finetuned"
             and "enriched" in json.loads((m.path / "tasc.json").read_text())]
    _, final = arena(c, "Hi, my Volt USB-C hub is broken, order A1234567.", FT_SPEC, 16, 0, model=ft.label)
    assert "tokens/s" in final[3]


def test_vocabulary_needs_a_corpus_and_finetune_needs_a_known_model(served):
    c = Client(served.url, verbose=False)
    with pytest.raises(AppError, match="No corpus loaded"):
        c.predict(40, 3, api_name="/mine")
    c.predict("weather_reports.jsonl", api_name="/use_example")
    with pytest.raises(AppError, match="Unknown model"):
        c.predict("/etc", "LoRA (fast)", 2, None, api_name="/finetune")


@pytest.fixture(scope="module")
def trained_dirs(tiny_model_dir, tmp_path_factory):
    """A draft model (the tiny model itself: same vocabulary) and a freshly built tiny hybrid."""
    from tasc.compare.hybrid import HybridConfig, HybridModel, make_projector
    from tasc.core.models import load_model
    from tests.tiny import make_tiny_model

    lm = load_model(str(tiny_model_dir), device="cpu")
    size = lm.model.get_input_embeddings().weight.shape[0]
    hybrid_dir = tmp_path_factory.mktemp("hybrid")
    hybrid = HybridModel(make_tiny_model(size, seed=1), make_projector("linear", 64, 64),
                         HybridConfig(layers=2, hidden=64, heads=4, projector="linear", copy=False), {"target_hidden_size": 64, "target_vocab_size": size})
    hybrid.save(hybrid_dir, lm.tokenizer)
    return str(tiny_model_dir), str(hybrid_dir)


def test_arena_offers_and_runs_draft_model_and_hybrid_modes_when_given(served, trained_dirs, monkeypatch):
    draft_dir, hybrid_dir = trained_dirs
    c = Client(served.url, verbose=False)
    c.predict("weather_reports.jsonl", api_name="/use_example")
    with pytest.raises(AppError, match="TASC_APP_DRAFT_MODEL"):
        arena(c, "city[Oslo], condition[snow], high[2], low[-4]", DRAFT)
    monkeypatch.setenv("TASC_APP_DRAFT_MODEL", draft_dir)
    monkeypatch.setenv("TASC_APP_HYBRID_MODEL", hybrid_dir)
    assert {DRAFT, DRAFT_TASC, HYBRID} <= {m.name for m in tab_arena.offered_methods(None)}
    for method in (DRAFT, DRAFT_TASC):
        _, final = arena(c, "city[Oslo], condition[snow], high[2], low[-4]", method, 24)
        assert "identical output ✓" in final[4], method
        if method == DRAFT:  # the draft model is the target itself here: every draft is accepted
            assert "draft-model" in pane_sources(final[2])
    _, final = arena(c, "city[Oslo], condition[snow], high[2], low[-4]", HYBRID, 24)
    assert "hybrid" in final[4] and "1 forward passes" in final[3]


def test_finetune_tab_trains_a_draft_model_and_a_hybrid_that_the_arena_then_races(client):
    prompt = "city[Oslo], condition[snow], high[2], low[-4]"
    client.predict("weather_reports.jsonl", api_name="/use_example")
    with pytest.raises(AppError, match="Fine-tune tab"):
        arena(client, prompt, DRAFT)
    status, _, methods = client.predict(compare_training.TRAIN_DRAFT, 10, api_name="/train_compare")
    assert "Done" in status and "draft model" in status, status
    offered = {c[1] for c in methods["choices"]}  # (label, name)
    assert {DRAFT, DRAFT_TASC} <= offered and HYBRID not in offered
    _, final = arena(client, prompt, DRAFT, 24)
    assert "identical output ✓" in final[4]

    status, _, methods = client.predict(compare_training.TRAIN_HYBRID, 10, api_name="/train_compare")
    assert "Done" in status and "hybrid" in status, status
    assert HYBRID in {c[1] for c in methods["choices"]}
    (hybrid,) = [m for s in app.store()._sessions.values() for m in s.models.values() if m.kind == "hybrid"]
    (draft,) = [m for s in app.store()._sessions.values() for m in s.models.values() if m.kind == "draft"]
    # the hybrid's decoder started from the session's draft model
    assert json.loads((hybrid.path / "tasc.json").read_text())["hybrid"]["decoder_init"] == str(draft.path)
    _, final = arena(client, prompt, HYBRID, 24)
    assert "hybrid" in final[4] and "1 forward passes" in final[3]

    status, _, _ = client.predict(compare_training.TRAIN_HYBRID_BLOCKS, 10, api_name="/train_compare")
    assert "Done" in status and "hybrid" in status, status
    newest = [m for s in app.store()._sessions.values() for m in s.models.values() if m.kind == "hybrid"][-1]
    settings = json.loads((newest.path / "tasc.json").read_text())["hybrid"]
    blocks = app.pool().get().model.config.num_hidden_layers  # the tiny app model has fewer than 6
    assert settings["target_blocks"] == min(compare_training.HYBRID_BLOCKS, blocks) > 0 and settings["decoder_init"] is None
    _, final = arena(client, prompt, HYBRID, 24)  # the Arena races the newest hybrid
    assert "hybrid" in final[4] and "1 forward passes" in final[3]
    assert client.predict(api_name="/train_compare_stop") == "No draft/hybrid training is running."
