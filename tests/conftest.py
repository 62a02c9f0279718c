"""Shared fixtures: tiny random-weight models, paths to the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Skip `slow` tests unless TASC_SLOW=1."""
    if os.environ.get("TASC_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set TASC_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared task corpora (../shared/data)."""
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep caches of tests in a temp TASC_HOME, except the shared real-model cache."""
    home = os.environ.get("TASC_TEST_HOME") or str(tmp_path_factory.getbasetemp() / "tasc_home")
    monkeypatch.setenv("TASC_HOME", home)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A directory holding a tiny random Llama + BPE tokenizer, loadable by `tasc.core.models.load_model`."""
    from tests.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """The tiny model loaded on CPU as a `tasc.core.models.LoadedModel`."""
    from tasc.core.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def real_home() -> Path:
    """Where the real SmolLM2 cache lives in tests: $TASC_REAL_HOME, else the user's default cache."""
    return Path(os.environ.get("TASC_REAL_HOME") or Path.home() / ".cache" / "tasc")


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The real SmolLM2-135M as a safetensors directory (converted from the GGUF once, then cached)."""
    from tasc.core.models import cached_model_dir

    mp = pytest.MonkeyPatch()
    mp.setenv("TASC_HOME", str(real_home()))
    try:
        return cached_model_dir("smollm2-135m")
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def real_lm(real_model_dir):
    """The real SmolLM2-135M loaded on CPU."""
    from tasc.core.models import load_model

    return load_model(str(real_model_dir), device="cpu")
