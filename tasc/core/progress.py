"""Progress events shared by every long job (fine-tune, enrich, distill, bench, train-draft).

Jobs take `on_progress: ProgressFn | None` and `cancel: threading.Event | None`; the CLI prints the
events with tqdm, the app turns them into progress bars and live plots.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from tasc.core.errors import Cancelled


@dataclass
class Progress:
    """One progress report of a job.

    Attributes:
        task: what is running ("finetune", "bench: greedy", ...).
        done: units finished (steps, prompts, rounds).
        total: units in all (0 when unknown).
        elapsed_s: seconds since the job started.
        metrics: latest figures, e.g. {"loss": 1.93, "lr": 5e-5}.
        message: a short human-readable line.
    """

    task: str
    done: int
    total: int
    elapsed_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average pace so far (None before the first unit)."""
        if self.done <= 0 or self.total <= 0:
            return None
        return self.elapsed_s / self.done * max(self.total - self.done, 0)


ProgressFn = Callable[[Progress], None]


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise `Cancelled` when the job's cancel event is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user")
