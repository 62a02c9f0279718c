"""Build a task output corpus from a model's own greedy answers (resumable, append-only).

Used by `tasc distill`, and by `tasc finetune --teacher`: a TASC-ft model trained on the base fine-tune's
answers besides the references learns one consistent way to say each input (README, issue 21: on unseen E2E
names it then matches the base model's BLEU and faithfulness instead of trailing by 6 BLEU)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from tasc.core.errors import CorpusError
from tasc.core.models import LoadedModel
from tasc.core.progress import Progress, ProgressFn, check_cancel
from tasc.spec.decode import DecodeConfig, generate
from tasc.spec.drafts import SpecConfig, tasc_drafter


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a distilled corpus's lines, none when it does not exist (a torn last line is skipped)."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a run killed mid-write leaves at most one partial line
            if isinstance(row, dict):
                yield row


def answered_inputs(path: Path) -> set[str]:
    """Inputs already answered in an existing distilled corpus (a torn last line is ignored)."""
    return {row["input"] for row in _rows(path) if isinstance(row.get("input"), str)}


def distill(
    lm: LoadedModel,
    inputs: Sequence[str],
    out: Path,
    max_new_tokens: int = 128,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Append `{input, output}` rows with the model's greedy answer to each input not yet in `out`.

    Greedy answers are decoded with prompt-lookup drafting (lossless, so the answers are exactly
    plain greedy's, only faster). Each row is flushed as soon as it is written, so a killed run
    loses at most the answer in progress and a rerun continues after the last complete row.
    """
    if not inputs:
        raise CorpusError("no inputs to answer")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and out.stat().st_size and not out.read_bytes().endswith(b"\n"):
        with out.open("a", encoding="utf-8") as f:
            f.write("\n")  # end a torn last line so the next row starts cleanly
    done = answered_inputs(out)
    todo = [i for i in inputs if i not in done]
    drafter = tasc_drafter(lm.tokenizer, None, SpecConfig(use_corpus=False))
    t0 = time.perf_counter()
    tokens = 0
    with out.open("a", encoding="utf-8") as f:
        for k, text in enumerate(todo):
            check_cancel(cancel)
            ids = lm.prompt_format.prompt_ids(lm.tokenizer, text)
            result = generate(lm.model, ids, drafter, DecodeConfig(max_new_tokens), lm.eos_token_id)
            answer = lm.tokenizer.decode(result.tokens, skip_special_tokens=True).strip()
            tokens += len(result.tokens)
            f.write(json.dumps({"input": text, "output": answer}, ensure_ascii=False) + "\n")
            f.flush()
            if on_progress:
                on_progress(Progress("distill", len(done) + k + 1, len(inputs), time.perf_counter() - t0))
    return {"out": str(out), "answered": len(todo), "skipped_existing": len(inputs) - len(todo), "new_tokens": tokens, "wall_s": round(time.perf_counter() - t0, 2)}


def read_answers(path: Path) -> dict[str, str]:
    """input -> output of a distilled corpus written by `distill` (a torn last line is ignored)."""
    return {row["input"]: row["output"] for row in _rows(path)
            if isinstance(row.get("input"), str) and isinstance(row.get("output"), str)}
