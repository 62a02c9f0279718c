"""The folder of a resumable training run, the same for every trainer.

    OUT/                    the finished model (written by the trainer)
    OUT/checkpoints/        everything a killed or cancelled run needs to continue
    OUT/checkpoints/run.json    the run's settings: `--resume` continues with these

A fresh run refuses a folder holding an unfinished run (pass `--resume` or another `--out`); a
resumed run reads the stored settings back. Runs written before the file had one name stored it
as `tasc_run.json` (fine-tunes): that name is still read, never written. After a successful run
the checkpoints folder is removed unless it is to be kept.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Sequence, TypedDict, TypeVar

from tasc.core.progress import ProgressFn

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
OLD_RUN_FILES = ("tasc_run.json",)  # read when resuming a folder written before, never written
C = TypeVar("C")  # a trainer's config dataclass


class RunDir:
    """An output folder, its `checkpoints/` folder and the run file that records the run's settings."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.checkpoints = self.out / CHECKPOINTS
        self.run_file = self.checkpoints / RUN_FILE

    def phase(self, name: str) -> Path:
        """The checkpoint folder of one training phase ("pretrain", "train", ...)."""
        return self.checkpoints / name

    def read_settings(self) -> dict[str, Any] | None:
        """The stored settings of the run in this folder (the current file name first), or None."""
        for name in (RUN_FILE, *OLD_RUN_FILES):
            path = self.checkpoints / name
            if path.is_file():
                return json.loads(path.read_text(encoding="utf-8"))
        return None

    def write_settings(self, settings: dict[str, Any]) -> None:
        """Record the run's settings, so `--resume` continues the same run."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.run_file.write_text(json.dumps(settings, indent=2), encoding="utf-8")

    def latest_checkpoint(self, complete: Callable[[Path], bool] = lambda path: True) -> Path | None:
        """The newest `checkpoint-N` folder that `complete` accepts (a run killed mid-save leaves a partial one), or None."""
        found = [p for p in self.checkpoints.glob("checkpoint-*")
                 if p.is_dir() and p.name.split("-")[-1].isdigit() and complete(p)]
        return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)

    def start(self, config: C, resume: bool, *, unfinished: bool | None = None, keep: Sequence[str] = ()) -> C:
        """The config in effect: a resumed run's stored one (its `keep` fields from `config`), else `config`.

        Args:
            config: this call's settings, a dataclass; a fresh run (or a resume with nothing stored) uses them.
            resume: continue the run in this folder.
            unfinished: whether an earlier run left checkpoints here; None: the checkpoints folder exists.
            keep: fields taken from `config` even when resuming (e.g. "steps", to extend a run).
        Raises:
            ValueError: a fresh run over an unfinished one.
        """
        if unfinished is None:
            unfinished = self.checkpoints.exists()
        if not resume and unfinished:
            raise ValueError(f"{self.out} holds checkpoints of an earlier run: pass --resume to continue it, or choose another --out")
        stored = self.read_settings() if resume and unfinished else None
        if stored is None:
            return config
        return type(config)(**{**stored, **{name: getattr(config, name) for name in keep}})

    def clean_up(self, keep: bool = False) -> None:
        """Remove the checkpoints of a finished run, unless they are to be kept."""
        if not keep:
            shutil.rmtree(self.checkpoints, ignore_errors=True)


class TrainOptions(TypedDict, total=False):
    """How a trainer runs; every trainer (`finetune`, `train_draft`, `train_hybrid`) takes these keywords alike."""

    device: str | None  # "cpu", "cuda", "cuda:1"...; None picks CUDA when present
    resume: bool  # continue the run folder's interrupted or cancelled run
    trust_remote_code: bool  # run a hub model's own code (off unless the user asks)
    on_progress: ProgressFn | None  # progress events
    cancel: threading.Event | None  # set to stop after the current step, with a checkpoint


class TrainRun(RunDir):
    """A trainer's run folder together with how it runs (`TrainOptions`), read once where the trainer starts."""

    def __init__(self, out_dir: str | Path, options: TrainOptions) -> None:
        super().__init__(out_dir)
        self.device = options.get("device")
        self.resume = options.get("resume", False)
        self.trust_remote_code = options.get("trust_remote_code", False)
        self.on_progress = options.get("on_progress")
        self.cancel = options.get("cancel")

    def load(self, spec: str) -> Any:
        """The model the trainer starts from, in fp32 (a trainer's master weights) on the run's device."""
        import torch

        from tasc.core.models import load_model

        return load_model(spec, device=self.device, dtype=torch.float32, trust_remote_code=self.trust_remote_code)
