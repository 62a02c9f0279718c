"""Models loaded once per process and shared read-only by every request of the app.

Inference only reads weights, so one `LoadedModel` serves concurrent requests (each generation has
its own KV cache). The pool keeps the base model for good and at most `max_extra` others (fine-tuned
models of the sessions), dropping the least recently used one beyond that. Loading the same model
from two requests at once loads it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Generic, TypeVar

from tasc.core.models import load_model

M = TypeVar("M")


class ModelPool(Generic[M]):
    """Thread-safe, bounded cache of loaded models keyed by model spec.

    Args:
        base: the spec that is never evicted (the app's base model).
        max_extra: how many other models stay loaded.
        loader: `load_model`-like function (tests pass a fake; the Arena's llama.cpp engines pass `engine_for`).
        call: where a load runs, as `call(fn, *args)`: None here; the app passes its model thread's `call`
            (`studio.model_thread`), so the whole load, its lock included, runs on that one thread and a
            request waiting for a load never holds a lock the model thread needs.
    """

    def __init__(self, base: str, max_extra: int = 2, loader: Callable[[str], M] = load_model,  # type: ignore[assignment]
                 call: Callable[..., Any] | None = None) -> None:
        self.base = base
        self.max_extra = max_extra
        self._loader = loader
        self._call = call
        self._models: OrderedDict[str, M] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, spec: str | None = None) -> M:
        """The loaded model for `spec` (default: the base model), loading it on first use."""
        spec = spec or self.base
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
        if self._call is not None:
            return self._call(self._load, spec)
        return self._load(spec)

    def _load(self, spec: str) -> M:
        """Load `spec` unless another request has meanwhile; one loader per spec."""
        with self._lock:
            if spec in self._models:
                return self._models[spec]
            spec_lock = self._loading.setdefault(spec, threading.Lock())
        with spec_lock:  # one loader per spec; others wait and then find it loaded
            with self._lock:
                if spec in self._models:
                    return self._models[spec]
            lm = self._loader(spec)
            with self._lock:
                self._models[spec] = lm
                extra = [k for k in self._models if k != self.base]
                for old in extra[: max(0, len(extra) - self.max_extra)]:
                    del self._models[old]
                self._loading.pop(spec, None)
            return lm

    def loaded(self) -> list[str]:
        """Specs currently loaded, least recently used first."""
        with self._lock:
            return list(self._models)

    def forget(self, spec: str) -> None:
        """Drop a model (its directory was deleted); the base model stays."""
        with self._lock:
            if spec != self.base:
                self._models.pop(spec, None)
