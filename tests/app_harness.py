"""Launch the app in-process on a tiny model, for gradio_client, HTTP and browser tests."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass
class RunningApp:
    """A launched app: its URL, Blocks, and the folders it may write to."""

    url: str
    demo: object
    cache: Path  # TASC_APP_CACHE
    gradio_tmp: Path  # GRADIO_TEMP_DIR (uploads)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(model_dir: Path, workdir: Path, **env: str) -> Iterator[RunningApp]:
    """Serve app.py on `model_dir` with its cache and Gradio's temp folder under `workdir`."""
    import gradio as gr

    import app

    cache, gradio_tmp = workdir / "app_cache", workdir / "gradio_tmp"
    settings = {"TASC_APP_MODEL": str(model_dir), "TASC_APP_CACHE": str(cache), "GRADIO_TEMP_DIR": str(gradio_tmp),
                "GRADIO_ANALYTICS_ENABLED": "False",
                "TASC_APP_TASK_MODEL": "off",  # tests that want the background task model turn it on
                **env}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    app.store.cache_clear()
    app.pool.cache_clear()
    demo = app.build_demo()
    try:
        _, url, _ = app.serve(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                              quiet=True)
        app.pool().get()  # warm the base model, as `python app.py` does, so the first request is quick
        yield RunningApp(url.rstrip("/") + "/", demo, cache, gradio_tmp)
    finally:
        with contextlib.suppress(Exception):
            demo.close()
        app.store().close()  # cancel jobs still running (a failed test may leave one) before the next app
        from studio import task_model

        task_model.stop_all()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        app.store.cache_clear()
        app.pool.cache_clear()
        gr.close_all()


def slow_training(monkeypatch, seconds_per_step: float = 0.02) -> None:
    """Make every fine-tune step of the in-process app take at least this long.

    On an idle machine the tiny model runs hundreds of steps a second, so a job can finish before a
    test's Stop lands; a floor on the step time keeps it running while the test stops it.
    """
    import time

    from tasc.ft import finetune

    collate = finetune.PadCollator.__call__

    def slow_collate(self, features):
        time.sleep(seconds_per_step)
        return collate(self, features)

    monkeypatch.setattr(finetune.PadCollator, "__call__", slow_collate)

